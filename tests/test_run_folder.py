"""Seeds get their own run folders, and a job refused for a taken folder writes nothing into it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bireco.pipeline import RunFolderTaken, check_run_folder, run_pipeline
from tests.helpers import FAST, compose_cfg


@pytest.mark.parametrize("experiment", ["demo", "reproduce_tiny", "paper_table"])
def test_every_experiment_puts_the_seed_in_the_run_folder(experiment: str) -> None:
    extra = ["data.path=/datasets/echo-e5"] if experiment == "paper_table" else []
    cfg = compose_cfg([f"experiment={experiment}", "seed=7", *extra], fast=False, return_hydra_config=True)
    assert cfg.hydra.sweep.subdir.endswith("/seed-7")
    assert cfg.hydra.sweep.subdir.split("/")[0] == cfg.pipeline.name


def _snapshot(run: Path) -> dict[str, tuple[int, bytes]]:
    """bireco's files of a run (Hydra's own `.hydra/` record and job log are Hydra's: rewritten per invocation)."""
    skip = (".hydra",)
    return {
        str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.relative_to(run).parts[0] not in skip and p.suffix != ".log"
    }


@pytest.mark.integration
def test_a_refused_job_leaves_the_finished_run_as_it_was(tmp_path: Path, bireco_cache: str) -> None:
    run = tmp_path / "run"
    quiet = ["pipeline=baseline", "stages.contrastive.probe=false", "probe.reconstruction.enabled=false"]
    run_pipeline(compose_cfg(quiet), run)
    before = _snapshot(run)
    with pytest.raises(RunFolderTaken, match="seed"):
        check_run_folder(compose_cfg([*quiet, "seed=43"]), run)
    with pytest.raises(RunFolderTaken, match="another configuration"):
        check_run_folder(compose_cfg([*quiet, "stages.contrastive.optimizer.lr=0.5"]), run)
    with pytest.raises(RunFolderTaken, match=r"holds a finished run .*'pipeline': 'baseline'"):
        check_run_folder(compose_cfg([*FAST, "pipeline=bireco", "stages.contrastive.probe=false"]), run)
    check_run_folder(compose_cfg(quiet), run)  # the same config: a rerun resumes or skips
    env = {**os.environ, "BIRECO_CACHE": bireco_cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    bin_ = Path(sys.executable).parent / "bireco-train"
    cmd = [str(bin_), *FAST, *quiet, "seed=43", f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "bireco-train: error:" in proc.stderr and "seed" in proc.stderr
    assert _snapshot(run) == before  # no failed.json, config.yaml untouched, nothing deleted
    assert not (run / "failed.json").exists()
