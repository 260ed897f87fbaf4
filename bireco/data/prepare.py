"""Where a run's training, validation and probe data are, after any generation step.

The embedded default generates its world of people once per spec (cached by content hash, shared by every run
and rank); local data is a folder of jsonl files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bireco.data.synthetic import WorldSpec, generate_world
from bireco.errors import ConfigError
from bireco.utils.io import sha256_text
from bireco.utils.locking import file_lock


@dataclass
class PreparedData:
    """Where a run's data is, after any generation step."""

    train_path: Path
    val_path: Path | None
    probe_dir: Path | None
    probe_instruction: str | None


DATA_KINDS = ("synthetic", "local")
ON_BAD_ROW = ("error", "skip")


def check_data_settings(data: DictConfig) -> None:
    """`data.kind` and `data.on_bad_row` (the rows themselves are checked as they are read)."""
    if data.kind not in DATA_KINDS:
        raise ConfigError(f"data.kind='{data.kind}': choose one of {list(DATA_KINDS)}")
    if data.on_bad_row not in ON_BAD_ROW:
        raise ConfigError(
            f"data.on_bad_row='{data.on_bad_row}': choose 'error' (stop at the first bad row, the default) or "
            "'skip' (skip bad rows and report how many per file)"
        )


def prepare_data(cfg: DictConfig) -> PreparedData:
    """Generate the embedded default world (cached by its spec) or point at a local folder."""
    d = cfg.data
    if d.kind == "synthetic":
        spec = WorldSpec(**OmegaConf.to_container(d.world, resolve=True))
        root = Path(cfg.paths.cache_dir) / "synthetic" / sha256_text(json.dumps(spec.__dict__, sort_keys=True))[:16]
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root.with_name(root.name + ".lock")):  # ranks and sweep jobs: one generates, the rest wait
            if not (root / "world.json").is_file():
                generate_world(root, spec)
        probe_dir = Path(cfg.probe.task_dir) if cfg.probe.task_dir else root / "heldout" / "retrieval"
        return PreparedData(root / "train", root / "heldout" / "pairs.jsonl", probe_dir, cfg.probe.instruction)
    if d.kind == "local":
        return PreparedData(
            Path(d.path),
            Path(d.val_path) if d.get("val_path") else None,
            Path(cfg.probe.task_dir) if cfg.probe.task_dir else None,
            cfg.probe.instruction,
        )
    raise ValueError(f"unknown data.kind '{d.kind}'; choose 'synthetic' or 'local'")
