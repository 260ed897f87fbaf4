"""A run killed at any moment (SIGTERM or SIGKILL, in Stage I, in Stage II, between stages) and rerun with the same
command ends with the same losses, weights and metrics as an uninterrupted run; two runs with one seed are identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bireco.lit.fault_tolerance import FAULT_ENV, Interrupted, Preempted
from bireco.pipeline import DONE_FILE, run_pipeline
from tests.helpers import artifact_weights, compose_cfg, logged_train_losses

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("0-reconstruction", "1-contrastive")
# 5 steps per stage, a checkpoint every 2: a kill at step 3 resumes from step 2 (SIGKILL) or 3 (SIGTERM).
# Few rows per source so an epoch is a handful of batches and resumes cross epoch boundaries; LoRA dropout on, so
# the RNG stream must be restored too.
OVERRIDES = [
    "pipeline=bireco",
    "data.max_rows_per_source=12",
    "data.val_rows=8",
    "stages.reconstruction.max_steps=5",
    "stages.reconstruction.checkpoint_every_n_steps=2",
    "stages.contrastive.max_steps=5",
    "stages.contrastive.checkpoint_every_n_steps=2",
    "stages.contrastive.peft.dropout=0.3",
    "probe.every_n_steps=5",
    "trainer.log_every_n_steps=1",
]


def _run(out: Path, fault: str | None = None) -> dict:
    if fault:
        os.environ[FAULT_ENV] = fault
    try:
        return run_pipeline(compose_cfg(OVERRIDES), out)
    finally:
        os.environ.pop(FAULT_ENV, None)


def _run_killed(out: Path, fault: str) -> subprocess.CompletedProcess:
    """The same pipeline in a child process that SIGKILLs itself at `fault` (nothing gets to clean up)."""
    code = (
        "import json, sys; from tests.helpers import compose_cfg; from bireco.pipeline import run_pipeline; "
        "run_pipeline(compose_cfg(json.loads(sys.argv[1])), sys.argv[2])"
    )
    env = {**os.environ, FAULT_ENV: fault, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(OVERRIDES), str(out)], cwd=ROOT, env=env, capture_output=True
    )


def _assert_same_run(got: Path, want: Path) -> None:
    for stage in STAGES:
        g, w = got / "stages" / stage, want / "stages" / stage
        assert logged_train_losses(g) == logged_train_losses(w), stage
        gw, ww = artifact_weights(g), artifact_weights(w)
        assert gw.keys() == ww.keys()
        for k in ww:
            assert torch.equal(gw[k], ww[k]), f"{stage}: {k} differs"
        gm = json.loads((g / DONE_FILE).read_text())
        wm = json.loads((w / DONE_FILE).read_text())
        assert gm["steps"] == wm["steps"] == 5
        assert gm["probe"] == wm["probe"]
        for k in ("val/loss", "train/loss"):
            assert gm["metrics"][k] == wm["metrics"][k], (stage, k)


@pytest.fixture(scope="module")
def uninterrupted(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    _run(out)
    return out


def test_same_seed_same_config_gives_identical_runs(uninterrupted: Path, tmp_path: Path) -> None:
    _run(tmp_path)
    _assert_same_run(tmp_path, uninterrupted)
    assert len(logged_train_losses(uninterrupted / "stages" / STAGES[0])) == 5


def test_sigterm_in_stage1_saves_a_checkpoint_and_the_rerun_matches(uninterrupted: Path, tmp_path: Path) -> None:
    with pytest.raises(Preempted) as stop:
        _run(tmp_path, fault="reconstruction:3:SIGTERM")
    assert stop.value.code == 128 + signal.SIGTERM and stop.value.stage == "reconstruction"
    s1 = tmp_path / "stages" / STAGES[0]
    # the preemption checkpoint holds step 3 (the periodic one would have been step 2); nothing marked done
    assert torch.load(s1 / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert not (s1 / DONE_FILE).exists() and not (s1 / "artifact").exists()
    _run(tmp_path)
    _assert_same_run(tmp_path, uninterrupted)
    # the compute report of the resumed stage covers the steps it ran itself
    assert json.loads((s1 / DONE_FILE).read_text())["compute"]["steps"] == 5 - 3


def test_ctrl_c_says_how_to_resume_and_the_rerun_matches(
    uninterrupted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C (SIGINT) ended in Lightning's silent exit 1; now 130, and the line naming the checkpoint to resume."""
    before = signal.getsignal(signal.SIGINT)
    with caplog.at_level("WARNING"), pytest.raises(Interrupted) as stop:
        _run(tmp_path, fault="contrastive:3:SIGINT")
    ckpt = tmp_path / "stages" / STAGES[1] / "checkpoints" / "last.ckpt"
    assert stop.value.code == 128 + signal.SIGINT and stop.value.stage == "contrastive"
    assert f"stage 'contrastive' interrupted (Ctrl-C); rerun the same command to resume from {ckpt}" in caplog.text
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2  # the periodic save: none on Ctrl-C
    assert signal.getsignal(signal.SIGINT) == before  # Lightning had left Ctrl-C ignored
    _run(tmp_path)
    _assert_same_run(tmp_path, uninterrupted)


def test_sigkill_in_stage2_lora_resumes_from_the_last_checkpoint(uninterrupted: Path, tmp_path: Path) -> None:
    proc = _run_killed(tmp_path, "contrastive:3:SIGKILL")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    s1, s2 = (tmp_path / "stages" / s for s in STAGES)
    assert (s1 / DONE_FILE).is_file() and not (s2 / DONE_FILE).exists()
    ckpt = torch.load(s2 / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    # a LoRA checkpoint holds the adapter (and optimizer state), not a copy of the frozen base
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    done_before = (s1 / DONE_FILE).read_text()
    _run(tmp_path)
    assert (s1 / DONE_FILE).read_text() == done_before  # Stage I was skipped, not retrained
    _assert_same_run(tmp_path, uninterrupted)


def test_sigkill_between_stages_skips_stage1_and_runs_stage2(uninterrupted: Path, tmp_path: Path) -> None:
    proc = _run_killed(tmp_path, "contrastive:0:SIGKILL")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    s2 = tmp_path / "stages" / STAGES[1]
    assert not (s2 / "checkpoints" / "last.ckpt").exists()
    _run(tmp_path)
    _assert_same_run(tmp_path, uninterrupted)
