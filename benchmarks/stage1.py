"""Stage I step: bireco's StageModule (BidirectionalReconstruction loss) vs the straightforward reference
(experiments/reference_stage1.py).

Both sides get the same weights, the same batches and the same AdamW; a step is loss + backward + optimizer
step. bireco's step is the real module's `training_step` (built by the real factory from the composed config);
the reference runs four full forwards with full-vocabulary logits and a plain cross-entropy.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from benchmarks import fixtures as fx
from benchmarks.measure import interleaved, summarize, timed
from benchmarks.padding import efficiency
from bireco.data.datamodule import padded_lengths

log = logging.getLogger(__name__)

# `training_step` logs through `self.log`, which only warns when no Trainer is attached (as here)
warnings.filterwarnings("ignore", message=".*self.log.*")


class Stage1Pair:
    """bireco's module and the reference model, identical weights, each with its own AdamW."""

    def __init__(
        self,
        vocab_size: int | None,
        precision: str,
        tokenizer=None,
        with_reference: bool = True,
        with_bireco: bool = True,
    ) -> None:
        from bireco.factory import build_encoder, build_module

        self.device = fx.device()
        self.precision = precision
        self.cfg = fx.compose_cfg(["model=tiny"])
        stage = self.cfg.stages.reconstruction
        tok = tokenizer or fx.train_small_tokenizer()
        path = fx.save_tiny_model(self.cfg, tok, vocab_size)
        # the module is always built (the reference uses its target segments); without `with_bireco` its weights
        # are dropped before anything is measured, so a reference-only process holds one model, as bireco's does
        module = build_module("reconstruction", stage, build_encoder(self.cfg, stage, path))
        self.vocab = module.model.config.vocab_size
        self.alpha = float(stage.loss.alpha)
        self.segments = list(module.objective.target_segments)
        lr = float(stage.optimizer.lr)
        self.module = module.to(self.device) if with_bireco else None
        if with_bireco:
            self.opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
        del module
        self.ref = None
        if with_reference:
            self.ref = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").to(self.device).train()
            self.ref_opt = torch.optim.AdamW(self.ref.parameters(), lr=lr)
            self.ref_loss = fx.reference_module().reference_stage1_loss

    def bireco_step(self, batch: dict[str, Any]) -> None:
        with fx.autocast(self.device, self.precision):
            loss = self.module.training_step(batch, 0)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def reference_step(self, batch: dict[str, Any]) -> None:
        with fx.autocast(self.device, self.precision):
            loss = self.ref_loss(self.ref, batch["query"], batch["positive"], self.alpha, self.segments)["loss"]
        loss.backward()
        self.ref_opt.step()
        self.ref_opt.zero_grad(set_to_none=True)


