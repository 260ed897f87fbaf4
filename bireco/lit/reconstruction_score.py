"""How much of the other side a stage's embeddings hold: decode held-out pairs from their embeddings at the end.

At the end of every stage (warm-up, Stage I, Stage II) `n_rows` validation pairs (a fixed sample) are embedded,
the other side is decoded from each embedding (greedy) and scored (`bireco.reconstruct`), in both directions,
together with a control: the same decoding from shuffled embeddings (each row gets the vector of another row with
the same instruction). The gap between the two is what the embedding itself carries. Logged as
`reconstruction/*` and written to `<stage>/reconstruction.json`, so the table can show the score after each stage;
the file also keeps every row's F1 (`per_row`), so the gap gets a paired interval over rows and seeds
(`bireco.results.compare`): greedy F1 on 128 rows moves by ~0.015 between runs whose embeddings carry nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from bireco.lit.compute import outside_training_time
from bireco.reconstruct.generate import DecodeConfig
from bireco.reconstruct.reconstructor import DIRECTIONS, Pair, Reconstructor, summarize
from bireco.reconstruct.score import control_order
from bireco.runs import PER_ROW_KEY
from bireco.utils.io import atomic_write_json

log = logging.getLogger(__name__)

N_EXAMPLES = 3  # decoded examples kept in reconstruction.json, for a human to read
SAMPLE_SEED = 0  # which validation rows are scored: fixed, not the run's seed, so every run scores the same rows


def held_out_sample(n_total: int, n_rows: int) -> list[int]:
    """Indices of `n_rows` of `n_total` validation rows, spread over the whole set by a fixed seed and kept in file
    order: the same rows after every stage and in every run on that set. Not the first rows: a validation file
    sorted by source (and `data.val_rows`' split, which keeps file order) would be scored on its first source."""
    if n_rows >= n_total:
        return list(range(n_total))
    return sorted(random.Random(SAMPLE_SEED).sample(range(n_total), n_rows))


def held_out_pairs(datamodule: Any, n_rows: int) -> list[Pair]:
    """The validation rows of `held_out_sample`, with their instructions."""
    val = getattr(datamodule, "val_set", None)
    if val is None or len(val) == 0:
        return []
    instructions = datamodule.collator.instructions
    rows = val.select(held_out_sample(len(val), n_rows))
    return [Pair(r["query"], r["positive"], instructions.get(r["source"])) for r in rows]


PerRow = dict[str, dict[str, list[float]]]  # direction -> {"f1": [...], "f1_shuffled": [...]}, one per row


def score_pairs(
    reconstructor: Reconstructor, pairs: Sequence[Pair], batch_size: int
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]], PerRow]:
    """Both directions, true and shuffled embeddings: `{direction: {f1, loss, f1_shuffled, loss_shuffled}}`.

    The shuffle (`control_order`: a seeded derangement among rows with the same instruction) is drawn over the
    whole sample, so it does not depend on the batch size. Returns the scores, a few decoded examples and each
    row's F1 (true and shuffled, in sample order: the paired units of the gap's interval).
    """
    order = control_order([p.instruction for p in pairs])
    scores: dict[str, dict[str, float]] = {}
    per_row: PerRow = {}
    examples: list[dict[str, Any]] = [{"query": p.query, "positive": p.positive} for p in pairs[:N_EXAMPLES]]
    for direction in DIRECTIONS:
        embedded = [(p.query, p.instruction) if direction == "q2d" else (p.positive, None) for p in pairs]
        chunks = [embedded[s : s + batch_size] for s in range(0, len(pairs), batch_size)]
        anchors = torch.cat([reconstructor.embed([t for t, _ in c], [i for _, i in c]) for c in chunks])  # (N, H)
        out: dict[str, float] = {}
        for name, anchor_set in (("", anchors), ("_shuffled", anchors[order])):
            records = []
            for s in range(0, len(pairs), batch_size):
                records += reconstructor.run(pairs[s : s + batch_size], direction, anchor_set[s : s + batch_size])
            summary = summarize(records)
            out[f"f1{name}"], out[f"loss{name}"] = summary["f1"], summary["loss"]
            per_row.setdefault(direction, {})[f"f1{name}"] = [r["f1"] for r in records]
            for ex, rec in zip(examples, records, strict=False):
                ex[f"{direction}{name}"] = rec["generated"]
        scores[direction] = out
    return scores, examples, per_row


class ReconstructionScore(L.Callback):
    """Scores reconstruction from the stage's embeddings once, when training ends.

    Args:
        out_file: the stage's `reconstruction.json`.
        n_rows: held-out pairs scored (`held_out_sample`: a fixed sample spread over the validation set).
        decode: decoding settings (greedy by default).
        target_segments: Stage I's targets, for the teacher-forced loss.
        batch_size: rows decoded together.
    """

    def __init__(
        self,
        out_file: str | Path,
        n_rows: int = 32,
        decode: DecodeConfig | None = None,
        target_segments: Sequence[str] = ("template", "instruction", "text"),
        batch_size: int = 32,
    ) -> None:
        if n_rows < 2:
            raise ValueError(f"reconstruction score needs n_rows >= 2 (the shuffled control), got {n_rows}")
        self.out_file = Path(out_file)
        self.n_rows = n_rows
        self.decode = decode or DecodeConfig(max_new_tokens=48)
        self.target_segments = tuple(target_segments)
        self.batch_size = batch_size
        self.result: dict[str, Any] | None = None

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pairs = held_out_pairs(trainer.datamodule, self.n_rows)
        if len(pairs) < 2:
            log.info("reconstruction score skipped: fewer than 2 validation rows (set data.val_path or data.val_rows)")
            return
        reconstructor = Reconstructor(pl_module.encoder, self.decode, self.target_segments)
        threads = torch.get_num_threads()
        if reconstructor.device.type == "cpu":
            # token-by-token decoding of a small batch is latency-bound: measured on a busy 2-core machine, 32 rows
            # took 80.7 s with 2 threads and 2.8 s with 1 (the demo's tiny model)
            torch.set_num_threads(1)
        try:
            with outside_training_time(trainer):
                scores, examples, per_row = score_pairs(reconstructor, pairs, self.batch_size)
        finally:
            torch.set_num_threads(threads)
        step = trainer.global_step
        flat = {f"reconstruction/{d}_{k}": v for d, s in scores.items() for k, v in s.items()}
        for lg in trainer.loggers:
            lg.log_metrics(flat, step=step)
        self.result = {
            "stage": pl_module.stage,
            "step": step,
            "rows": len(pairs),
            "max_new_tokens": self.decode.max_new_tokens,
            **scores,
            "examples": examples,
        }
        # the rows' scores go to the file only: the stage record (results.json, stage_done.json) keeps the means
        atomic_write_json(self.out_file, {**self.result, PER_ROW_KEY: per_row})
        log.info("reconstruction @ step %d: %s", step, {k: round(v, 4) for k, v in flat.items()})
