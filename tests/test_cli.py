"""`bireco-train` as users call it: a Hydra app with a chosen run dir, and `-m` sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "bireco-train"


def _run(args: list[str], cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BIRECO_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=600)


def test_single_run_writes_into_the_chosen_run_dir(tmp_path: Path, bireco_cache: str) -> None:
    out = tmp_path / "run"
    proc = _run(["model=tiny", "pipeline=baseline", "data=synthetic", f"hydra.run.dir={out}", *FAST], bireco_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["pipeline"] == "baseline" and results["stages"] == ["contrastive"]
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / "stages" / "0-contrastive" / "stage_done.json").is_file()


def test_multirun_sweep_gets_one_deterministic_dir_per_job(tmp_path: Path, bireco_cache: str) -> None:
    sweep = tmp_path / "sweep"
    proc = _run(["-m", "pipeline=baseline,stage1_only", f"hydra.sweep.dir={sweep}", *FAST], bireco_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent.name for p in sweep.glob("*/results.json"))
    assert len(jobs) == 2 and all(len(j) <= 120 for j in jobs)
    pipelines = sorted(json.loads((sweep / j / "results.json").read_text())["pipeline"] for j in jobs)
    assert pipelines == ["baseline", "stage1_only"]
    # long override lists are capped with a hash of the whole list (tests/utils/test_resolvers.py)


def test_unknown_pipeline_lists_the_choices(tmp_path: Path, bireco_cache: str) -> None:
    proc = _run(["pipeline=nope", f"hydra.run.dir={tmp_path}"], bireco_cache)
    assert proc.returncode != 0
    assert "bireco" in proc.stderr and "baseline" in proc.stderr
