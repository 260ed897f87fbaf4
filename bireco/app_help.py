"""`--help` of the Hydra console scripts: what the program does, the config groups *its* config uses, its config.

Hydra's own help lists every group of the shared config folder (`bireco-eval --help` offered `pipeline=` and
`trainer=`, which it never reads) under "is powered by Hydra". This one takes the usage lines from the head of
`conf/<name>.yaml`, the groups from the composition's choices (the command line's overrides applied), and the
options of each group from the folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf, open_dict

from bireco.conf import CONF_DIR

HELP_FLAGS = ("--help", "-h")
# Hydra's flags that take the next word as their value (`--cfg job`, `-cn NAME`): neither is an override
# (`--info` takes one optionally: its word is left to the override parser)
VALUE_FLAGS = frozenset(
    {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
    | {"--experimental-rerun"}
)


def wants_help(args: list[str]) -> bool:
    """Whether the command line asks for `--help` / `-h` (bireco's help, not Hydra's)."""
    return any(a in HELP_FLAGS for a in args)


def help_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides to compose the help's config with, the command line's sweeps) of a `--help` command line: flags
    and their values dropped; a sweep (`seed=1,2` under `-m`) is listed, and its first value composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    words, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in VALUE_FLAGS
        else:
            words.append(a)
    plain, sweeps = [], []
    for text, o in zip(words, OverridesParser.create().parse_overrides(words), strict=True):
        if o.is_sweep_override():
            sweeps.append(text)
            plain.append(f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}")
        else:
            plain.append(text)
    return plain, sweeps


def usage_lines(config_name: str) -> list[str]:
    """The comment block at the head of conf/<config_name>.yaml (its usage examples), without the `#`."""
    lines = []
    for line in (Path(CONF_DIR) / f"{config_name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files of its folder in bireco's config."""
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def used_groups(choices: dict[str, str | None], sweeps: bool) -> dict[str, tuple[str | None, list[str]]]:
    """group -> (chosen option, every option) for the groups of this config that live in bireco's config folder;
    a group mounted twice (`stage@stages.reconstruction`, `stage@stages.contrastive`) is listed once per key; a
    chosen option from outside the folder (Hydra's own `hydra/launcher: basic`) is listed first, the launcher only
    for a program that runs sweeps."""
    out = {}
    for key, chosen in choices.items():
        group = key.partition("@")[0]
        if (Path(CONF_DIR) / group).is_dir() and (sweeps or not group.startswith("hydra/")):
            options = group_options(group)
            out[key] = (chosen, options if chosen is None or chosen in options else [chosen, *options])
    return dict(sorted(out.items()))


def app_help(config_name: str, program: str, args: list[str], sweeps: bool = False) -> str:
    """The help text for `program` with the command line `args` applied (one that does not compose raises
    Hydra's exception, for the caller's one line). `sweeps`: the program runs `-m` sweeps (train, eval)."""
    from hydra import compose, initialize_config_dir

    overrides, swept = help_overrides(args)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    lines = [f"{program} (conf/{config_name}.yaml)", "", *("  " + u if u else "" for u in usage_lines(config_name))]
    groups = used_groups(choices, sweeps)
    if groups:
        lines += ["", "== Configuration groups (group=option; [chosen]) =="]
        for key, (chosen, options) in groups.items():
            shown = ", ".join(f"[{o}]" if o == chosen else o for o in options)
            lines.append(f"{key}: {shown}" + ("  (none chosen)" if chosen is None else ""))
    if swept:
        lines += ["", f"== Sweep: {' '.join(swept)} (the config below is its first job) =="]
    sweep = "; -m key=a,b runs a sweep" if sweeps else ""
    lines += [
        "",
        f"== Config (override any key: key=value; --cfg job prints it{sweep}) ==",
        "",
        OmegaConf.to_yaml(cfg, resolve=False).rstrip(),
    ]
    return "\n".join(lines) + "\n"
