"""Stage II step: the real StageModule (InfoNCE loss) under a Lightning Trainer vs the same math in a bare
PyTorch loop.

The ratio is framework overhead: Lightning's loop, the module's logging and the Trainer's precision plugin
against a loop that does only encode → InfoNCE → backward → AdamW → schedule step. Both start from the same
weights (same LoRA init, same seed), use the same optimizer and schedule and read the same pre-collated batches
through a DataLoader. The Trainer is Lightning's with the stage's precision and no logger, checkpointing or
progress bar (those are I/O a user chooses; `bireco-train` adds them through callbacks).
"""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from benchmarks import fixtures as fx
from benchmarks.measure import summarize, sync
from bireco.losses.contrastive import in_batch_info_nce
from bireco.losses.false_negatives import token_ids_key

log = logging.getLogger(__name__)


class StepClock(L.Callback):
    """Wall time between the starts of consecutive training batches: everything the loop does per step."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sync(self.dev)
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        sync(self.dev)
        self.stamps.append(time.perf_counter())


def _build(cfg, path: str, dev: torch.device):
    from bireco.factory import build_encoder, build_module

    torch.manual_seed(0)  # LoRA's A matrices are random: the same seed gives both sides the same start
    stage = cfg.stages.contrastive
    return build_module("contrastive", stage, build_encoder(cfg, stage, path)).to(dev)


def make_batches(n: int, batch: int, q_len: int, d_len: int, vocab: int) -> list[dict[str, Any]]:
    """Pre-collated padding-free batches (query, positive, hard negative), as the collator would emit them."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        b = {k: fx.uniform_side(batch, q_len if k == "query" else d_len, vocab, gen) for k in ("query", "positive")}
        b["negative"] = fx.uniform_side(batch, d_len, vocab, gen)
        for role in ("positive", "negative"):  # row keys for false-negative masking, as the collator gives them
            b[role]["key"] = torch.tensor([token_ids_key(row.tolist()) for row in b[role]["input_ids"]])
        b["source"] = "bench"
        b["num_tokens"] = batch * (q_len + 2 * d_len)
        out.append(b)
    return out


def lightning_steps(module, batches: list[dict[str, Any]], precision: str, dev: torch.device) -> list[float]:
    clock = StepClock(dev)
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return [b - a for a, b in itertools.pairwise(clock.stamps)]


class BareLoop:
    """Stage II in plain PyTorch: the encoder, InfoNCE, AdamW and the same linear warmup/decay."""

    def __init__(self, module, precision: str, dev: torch.device, total_steps: int) -> None:
        self.encoder, self.scale, self.precision, self.dev = module.encoder, module.objective.scale, precision, dev
        # the stage's own AdamW and linear warmup/decay (torch's and transformers' objects, no Lightning)
        self.opt = module.make_optimizer([p for p in module.parameters() if p.requires_grad])
        self.sched = module.make_scheduler(self.opt, total_steps)
        module.train()

    def steps(self, batches: list[dict[str, Any]]) -> list[float]:
        stamps = []
        for b in DataLoader(batches, batch_size=None):
            sync(self.dev)
            stamps.append(time.perf_counter())
            b = fx.to_device(b, self.dev)
            with fx.autocast(self.dev, self.precision):
                q = self.encoder(b["query"]["input_ids"], b["query"]["attention_mask"])
                p = self.encoder(b["positive"]["input_ids"], b["positive"]["attention_mask"])
                n = self.encoder(b["negative"]["input_ids"], b["negative"]["attention_mask"])
                keys = {"positive_keys": b["positive"]["key"], "negative_keys": b["negative"]["key"]}
                loss = in_batch_info_nce(q, p, n, scale=self.scale, **keys)
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
        sync(self.dev)
        stamps.append(time.perf_counter())
        return [b - a for a, b in itertools.pairwise(stamps)]


def measure(quick: bool, precision: str) -> dict[str, Any]:
    """Rounds of N steps each, alternating Lightning and the bare loop; the first `warmup` steps of a round dropped.

    The headline is the ratio of the two medians over all rounds; each round's own ratio (the pair run back to
    back) is reported next to it, so the spread from the machine shows apart from the framework's cost.
    """
    dev = fx.device()
    cfg = fx.compose_cfg(["model=tiny"])
    bs, q_len, d_len = (8, 32, 64) if quick else (int(cfg.stages.contrastive.batch_size), 32, 128)
    rounds, steps, warmup = (2, 4, 1) if quick else (6, 8, 2)
    tok = fx.train_small_tokenizer()
    path = fx.save_tiny_model(cfg, tok)
    lit_module, bare_module = _build(cfg, path, dev), _build(cfg, path, dev)
    batches = make_batches(steps, bs, q_len, d_len, lit_module.model.config.vocab_size)
    bare = BareLoop(bare_module, precision, dev, total_steps=rounds * steps + 1000)
    times: dict[str, list[float]] = {"lightning": [], "bare": []}
    per_round = []
    for r in range(rounds):
        order = ("lightning", "bare") if r % 2 == 0 else ("bare", "lightning")
        this: dict[str, list[float]] = {}
        for name in order:
            log.info("stage II: round %d/%d, %s", r + 1, rounds, name)
            t = lightning_steps(lit_module, batches, precision, dev) if name == "lightning" else bare.steps(batches)
            this[name] = t[warmup:]
            times[name] += this[name]
        per_round.append(statistics.median(this["bare"]) / statistics.median(this["lightning"]))
    tokens = bs * (q_len + 2 * d_len)
    out = {k: {**summarize(v), "tokens_per_s": tokens / summarize(v)["median_s"]} for k, v in times.items()}
    return {
        "throughput_ratio_vs_bare_loop": out["lightning"]["tokens_per_s"] / out["bare"]["tokens_per_s"],
        "details": {
            "batch": {"size": bs, "query_len": q_len, "doc_len": d_len, "negatives": True, "precision": precision},
            "peft": "lora" if cfg.stages.contrastive.peft.enabled else "none",
            "ratio_per_round": per_round,
            **out,
        },
    }
