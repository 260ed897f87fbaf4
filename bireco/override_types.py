"""Command-line values checked against the type of the setting they replace, before the job runs.

Hydra types an override by its text alone: `overwrite=no` is the string "no" (truthy: it replaced the folder),
`seed=abc` is a string that fails as a traceback ten seconds into training, `probe.every_n_steps=abc` after the
first step. So every `key=value` override whose value is a string or a boolean is compared with the value the
composed config had without it (the defaults of the chosen groups); a mismatch is one line naming the key.
A float for an integer setting passes (Lightning's `val_check_interval=0.5` is a fraction). Not checked: settings
whose default is null, a string, a list or a mapping (their type is not known here), an interpolation
(`seed=${oc.env:SLURM_ARRAY_TASK_ID}`: its type is known when it resolves), and what bireco hands to a library
as given (`trainer.*` for Lightning — `devices=auto`, `deterministic=warn` —, `logger.*` — `log_model=all`). The
check is best effort: if the config cannot be composed here, the job runs and Hydra or bireco speaks later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf

from bireco.errors import UserError


class OverrideTypeError(UserError, ValueError):
    """A command-line value of the wrong type for its setting."""


PASSED_THROUGH = ("hydra.", "trainer.", "logger.")  # settings whose type the receiving library decides


def _is_group(key: str) -> bool:
    """Whether `key=` chooses a config group option (`model=tiny`, `hydra/launcher=slurm`), not a setting."""
    if "/" in key:
        return True
    return bool(GlobalHydra.instance().config_loader().get_group_options(key))


def _candidates(overrides: Sequence[str]) -> tuple[list[Override], list[str]]:
    """(setting overrides whose parsed value is a string or boolean, the other overrides as given)."""
    checked, rest = [], []
    for text, o in zip(overrides, OverridesParser.create().parse_overrides(list(overrides)), strict=True):
        is_setting = (
            o.type == OverrideType.CHANGE
            and o.value_type == ValueType.ELEMENT
            and o.package is None
            and not o.key_or_group.startswith(PASSED_THROUGH)
            and not _is_group(o.key_or_group)
        )
        value = o.value() if is_setting else None
        if isinstance(value, (str, bool)) and not (isinstance(value, str) and "${" in o.input_line):
            checked.append(o)
        else:
            rest.append(text)
    return checked, rest


def mismatch(default: Any, value: Any) -> str | None:
    """What a command-line `value` must be to replace the config's `default`, or None when it may.

    Returns:
        e.g. "true or false", "a whole number (default 42)"; None for a null on either side."""
    if value is None or default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int) and isinstance(value, (str, bool)):
        return f"a whole number (default {default})"
    if isinstance(default, float) and isinstance(value, (str, bool)):
        return f"a number (default {default})"
    return None


def check_override_types(config_name: str, overrides: Sequence[str], hydra_overrides: Sequence[str] = ()) -> None:
    """Refuse, in one line naming every offending key, command-line values of the wrong type.

    Args:
        overrides: the job's own (`HydraConfig.overrides.task`).
        hydra_overrides: Hydra's (`HydraConfig.overrides.hydra`): a `hydra.searchpath=` there can add the config
            groups the job's overrides choose from.

    Needs Hydra initialised on bireco's configs (inside a `@hydra.main` app or `initialize_config_dir`)."""
    checked, rest = _candidates(overrides)
    if not checked:
        return
    searchpath = [o for o in hydra_overrides if o.startswith("hydra.searchpath")]
    try:
        base: DictConfig = compose(config_name, overrides=[*searchpath, *rest])
    except Exception:  # best effort: what fails to compose here is Hydra's or the job's to say
        return
    problems = []
    for o in checked:
        default = OmegaConf.select(base, o.key_or_group, default=None, throw_on_resolution_failure=False)
        need = mismatch(default, o.value())
        if need is not None:
            problems.append(f"{o.input_line}: must be {need}")
    if problems:
        raise OverrideTypeError("; ".join(problems))
