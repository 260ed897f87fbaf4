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


def wants_help(args: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in args)


def usage_lines(config_name: str) -> list[str]:
    """The comment block at the head of conf/<config_name>.yaml (its usage examples), without the `#`."""
    lines = []
    for line in (Path(CONF_DIR) / f"{config_name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def runs_sweeps(config_name: str) -> bool:
    """Whether the program's config sets its sweep folders (bireco-train, bireco-eval): `-m` is for those."""
    return "\n  sweep:" in (Path(CONF_DIR) / f"{config_name}.yaml").read_text(encoding="utf-8")


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


def app_help(config_name: str, program: str, overrides: list[str]) -> str:
    """The help text for `program` with `overrides` applied (a command line that does not compose raises
    Hydra's exception, for the caller's one line)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    lines = [f"{program} (conf/{config_name}.yaml)", "", *("  " + u if u else "" for u in usage_lines(config_name))]
    sweeps = runs_sweeps(config_name)
    groups = used_groups(choices, sweeps)
    if groups:
        lines += ["", "== Configuration groups (group=option; [chosen]) =="]
        for key, (chosen, options) in groups.items():
            shown = ", ".join(f"[{o}]" if o == chosen else o for o in options)
            lines.append(f"{key}: {shown}" + ("  (none chosen)" if chosen is None else ""))
    sweep = "; -m key=a,b runs a sweep" if sweeps else ""
    lines += [
        "",
        f"== Config (override any key: key=value; --cfg job prints it{sweep}) ==",
        "",
        OmegaConf.to_yaml(cfg, resolve=False).rstrip(),
    ]
    return "\n".join(lines) + "\n"
