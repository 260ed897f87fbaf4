"""Evaluation encoding throughput on SciFact: `TextEncoder.encode` with length-sorted vs input-order batches,
and token-budget batches (`max_tokens`) vs sorted fixed batches at the same largest batch (equal peak memory).

The corpus is SciFact's abstracts (title + text, as mteb joins them; every k-th of the 5,183, 2,048 of them, or
256 with --quick), encoded at max_length 512 (the paper's evaluation length; abstracts span ~50 to 500+ tokens,
so batch order decides how much padding runs).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from benchmarks import fixtures as fx
from benchmarks.measure import interleaved, summarize
from bireco.models.flops import Pass, forward_flops
from bireco.utils.batching import encode_batches, token_budget_batches

log = logging.getLogger(__name__)


def read_corpus(path: Path) -> list[str]:
    """BEIR corpus texts: `title text` per document (a bad line names file and line)."""
    f = path / "corpus.jsonl.gz" if (path / "corpus.jsonl.gz").is_file() else path / "corpus.jsonl"
    opener = gzip.open if f.suffix == ".gz" else open
    texts = []
    with opener(f, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
                texts.append(f"{row.get('title') or ''} {row['text']}".strip())
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{f}:{n}: bad corpus row ({e.__class__.__name__}: {e}); need 'text'") from None
    return texts


def padding_ratios(lengths: list[int], batch_size: int, config: Any) -> dict[str, float]:
    """What sorting saves on these exact batches: unsorted / sorted padded tokens, and FLOPs (counted).

    Sorting only removes padding, so the measured speed-up follows the FLOP ratio (elementwise work scales with
    tokens and pulls it toward the token ratio; masked attention over long padded batches runs slower per FLOP
    on CPU and pushes it a little above).
    """
    totals = {}
    for name, sort in (("sorted", True), ("unsorted", False)):
        tokens = flops = 0.0
        for idx in encode_batches(lengths, batch_size, sort):
            padded = max(lengths[i] for i in idx)
            tokens += len(idx) * padded
            flops += forward_flops(config, Pass(len(idx), padded))  # bireco/models/flops.py
        totals[name] = (tokens, flops)
    (ts, fs), (tu, fu) = totals["sorted"], totals["unsorted"]
    return {"tokens": tu / ts, "flops": fu / fs, "real_tokens": float(sum(lengths))}


def measure(shared: Path | None, quick: bool, precision: str) -> dict[str, Any]:
    """Texts/s of sorted vs unsorted encoding, interleaved; the same encoder, texts and batch size."""
    scifact = None if shared is None else Path(shared) / "scifact"
    if scifact is None or not scifact.is_dir():
        return {"value": None, "reason": f"no SciFact corpus at {scifact} (pass --shared DIR)"}
    import torch
    from transformers import AutoModelForCausalLM

    from bireco.models.encoder import TextEncoder
    from bireco.models.templates import Template

    texts = read_corpus(scifact)
    cfg = fx.compose_cfg(["model=tiny"])
    tok = fx.train_small_tokenizer(texts, int(cfg.model.tiny.vocab_size))
    dev = fx.device()
    model = AutoModelForCausalLM.from_pretrained(fx.save_tiny_model(cfg, tok), attn_implementation="sdpa").to(dev)
    encoder = TextEncoder(model, tok, Template(name="plain"), "eos", max_length=512)
    # every k-th document: the corpus's length mix at a fraction of the time (the full corpus is ~6 unsorted
    # passes of minutes each on 2 CPU cores)
    keep = 256 if quick else 2048
    texts = texts[:: max(1, len(texts) // keep)][:keep]
    batch_size = 64
    lengths = [len(e.input_ids) for e in encoder.bound.encode_batch(texts, None, encoder.max_length)]
    # the budget = the largest batch sorted fixed batches run (64 x the longest text): the same peak memory
    budget = batch_size * max(lengths)
    runs = {
        name: (lambda s=s: encoder.encode(texts, batch_size=batch_size, sort_by_length=s))
        for name, s in (("sorted", True), ("unsorted", False))
    }
    runs["token_budget"] = lambda: encoder.encode(texts, max_tokens=budget)
    tol = 2e-2 if precision == "bf16-mixed" else 1e-4
    with torch.inference_mode(), fx.autocast(dev, precision):
        ref = runs["sorted"]()
        same = all(torch.allclose(ref, runs[k](), atol=tol) for k in ("unsorted", "token_budget"))
        times = interleaved(runs, 0, 2 if quick else 3, dev)  # the check above was the warm-up
    out = {k: {**summarize(v), "texts_per_s": len(texts) / summarize(v)["median_s"]} for k, v in times.items()}
    value = out["sorted"]["texts_per_s"] / out["unsorted"]["texts_per_s"]
    ratios = padding_ratios(lengths, batch_size, model.config)
    return {
        "value": value,
        "token_budget_vs_sorted": out["token_budget"]["texts_per_s"] / out["sorted"]["texts_per_s"],
        "details": {
            "max_tokens": budget,
            "token_budget_batches": len(token_budget_batches(lengths, budget)),
            "sorted_batches": len(encode_batches(lengths, batch_size)),
            "padding_ratios": ratios,
            "truncated_fraction": sum(n >= encoder.max_length for n in lengths) / len(lengths),
            "texts": len(texts),
            "batch_size": batch_size,
            "max_length": 512,
            "precision": precision,
            "same_embeddings": bool(same),
            **out,
        },
    }