def uniform_batch(batch: int, q_len: int, d_len: int, vocab: int, seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {"query": fx.uniform_side(batch, q_len, vocab, gen), "positive": fx.uniform_side(batch, d_len, vocab, gen)}


def _rates(times: list[float], tokens: int, samples: int) -> dict[str, Any]:
    s = summarize(times)
    return {**s, "tokens_per_s": tokens / s["median_s"], "samples_per_s": samples / s["median_s"]}


def uniform_throughput(
    batch: int, q_len: int, d_len: int, warmup: int, reps: int, precision: str, vocab_size: int | None = None
) -> dict[str, Any]:
    """Step throughput on padding-free batches (the reference's best case: no padding to waste work on)."""
    pair = Stage1Pair(vocab_size, precision)
    b = fx.to_device(uniform_batch(batch, q_len, d_len, pair.vocab), pair.device)
    times = interleaved(
        {"bireco": lambda: pair.bireco_step(b), "reference": lambda: pair.reference_step(b)}, warmup, reps, pair.device
    )
    tokens = batch * (q_len + d_len)
    out = {k: _rates(v, tokens, batch) for k, v in times.items()}
    return {
        "batch": {"size": batch, "query_len": q_len, "doc_len": d_len, "vocab": pair.vocab, "precision": precision},
        **out,
        "ratio": out["bireco"]["tokens_per_s"] / out["reference"]["tokens_per_s"],
    }


def memory_child(
    impl: str, batch: int, q_len: int, d_len: int, precision: str, vocab_size: int, steps: int = 2
) -> dict[str, Any]:
    """One implementation's Stage I steps in a fresh process (run via `measure.isolated`): its peak memory."""
    # only the measured implementation's model and optimizer exist in the process
    pair = Stage1Pair(vocab_size, precision, with_reference=impl == "reference", with_bireco=impl == "bireco")
    b = fx.to_device(uniform_batch(batch, q_len, d_len, pair.vocab), pair.device)
    step = pair.reference_step if impl == "reference" else pair.bireco_step
    times = [timed(lambda: step(b), pair.device) for _ in range(steps)]
    return {"impl": impl, "device": str(pair.device), "step_s": times[-1], "vocab": pair.vocab}


def real_data_throughput(
    shared: Path | None, batches_per_source: int, warmup: int, reps: int, precision: str
) -> dict[str, Any]:
    """bireco (its length-aware sampler) vs the reference (plain homogeneous batches) on the real pairs.

    Each side draws its own batches with its own sampler from the same rows (epoch 0, same seed), the same
    number of batches per source, so the source mix is equal; the figure is real (unpadded) tokens per second
    over a pass of those batches.
    """
    from bireco.data.collate import PairCollator
    from bireco.data.datamodule import resolve_instructions
    from bireco.data.sampler import HomogeneousBatchSampler

    found = fx.real_pairs(shared)
    if isinstance(found, str):
        return {"value": None, "reason": found}
    rows, cfg, tok = found
    pair = Stage1Pair(None, precision, tokenizer=tok)
    sources = [r["source"] for r in rows]
    instr = resolve_instructions(
        sorted(set(sources)), OmegaConf.to_container(cfg.data.sources, resolve=True), cfg.data.default_instruction
    )
    enc = pair.module.encoder
    collator = PairCollator(enc.bound, instr, enc.pad_id, int(cfg.model.max_length), with_negatives=False)
    lengths = padded_lengths(Dataset.from_list(rows), collator)
    bs, grouping = int(cfg.stages.reconstruction.batch_size), int(cfg.data.length_grouping)

    def pick(length_grouping: int) -> list[list[int]]:
        sampler = HomogeneousBatchSampler(
            sources, bs, seed=int(cfg.seed), lengths=lengths, length_grouping=length_grouping
        )
        taken: dict[str, int] = {}
        out = []
        for b in sampler:
            s = sources[b[0]]
            if taken.get(s, 0) < batches_per_source:
                taken[s] = taken.get(s, 0) + 1
                out.append(b)
        return out

    chosen = {"bireco": pick(grouping), "reference": pick(0)}
    batches = {k: [fx.to_device(collator([rows[i] for i in b]), pair.device) for b in v] for k, v in chosen.items()}
    steps = {"bireco": pair.bireco_step, "reference": pair.reference_step}
    passes = {k: (lambda k=k: [steps[k](b) for b in batches[k]]) for k in steps}
    times = interleaved(passes, warmup, reps, pair.device)
    out: dict[str, Any] = {}
    for k, v in times.items():
        tokens = sum(fx.real_tokens(b, ("query", "positive")) for b in batches[k])
        out[k] = {
            **_rates(v, tokens, bs * len(batches[k])),
            "batches": len(batches[k]),
            "padding_efficiency": efficiency(chosen[k], lengths),
        }
    return {
        "setup": {
            "rows": len(rows),
            "batch_size": bs,
            "batches_per_source": batches_per_source,
            "length_grouping": grouping,
            "max_length": int(cfg.model.max_length),
            "vocab": pair.vocab,
            "precision": precision,
        },
        **out,
        "value": out["bireco"]["tokens_per_s"] / out["reference"]["tokens_per_s"],
    }


def measure(quick: bool, shared: Path | None, precision: str) -> dict[str, Any]:
    """Everything Stage I: uniform-batch throughput (tiny and 128k vocab), peak memory at 128k, real data."""
    from benchmarks.measure import isolated

    warm, reps = (1, 3) if quick else (2, 7)
    bs, q_len, d_len = (4, 32, 64) if quick else (16, 32, 128)
    res: dict[str, Any] = {}
    log.info("stage I: uniform batches, tiny vocabulary")
    res["uniform"] = uniform_throughput(bs, q_len, d_len, warm, reps, precision)
    log.info("stage I: uniform batches, 128k vocabulary")
    res["uniform_128k"] = uniform_throughput(bs, q_len, d_len, 1, max(3, reps // 2), precision, fx.LLAMA3_VOCAB)
    mem = {
        impl: isolated(
            "benchmarks.stage1:memory_child",
            impl=impl,
            batch=bs,
            q_len=q_len,
            d_len=d_len,
            precision=precision,
            vocab_size=fx.LLAMA3_VOCAB,
        )
        for impl in ("bireco", "reference")
    }
    res["memory_128k"] = mem
    log.info("stage I: real training pairs")
    res["real_data"] = real_data_throughput(shared, 1 if quick else 6, 1, 1 if quick else 3, precision)
    peak = {k: v["peak_memory_bytes"] for k, v in mem.items()}
    return {
        "throughput_ratio_vs_reference": res["uniform"]["ratio"],
        "throughput_ratio_vs_reference_128k": res["uniform_128k"]["ratio"],
        "throughput_ratio_vs_reference_real_data": res["real_data"]["value"],
        "peak_memory_ratio_vs_reference": peak["bireco"] / peak["reference"],
        "peak_memory_bytes_128k": peak,
        "details": res,
    }
