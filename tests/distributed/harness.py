"""Run the real stage modules through the real Lightning Trainer, on 1 process or on 2 CPU processes (gloo).

The 2 processes are started the way torchrun / SLURM start them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_* in
the environment, so Lightning's `ddp` strategy joins them instead of launching its own), and each runs every
scenario in turn: one interpreter start-up pays for all of them (imports cost ~7 s per process here).

A scenario trains one optimizer step and records, at `on_before_optimizer_step` (after DDP's all-reduce), every
trainable parameter's gradient, plus each micro-batch's loss.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WORDS = [
    *("alpha", "beta", "gamma", "delta", "river", "mountain", "city", "violin", "doctor", "painter", "blue"),
    *("green", "red", "born", "lives", "works", "the", "of", "in", "on", "an", "who", "what", "where", "when"),
    *("which", "town", "lake", "song", "book"),
]


@dataclass(frozen=True)
class Scenario:
    """One optimizer step of one stage.

    Args:
        stage: `contrastive` or `reconstruction`.
        chunk_size: GradCache chunk (contrastive), None = plain.
        accumulate: micro-batches per optimizer step.
        gather: contrastive `gather_across_ranks`.
        rows_per_rank: rows of each rank's micro-batch (the single process sees world × this).
        from_datamodule: train 3 steps on `write_rows`' files through `PairDataModule` and record the batches.
    """

    stage: str
    chunk_size: int | None = None
    accumulate: int = 1
    gather: bool = True
    rows_per_rank: int = 4
    overrides: tuple[str, ...] = field(default=())
    from_datamodule: bool = False  # batches from the real PairDataModule (3 steps) instead of fixed rows
    duplicates: bool = False  # plant copies of positives (see `plant_duplicates`)


def _rng_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def global_rows(scenario: Scenario, world: int, micro: int) -> list[dict[str, Any]]:
    """The global micro-batch `micro`: world × rows_per_rank rows, rank r's slice is rows[r*B:(r+1)*B].

    Contrastive: one row of the last rank has no hard negative (so ranks gather different numbers of
    negatives). Reconstruction: the last rank's texts are longer, so ranks hold different numbers of target
    tokens (Stage I's loss is a mean over the *global* batch's tokens, not a mean of per-rank means).
    """
    rng = random.Random(1000 * micro + 7)
    b = scenario.rows_per_rank
    if scenario.stage == "reconstruction":
        rows = []
        for r in range(world):
            extra = 4 if r == world - 1 else 0
            rows += [
                {
                    "query": _rng_text(rng, rng.randint(2, 6) + extra),
                    "positive": _rng_text(rng, rng.randint(4, 12) + extra),
                    "source": "s",
                }
                for _ in range(b)
            ]
        return rows
    rows = [
        {
            "query": _rng_text(rng, rng.randint(2, 6)),
            "positive": _rng_text(rng, rng.randint(4, 12)),
            "negative": _rng_text(rng, rng.randint(4, 12)),
            "source": "s",
        }
        for _ in range(world * b)
    ]
    rows[-2]["negative"] = None
    return plant_duplicates(rows) if scenario.duplicates else rows


PLANTED_MASKED = 4  # candidates `plant_duplicates` makes false negatives (2 ranks x 4 rows)


def plant_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of positives, across ranks and within one: row 5 (rank 1) gets row 1's positive (so queries 1 and 5
    each see a copy of their positive), row 7's hard negative is row 0's positive (rank 1 -> rank 0's query 0),
    row 3's hard negative is its own positive (noisy mining) — 4 false negatives in all."""
    rows = [dict(r) for r in rows]
    rows[5]["positive"] = rows[1]["positive"]
    rows[7]["negative"] = rows[0]["positive"]
    rows[3]["negative"] = rows[3]["positive"]
    return rows


