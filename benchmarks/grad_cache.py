"""Stage II at a large batch with and without GradCache: peak memory (fresh process per config) and step time.

What GradCache buys: the plain step keeps every layer's activations for the whole batch (queries, positives and
negatives) until the backward; GradCache keeps one chunk's at a time plus the (B, H) embeddings, for one extra
forward pass. Each config is the real Stage II `StageModule` built by the factory from the composed config
(`stages.contrastive.grad_cache.chunk_size`), trained for a few steps under the Lightning Trainer, in a child
process of its own so its peak RSS (CPU) / max_memory_allocated (CUDA) is its own.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from benchmarks import fixtures as fx
from benchmarks.measure import isolated, summarize

log = logging.getLogger(__name__)


def _one_config(chunk_size: int | None, batch: int, q_len: int, d_len: int, steps: int, warmup: int) -> dict[str, Any]:
    """Runs in a fresh child: build the stage from config, train `steps` steps, report step times."""
    from benchmarks.stage2 import lightning_steps, make_batches
    from bireco.factory import build_encoder, build_module

    dev = fx.device()
    precision = "bf16-mixed" if dev.type == "cuda" else "32-true"
    cfg = fx.compose_cfg(["model=tiny", f"stages.contrastive.grad_cache.chunk_size={chunk_size or 'null'}"])
    path = fx.save_tiny_model(cfg, fx.train_small_tokenizer())
    torch.manual_seed(0)
    stage = cfg.stages.contrastive
    module = build_module("contrastive", stage, build_encoder(cfg, stage, path)).to(dev)
    batches = make_batches(steps, batch, q_len, d_len, module.model.config.vocab_size)
    times = lightning_steps(module, batches, precision, dev)[warmup:]
    tokens = batch * (q_len + 2 * d_len)
    return {
        "device": str(dev),
        "precision": precision,
        **summarize(times),
        "tokens_per_s": tokens / summarize(times)["median_s"],
    }


def measure(quick: bool) -> dict[str, Any]:
    """Plain vs GradCache Stage II steps on the tiny model; each in its own fresh process.

    Returns:
        `peak_memory_ratio` (GradCache / plain, < 1 is the saving), `step_time_ratio` (GradCache / plain: the
        extra forward), and each config's peak memory and step-time summary.
    """
    # queries 32 tokens, positives and negatives 64: 256 x 160 = 40,960 tokens per step (quick: 64 x 160 = 10,240),
    # 8x (2x) the tiny preset's Stage II batch of 32
    batch, q_len, d_len, chunk = (64, 32, 64, 16) if quick else (256, 32, 64, 32)
    steps, warmup = 3, 1
    shape = {"batch": batch, "query_len": q_len, "doc_len": d_len, "negatives": True, "steps_timed": steps - warmup}
    out: dict[str, Any] = {"shape": shape, "chunk_size": chunk}
    for name, c in (("plain", None), ("grad_cache", chunk)):
        log.info("stage II GradCache bench: %s (batch %d, chunk %s)", name, batch, c)
        out[name] = isolated(
            "benchmarks.grad_cache:_one_config",
            chunk_size=c,
            batch=batch,
            q_len=q_len,
            d_len=d_len,
            steps=steps,
            warmup=warmup,
        )
    for name in ("plain", "grad_cache"):  # what the step itself added on top of the imported, idle process
        r = out[name]
        r["peak_above_start_bytes"] = r["peak_memory_bytes"] - r.get("rss_at_start_bytes", 0)
    out["peak_memory_ratio"] = out["grad_cache"]["peak_memory_bytes"] / out["plain"]["peak_memory_bytes"]
    out["peak_above_start_ratio"] = (
        out["grad_cache"]["peak_above_start_bytes"] / out["plain"]["peak_above_start_bytes"]
    )
    out["step_time_ratio"] = out["grad_cache"]["median_s"] / out["plain"]["median_s"]
    return out
