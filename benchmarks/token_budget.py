"""Stage II GradCache chunks of N rows vs chunks of at most N tokens, on the real pairs: tokens/s at equal memory.

A fixed row count pads every chunk to its longest row and sizes memory by the worst chunk; a token budget sorts
the global batch's rows by length and fills each chunk up to the budget, so short rows share a forward and
long ones split. The fair comparison (the issue's): a token-budget config against the *best* fixed-row config
whose peak memory is no higher. Every config is the real Stage II `StageModule` from the composed config, trained a
few steps on the same global batches (the homogeneous, length-grouped batches training draws), in a fresh
process of its own so its peak memory is its own.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks import fixtures as fx
from benchmarks.measure import isolated, summarize

log = logging.getLogger(__name__)


def _one_config(
    model_dir: str, rows: list[list[dict[str, Any]]], chunk_size: int | None, max_tokens: int | None, warmup: int
) -> dict[str, Any]:
    """Runs in a fresh child: the stage from config, one step per global batch in `rows`, step times."""
    from omegaconf import OmegaConf

    from benchmarks.stage2 import lightning_steps
    from bireco.data.collate import PairCollator
    from bireco.data.datamodule import resolve_instructions
    from bireco.factory import build_encoder, build_module

    dev = fx.device()
    precision = "bf16-mixed" if dev.type == "cuda" else "32-true"
    cfg = fx.compose_cfg(
        [
            "model=tiny",
            "data=local",
            f"stages.contrastive.batch_size={len(rows[0])}",
            f"stages.contrastive.grad_cache.chunk_size={chunk_size or 'null'}",
            f"stages.contrastive.grad_cache.max_tokens={max_tokens or 'null'}",
        ]
    )
    stage = cfg.stages.contrastive
    torch.manual_seed(0)
    module = build_module("contrastive", stage, build_encoder(cfg, stage, model_dir)).to(dev)
    enc = module.encoder
    sources = sorted({r["source"] for batch in rows for r in batch})
    instructions = resolve_instructions(
        sources, OmegaConf.to_container(cfg.data.sources, resolve=True), cfg.data.default_instruction
    )
    collate = PairCollator(
        enc.bound,
        instructions,
        enc.pad_id,
        enc.max_length,
        duplicate_key=module.objective.duplicate_key,
        with_negatives=True,
    )
    batches = [collate(b) for b in rows]
    real = [fx.real_tokens(b, ("query", "positive", "negative")) for b in batches]
    times = lightning_steps(module, batches, precision, dev)
    timed, tokens = times[warmup:], real[warmup : len(times)]
    return {
        "device": str(dev),
        "precision": precision,
        **summarize(timed),
        "real_tokens_per_step": sum(tokens) / len(tokens),
        "tokens_per_s": sum(tokens) / sum(timed),
    }


def global_batches(shared: Path | None, batch: int, n: int) -> tuple[list[list[dict[str, Any]]], str] | str:
    """`n` global batches of `batch` rows as training draws them (homogeneous source, length-grouped), and the
    folder of a tiny model whose tokenizer was trained on the pairs; or why not."""
    from datasets import Dataset
    from omegaconf import OmegaConf

    from bireco.data.collate import PairCollator
    from bireco.data.datamodule import padded_lengths, resolve_instructions
    from bireco.data.sampler import HomogeneousBatchSampler
    from bireco.models.templates import Template

    found = fx.real_pairs(shared)
    if isinstance(found, str):
        return found
    rows, cfg, tok = found
    sources = [r["source"] for r in rows]
    instr = resolve_instructions(
        sorted(set(sources)), OmegaConf.to_container(cfg.data.sources, resolve=True), cfg.data.default_instruction
    )
    bound = Template(**OmegaConf.to_container(cfg.template, resolve=True)).bind(tok)
    lengths = padded_lengths(
        Dataset.from_list(rows), PairCollator(bound, instr, tok.pad_token_id, cfg.model.max_length)
    )
    sampler = HomogeneousBatchSampler(
        sources, batch, seed=int(cfg.seed), lengths=lengths, length_grouping=int(cfg.data.length_grouping)
    )
    full = [b for b in sampler if len(b) == batch][:n]
    if len(full) < n:
        return f"the pairs give {len(full)} full batches of {batch}, {n} needed"
    model_dir = fx.save_tiny_model(cfg, tok, out_dir=tempfile.mkdtemp(prefix="bireco-bench-tb-"))
    return [[rows[i] for i in b] for b in full], model_dir


def best_at_memory(fixed: dict[str, dict[str, Any]], peak: int) -> tuple[str, dict[str, Any]] | None:
    """The fastest fixed-row config whose peak memory is at most `peak`, or None if none fits."""
    fits = [(name, r) for name, r in fixed.items() if r["peak_memory_bytes"] <= peak]
    return max(fits, key=lambda nr: nr[1]["tokens_per_s"]) if fits else None


def measure(shared: Path | None, quick: bool) -> dict[str, Any]:
    """Token-budget vs fixed-row GradCache chunks on the same real global batches.

    Returns:
        `value`: the highest tokens/s ratio of a token-budget config over the best fixed-row config at equal or
        lower peak memory (the issue's goal: >= 1.3), with every config's figures and which pairs were compared.
    """
    batch, n, warmup = (32, 3, 1) if quick else (256, 4, 1)
    made = global_batches(shared, batch, n)
    if isinstance(made, str):
        return {"value": None, "reason": made}
    rows, model_dir = made
    chunk_sizes = (8, 16, 32) if quick else (8, 16, 32, 64)
    budgets = (1024, 2048) if quick else (1024, 2048, 4096, 8192)
    out: dict[str, Any] = {"batch": batch, "steps_timed": n - warmup, "fixed_rows": {}, "token_budget": {}}
    configs = [("fixed_rows", c, {"chunk_size": c, "max_tokens": None}) for c in chunk_sizes]
    configs += [("token_budget", t, {"chunk_size": None, "max_tokens": t}) for t in budgets]
    for kind, size, chunking in configs:
        log.info("stage II chunks: %s %d (batch %d)", kind, size, batch)
        out[kind][str(size)] = isolated(
            "benchmarks.token_budget:_one_config", model_dir=model_dir, rows=rows, warmup=warmup, **chunking
        )
    compared = {}
    for t, r in out["token_budget"].items():
        best = best_at_memory(out["fixed_rows"], r["peak_memory_bytes"])
        if best is not None:
            compared[t] = {"fixed_rows": best[0], "ratio": r["tokens_per_s"] / best[1]["tokens_per_s"]}
    out["compared"] = compared
    out["value"] = max((c["ratio"] for c in compared.values()), default=None)
    return out