def write_rows(folder: Path) -> Path:
    """Two sources of different sizes (a.jsonl 20 rows, b.jsonl 12): the source of a row is its file's name."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    for name, n in (("a", 20), ("b", 12)):
        rows = [{"query": f"{name}{i} {_rng_text(rng, 3)}", "positive": _rng_text(rng, 6)} for i in range(n)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def make_base_model(folder: Path) -> Path:
    """A tiny random Llama + tokenizer saved as a hub-style folder (what `model.pretrained` points at)."""
    from bireco.models.tiny import build_tiny_model, train_tokenizer
    from tests.helpers import MICRO_SPEC

    rng = random.Random(0)
    tok = train_tokenizer([_rng_text(rng, 10) for _ in range(300)], 320, folder)
    spec = dataclasses.replace(MICRO_SPEC, vocab_size=320)
    build_tiny_model(spec, tok).save_pretrained(folder)
    return folder


class GradRecorder:
    """Lightning callback: gradients at the optimizer step (after DDP's all-reduce) and per-batch losses."""

    def __new__(cls):  # built lazily so that importing this file does not import lightning
        import lightning as L

        class _Recorder(L.Callback):
            def __init__(self) -> None:
                self.grads: dict[str, torch.Tensor] = {}
                self.losses: list[float] = []
                self.queries: list[list[str]] = []  # per step: each row's query text
                self.logged: float | None = None
                self.masked: float | None = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self.losses.append(float(outputs["loss"]))
                decode = pl_module.encoder.tokenizer.decode
                ids = batch["query"]["input_ids"]
                self.queries.append([decode(row, skip_special_tokens=True).strip() for row in ids])

            def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
                self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}

            def on_train_end(self, trainer, pl_module) -> None:
                self.logged = float(trainer.callback_metrics["train/loss"])  # the last step's logged train loss
                masked = trainer.callback_metrics.get("train/masked_candidates")
                self.masked = None if masked is None else float(masked)

        return _Recorder()


def run_scenario(scenario: Scenario, base: Path, world: int, rank: int) -> dict[str, Any]:
    """Train one step of `scenario` in this process (part of a `world`-process group when world > 1)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from bireco.data.collate import PairCollator
    from bireco.factory import build_encoder, build_module
    from tests.helpers import compose_cfg

    cfg = compose_cfg(
        [
            "model=tiny",
            "stages.contrastive.peft.dropout=0.0",  # exact comparisons: no dropout masks to line up
            f"stages.contrastive.loss.gather_across_ranks={scenario.gather}",
            f"stages.contrastive.grad_cache.chunk_size={scenario.chunk_size or 'null'}",
            *scenario.overrides,
        ]
    )
    stage = cfg.stages[scenario.stage]
    torch.manual_seed(0)
    encoder = build_encoder(cfg, stage, str(base))
    module = build_module(scenario.stage, stage, encoder)
    with torch.no_grad():  # LoRA's B starts at 0 (A's gradient would be 0): give every adapter weight a value
        gen = torch.Generator().manual_seed(1)
        for name, p in sorted(module.named_parameters()):
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    keys = module.objective.duplicate_key
    collator = PairCollator(
        encoder.bound, {"s": None}, encoder.pad_id, 64, with_negatives=stage.with_negatives, duplicate_key=keys
    )
    b = scenario.rows_per_rank
    if scenario.from_datamodule:
        from bireco.data.datamodule import PairDataModule

        # per-rank batch b; the single process takes the whole global batch (2 ranks × b)
        data = PairDataModule(
            base.parent / "rows", collator, b if world > 1 else 2 * b, default_instruction="", seed=3
        )
        loader, steps = None, 3
    else:
        batches = []
        for micro in range(scenario.accumulate):
            rows = global_rows(scenario, max(world, 2), micro)
            rows = rows if world == 1 else rows[rank * b : (rank + 1) * b]
            batches.append(collator(rows))
        data, loader, steps = None, DataLoader(batches, batch_size=None), 1
    recorder = GradRecorder()
    monitor, local_gain = None, None
    if stage.get("anchor_gain") is not None:  # Stage I's monitor: and this rank's own gain on its first batch
        from bireco.lit.anchor_gain import AnchorGainMonitor
        from bireco.stage_settings import AnchorGainSettings

        monitor = AnchorGainMonitor(AnchorGainSettings(**stage.anchor_gain))
        with torch.no_grad():
            module.eval()
            local_gain = float(module.objective.anchor_gain(module.encoder, batches[0]))
            module.train()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        precision="32-true",
        max_steps=steps,
        accumulate_grad_batches=scenario.accumulate,
        callbacks=[recorder, *([monitor] if monitor else [])],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        default_root_dir=str(base.parent / f"trainer-{rank}"),
    )
    trainer.fit(module, train_dataloaders=loader, datamodule=data)
    return {
        "grads": recorder.grads,
        "losses": recorder.losses,
        "queries": recorder.queries,
        "logged": recorder.logged,
        "masked": recorder.masked,
        "local_gain": local_gain,
        "gains": monitor.history if monitor else None,
        "stopped_at": monitor.stopped_at if monitor else None,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, scenarios: list[Scenario], base: str, out_dir: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    torch.set_num_threads(1)  # 2 processes on 2 cores
    results = [run_scenario(s, Path(base), world, rank) for s in scenarios]
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def run_two_ranks(scenarios: list[Scenario], base: Path, out_dir: Path) -> list[list[dict[str, Any]]]:
    """Every scenario on 2 processes; returns rank -> per-scenario results."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, free_port(), scenarios, str(base), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]
