"""The whole pipeline on 2 CPU processes started the way torchrun / SLURM start them (gloo, `strategy=ddp`).

- One writer per job: the artifact, `stage_done.json`, `results.json` and the metrics CSV are written once, and
  every rank returns the same record.
- A SIGTERM to *one* rank stops *every* rank at the same optimizer step with one checkpoint (a decision taken
  alone would leave the other rank waiting in a collective forever; the test's timeout turns that into a failure).
- The rerun resumes exactly: per-rank RNG states (LoRA dropout 0.3) make the final weights and the per-step
  losses identical to an uninterrupted 2-rank run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bireco.lit.fault_tolerance import FAULT_ENV
from bireco.pipeline import DONE_FILE, ensure_tiny_base, prepare_data
from tests.distributed.harness import free_port
from tests.helpers import artifact_weights, compose_cfg, logged_train_losses

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STAGE = "0-contrastive"
OVERRIDES = [
    "pipeline=baseline",
    "data.max_rows_per_source=16",
    "data.val_rows=8",
    "stages.contrastive.max_steps=5",
    "stages.contrastive.checkpoint_every_n_steps=2",
    "stages.contrastive.peft.dropout=0.3",
    "probe.every_n_steps=5",
    "trainer.log_every_n_steps=1",
    "trainer.strategy=ddp",
    "trainer.devices=2",
]
CODE = (
    "import json, sys, torch; torch.set_num_threads(1); from tests.helpers import compose_cfg; "
    "from bireco.pipeline import run_pipeline; "
    "from bireco.distributed import release_process_group; "
    "r = run_pipeline(compose_cfg(json.loads(sys.argv[1])), sys.argv[2]); "
    "open(sys.argv[3], 'w').write(json.dumps(r['stage_results'])); release_process_group()"
)


def _launch(out: Path, fault: str | None = None, timeout: float = 300) -> list[tuple[int, str]]:
    """Both ranks of one `run_pipeline` call; (exit code, stderr tail) per rank. A hang fails the test."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
        }
        env.pop(FAULT_ENV, None)
        if fault:
            env[FAULT_ENV] = fault
        cmd = [sys.executable, "-c", CODE, json.dumps(OVERRIDES), str(out), str(out / f"record{rank}.json")]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    results = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            results.append((p.returncode, err.decode(errors="replace")[-3000:]))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the ranks did not finish within {timeout} s (a collective one rank never joined?)")
    return results


@pytest.fixture(scope="module")
def uninterrupted(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = compose_cfg(OVERRIDES)
    ensure_tiny_base(cfg, prepare_data(cfg))  # warms up in this one process (no ranks spawned), cached for both
    out = tmp_path_factory.mktemp("ddp_uninterrupted")
    ranks = _launch(out)
    assert [code for code, _ in ranks] == [0, 0], ranks
    return out


def test_two_ranks_write_once_and_return_the_same_record(uninterrupted: Path) -> None:
    stage = uninterrupted / "stages" / STAGE
    records = [json.loads((uninterrupted / f"record{r}.json").read_text()) for r in range(2)]
    assert records[0] == records[1]
    assert records[0][0] == json.loads((stage / DONE_FILE).read_text())
    assert records[0][0]["steps"] == 5
    results = json.loads((uninterrupted / "results.json").read_text())
    assert results["stage_results"] == records[0]
    with open(stage / "logs" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps == [0, 1, 2, 3, 4], "one metrics row per step: only rank 0 logs"
    assert not list(stage.glob("artifact.*")), "no temp or moved-aside artifact left behind"


def test_sigterm_to_one_rank_stops_both_and_the_rerun_is_exact(uninterrupted: Path, tmp_path: Path) -> None:
    ranks = _launch(tmp_path, fault="contrastive:3:SIGTERM:1")  # only rank 1's process gets the signal
    assert [code for code, _ in ranks] == [128 + signal.SIGTERM] * 2, ranks
    stage = tmp_path / "stages" / STAGE
    ckpt = torch.load(stage / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    rng = next(v for k, v in ckpt["callbacks"].items() if "RngState" in k)["rng_per_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"]), "ranks' streams differ"
    assert not (stage / DONE_FILE).exists()

    ranks = _launch(tmp_path)
    assert [code for code, _ in ranks] == [0, 0], ranks
    want, got = uninterrupted / "stages" / STAGE, stage
    assert logged_train_losses(got) == logged_train_losses(want)
    gw, ww = artifact_weights(got), artifact_weights(want)
    assert gw.keys() == ww.keys()
    for k in ww:
        assert torch.equal(gw[k], ww[k]), f"{k} differs after the resume"


def test_rank0_failing_to_write_stops_every_rank_instead_of_hanging(uninterrupted: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "stages" / STAGE / "artifact.tmp"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where rank 0 writes its temp artifact folder")
    ranks = _launch(tmp_path)  # the timeout turns a hang into a failure
    assert ranks[0][0] != 0 and "FileExistsError" in ranks[0][1], ranks[0]
    assert ranks[1][0] != 0 and "rank 0 failed writing the stage's artifact or record" in ranks[1][1], ranks[1]
    assert not (tmp_path / "stages" / STAGE / DONE_FILE).exists()
