"""Scaling: step time and peak memory vs batch size and vs sequence length, for both stages.

Each configuration runs in its own fresh process (`measure.isolated`), so one configuration's peak never
leaks into the next. Batches are padding-free (every side of length T): the table predicts cost per token.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

from benchmarks import fixtures as fx
from benchmarks.measure import isolated, timed

log = logging.getLogger(__name__)


def child(stage: str, batch: int, length: int, precision: str, steps: int) -> dict[str, Any]:
    """Steps of one stage at (batch, length) in this (fresh) process: median step time after one warm-up."""
    dev = fx.device()
    if stage == "reconstruction":
        from benchmarks.stage1 import Stage1Pair, uniform_batch

        pair = Stage1Pair(None, precision, with_reference=False)
        b = fx.to_device(uniform_batch(batch, length, length, pair.vocab), dev)
        times = [timed(lambda: pair.bireco_step(b), dev) for _ in range(steps + 1)][1:]
        tokens = 2 * batch * length
    else:
        from benchmarks.stage2 import BareLoop, _build, make_batches

        cfg = fx.compose_cfg(["model=tiny"])
        module = _build(cfg, fx.save_tiny_model(cfg, fx.train_small_tokenizer()), dev)
        loop = BareLoop(module, precision, dev, total_steps=1000)
        batches = make_batches(steps + 1, batch, length, length, module.model.config.vocab_size)
        times = loop.steps(batches)[1:]
        tokens = 3 * batch * length
    med = statistics.median(times)
    return {"device": str(dev), "step_s": med, "tokens_per_s": tokens / med}


def grid(quick: bool) -> tuple[list[int], list[int], int, int]:
    """(batch sizes at the fixed length, lengths at the fixed batch, fixed batch, fixed length)."""
    if quick:
        return [4, 8], [32, 64], 4, 32
    return [4, 8, 16, 32], [32, 64, 128, 256], 8, 128


def measure(quick: bool, precision: str) -> dict[str, Any]:
    batches, lengths, fixed_b, fixed_t = grid(quick)
    steps = 2 if quick else 3
    configs = sorted({(b, fixed_t) for b in batches} | {(fixed_b, t) for t in lengths})
    rows = []
    for stage in ("reconstruction", "contrastive"):
        for b, t in configs:
            log.info("scaling: %s batch %d length %d", stage, b, t)
            kw = {"stage": stage, "batch": b, "length": t, "precision": precision, "steps": steps}
            r = isolated("benchmarks.scaling:child", **kw)
            rows.append(
                {
                    "stage": stage,
                    "batch": b,
                    "length": t,
                    "step_s": r["step_s"],
                    "tokens_per_s": r["tokens_per_s"],
                    "peak_memory_bytes": r["peak_memory_bytes"],
                }
            )
    return {"fixed_batch": fixed_b, "fixed_length": fixed_t, "precision": precision, "rows": rows}
