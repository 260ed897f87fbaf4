"""The checks of a model preset's settings (`model.*`), run before anything is loaded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from bireco.errors import ConfigError
from bireco.models.attention import ATTENTION_MODES
from bireco.models.pooling import POOLINGS
from bireco.utils.checks import positive_int

DTYPES = ("float32", "bfloat16", "float16")
PATH_PREFIXES = ("/", "./", "../", "~")  # a name written as a path, never a hub repository

log = logging.getLogger(__name__)
_warned_context: set[tuple[str, int]] = set()  # validation runs more than once per run: one warning each


def local_or_hub_name(name: str, key: str = "model.pretrained") -> str:
    """An existing folder as its absolute path, a hub name as given.

    A run records where its weights came from (a LoRA stage's artifact names its base), so a relative folder
    would only open from the folder the run was launched in. A name written as a path (`/…`, `./…`, `../…`, `~…`)
    that is no folder is refused here, in one line, instead of as the hub's "Repo id must be in the form" later."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name.startswith(PATH_PREFIXES) or name in (".", ".."):
        why = "is a file, not a model folder" if path.exists() else "no such folder"
        raise ConfigError(f"{key}={name}: {why} (a local model is a folder; anything else is a hub name)")
    return name


def _warn_past_context(m: DictConfig, folder: Path) -> None:
    """A local model's config.json names its context; a longer max_length runs positions it never trained."""
    try:
        context = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return
    if isinstance(context, int) and m.max_length > context and (str(folder), m.max_length) not in _warned_context:
        _warned_context.add((str(folder), m.max_length))
        log.warning(
            "model.max_length=%d exceeds %s's max_position_embeddings=%d: longer texts run positions the model "
            "was not trained on",
            m.max_length,
            folder,
            context,
        )


def check_model_settings(m: DictConfig) -> None:
    """`model.*`: exactly one of a pretrained name or a tiny spec, the dtypes, the length, the attention mode."""
    if (m.tiny is None) == (not m.pretrained):
        raise ConfigError(
            f"model '{m.name}': set exactly one of model.pretrained (hub name or folder) or model.tiny "
            f"(got pretrained={m.pretrained!r}, tiny={'set' if m.tiny is not None else None})"
        )
    if m.dtype not in DTYPES:
        raise ConfigError(f"model.dtype='{m.dtype}': choose one of {list(DTYPES)}")
    if m.get("master_dtype") != "float32":
        raise ConfigError(
            f"model.master_dtype={m.get('master_dtype')!r}: full fine-tuning keeps float32 master weights (AdamW on "
            "bf16 weights loses most updates at lr 4e-5); model.dtype sets the frozen weights' dtype"
        )
    if not positive_int(m.max_length):
        raise ConfigError(f"model.max_length must be a positive integer, got {m.max_length!r}")
    if m.get("attention", "causal") not in ATTENTION_MODES:
        raise ConfigError(
            f"model.attention={m.get('attention')!r}: choose one of {list(ATTENTION_MODES)} (the encoder passes; "
            "Stage I's decoder passes are always causal)"
        )
    if m.pretrained:
        name = local_or_hub_name(str(m.pretrained))
        if Path(name).is_dir():
            _warn_past_context(m, Path(name))
    if m.tiny is not None and m.max_length > m.tiny.max_position_embeddings:
        raise ConfigError(
            f"model.max_length={m.max_length} exceeds model.tiny.max_position_embeddings="
            f"{m.tiny.max_position_embeddings}: the tiny model has no positions for the longer sequences"
        )


def check_pooling(name: str) -> None:
    """`pooling.name`: one of the registered poolings."""
    if name not in POOLINGS:
        raise ConfigError(f"pooling.name='{name}': choose one of {sorted(POOLINGS)}")
