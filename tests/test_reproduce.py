"""`make reproduce-table`: the paper preset's dry run, a failing sweep job, and a two-job sweep end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bireco.sweep_plan import plan
from tests.helpers import FAST

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAPER_MODELS = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]


def test_paper_preset_dry_run_composes_every_job_with_the_papers_settings() -> None:
    from bireco.utils.resolvers import register

    register()
    jobs = plan(["experiment=paper_table", "data.path=/datasets/echo-e5"], PAPER_MODELS)
    assert len(jobs) == 5 * 4
    by_key = {(j["model"], j["pipeline"]): j for j in jobs}
    one_b = by_key[("llama3.2-1b", "bireco")]
    assert one_b["reconstruction"] == {
        "steps": 2000,
        "lr": 4e-5,
        "warmup": 300,
        "batch": "32x2 accum per device",
        "peft": "full",
        "alpha": 0.2,
        "anchor": "own",
    }
    assert one_b["contrastive"]["peft"] == "LoRA r=16 alpha=32 dropout=0.05"
    assert one_b["contrastive"]["batch"] == "128x1 accum per device"
    assert by_key[("llama3.1-8b", "bireco")]["reconstruction"]["batch"] == "1x64 accum per device"
    assert by_key[("llama3.2-1b", "only_q2d")]["reconstruction"]["alpha"] == 1.0
    assert by_key[("llama3.2-1b", "only_d2q")]["reconstruction"]["alpha"] == 0.0
    assert "reconstruction" not in by_key[("qwen2.5-1.5b", "baseline")]
    for job in jobs:
        assert job["eval"] == "mteb_en" and job["data"] == "echo_e5 (/datasets/echo-e5)"
        assert job["resources"]["gpus_per_node"] == 8 and job["resources"]["timeout_min"] > 0
        assert job["dir"] == f"runs/reproduce-table/paper/{job['model']}/{job['pipeline']}/seed-42"
    assert (
        by_key[("mistral-7b", "bireco")]["resources"]["mem_gb"]
        > by_key[("llama3.2-1b", "bireco")]["resources"]["mem_gb"]
    )


def test_make_dry_run_prints_jobs_and_launches_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["make", "-s", "reproduce-table", "PRESET=paper", "DRY_RUN=1", f"BIN={BIN}", "STAMP=pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 jobs composed and validated; nothing launched (dry run)" in proc.stdout
    assert proc.stdout.count("job ") >= 20
    assert not (ROOT / "runs" / "reproduce-table" / "paper").exists() or not any(
        (ROOT / "runs" / "reproduce-table" / "paper").rglob("results.json")
    )


def _train(args: list[str], cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BIRECO_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([str(BIN / "bireco-train"), *args], env=env, capture_output=True, text=True, timeout=600)


def _max_steps_sweep(values: str, sweep: Path, cache: str) -> subprocess.CompletedProcess:
    """A baseline sweep over `stages.contrastive.max_steps=<values>` (0 and negatives are refused jobs)."""
    fast = [o for o in FAST if not o.startswith("stages.contrastive.max_steps")]
    args = ["-m", "pipeline=baseline", f"stages.contrastive.max_steps={values}", f"hydra.sweep.dir={sweep}", *fast]
    return _train(args, cache)


@pytest.mark.integration
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path, bireco_cache: str) -> None:
    sweep = tmp_path / "sweep"
    proc = _max_steps_sweep("0,3", sweep, bireco_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]  # one job finished: the table shows the other's failure
    failed = list(sweep.rglob("failed.json"))
    done = list(sweep.rglob("results.json"))
    assert len(failed) == 1 and len(done) == 1
    assert "max_steps must be a positive number" in json.loads(failed[0].read_text())["error"]


@pytest.mark.integration
def test_a_sweep_whose_every_job_fails_exits_1(tmp_path: Path, bireco_cache: str) -> None:
    """It exited 0, so a script (or CI) running a sweep could not tell that nothing was trained."""
    sweep = tmp_path / "sweep"
    proc = _max_steps_sweep("0,-1", sweep, bireco_cache)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "bireco-train: error: every job of the sweep failed or was refused (2; see their logs)"
    )
    assert len(list(sweep.rglob("failed.json"))) == 2


@pytest.mark.integration
def test_two_job_sweep_end_to_end_into_the_table(tmp_path: Path, bireco_cache: str) -> None:
    sweep = tmp_path / "sweep"
    proc = _train(
        [
            "-m",
            "pipeline=baseline,bireco",
            "eval=local",
            "hydra.sweep.subdir=${pipeline.name}",
            f"hydra.sweep.dir={sweep}",
            *FAST,
        ],
        bireco_cache,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for p in ("baseline", "bireco"):
        summary = json.loads((sweep / p / "eval" / "summary.json").read_text())
        assert set(summary["tasks"]) == {"retrieval"}
    out = tmp_path / "table"
    table = subprocess.run(
        [str(BIN / "bireco-table"), str(sweep), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert table.returncode == 0, table.stderr[-3000:]
    md = (out / "table.md").read_text()
    assert "baseline" in md and "bireco" in md and "Δ" in md
    assert (out / "table.tex").is_file() and (out / "table.csv").is_file()
    assert (out / "plots" / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_a_single_run_refused_after_a_stage_ran_keeps_its_record(tmp_path: Path, bireco_cache: str) -> None:
    """A user error after training (here: the evaluation finds no task folders) is one line, and the run keeps its
    folder and failed.json: only a try refused before any stage leaves nothing behind."""
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    args = ["pipeline=baseline", "eval=local", f"eval.data_root={tmp_path / 'empty'}", f"hydra.run.dir={run}"]
    proc = _train([*args, *FAST], bireco_cache)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "bireco-train: error: eval.data_root=" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "stages").is_dir() and "no task folders found" in json.loads((run / "failed.json").read_text())[
        "error"
    ]
