"""A trained tiny run (Stage I full weights -> Stage II LoRA), its bireco-eval summary and its export.

Built once per test session (the folder under the session's base temp is reused by every module that asks),
so the export tests and tests/test_encode.py share one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests.helpers import CONF_DIR, compose_cfg


@dataclass
class ExportedRun:
    run: Path
    export: Path
    summary: dict


def compose_conf(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def build_exported_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> ExportedRun:
    import json

    from bireco.eval.runner import run_eval
    from bireco.export import export_run
    from bireco.pipeline import run_pipeline

    root = tmp_path_factory.getbasetemp() / "exported-run"
    run, out = root / "run", root / "export"
    if not (out / "bireco_export.json").is_file():
        # the FAST run without probes and validation: only the trained weights matter here
        quiet = ["stages.reconstruction.probe=false", "stages.contrastive.probe=false"]
        run_pipeline(compose_cfg(["pipeline=bireco", *quiet, "++trainer.limit_val_batches=0"]), run)
        # bireco-eval on the run's held-out split (the model card shows it; the mteb test compares with it)
        run_eval(compose_conf("eval", [f"run_dir={run}", "batch_size=8", "embedding_cache=false"]), run / "eval")
        export_run(run, out, compose_conf("export", []).eval)
    return ExportedRun(run, out, json.loads((run / "eval" / "summary.json").read_text()))
