"""Stage II model FLOPs utilization on a Llama-3.2-1B shape: the figure issue 17 asks for, in one command.

    python -m benchmarks.mfu                         # on a GPU: the 1B shape in bf16, LoRA, batch 128, q 64 / d 256
    python -m benchmarks.mfu --shape tiny --steps 6  # anywhere (a CPU gets tokens/s and TFLOP/s, no MFU)

The weights are random, built from the shape's config (a device machine reaches no hub; FLOPs and speed do not
depend on the values), saved in bf16 and loaded through `build_encoder`, so LoRA, dtype and attention are the
user's path. The step is the real one: the `StageModule` of `stages.contrastive` (InfoNCE, hard negatives,
false-negative masking) under a Lightning `Trainer`, timed by the run's own `ComputeReport`. The first window
(allocator, kernel autotuning) is reported but not in the headline, which is the steps-weighted mean of the later
windows (peak memory: their maximum).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

from benchmarks import fixtures as fx
from benchmarks.measure import machine_info
from benchmarks.stage2 import make_batches
from bireco.lit.compute import ComputeReport
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model
from bireco.utils.io import atomic_write_json

log = logging.getLogger(__name__)

# meta-llama/Llama-3.2-1B's shape (its config.json): 1,235,814,400 parameters with the tied embedding
SHAPES = {
    "llama3.2-1b": (
        TinyLlamaSpec(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=4096,
        ),
        128_256,
        "llama3.2-1b",
    ),
    "tiny": (TinyLlamaSpec(), 4096, "tiny"),
}


class WindowLog(Logger):
    """Keeps the `compute/*` figures of every report window in memory (the benchmark writes no run folder)."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[dict[str, float | int | None]] = []

    @property
    def name(self) -> str:
        return "window_log"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        figures = {k.removeprefix("compute/"): v for k, v in metrics.items() if k.startswith("compute/")}
        if figures:
            self.windows.append({"step": step, **figures})

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def build(shape: str, out_dir: str) -> tuple[Any, str]:
    """(the contrastive stage's config, a folder holding the shape's random weights in bf16 and a tokenizer)."""
    spec, vocab, preset = SHAPES[shape]
    # the plain template: the batches come pre-tokenized, and the small tokenizer has no chat-template tokens
    overrides = [f"model={preset}", "template=plain", "model.tiny=null", f"model.pretrained={out_dir}"]
    cfg = fx.compose_cfg([*overrides, "model.revision=null"])
    tok = fx.train_small_tokenizer()
    model = build_tiny_model(spec, tok, vocab_size=vocab)
    model.to(torch.bfloat16).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return cfg, out_dir


def measure(
    shape: str = "llama3.2-1b",
    batch: int | None = None,
    q_len: int = 64,
    d_len: int = 256,
    steps: int = 30,
    window: int = 10,
    precision: str | None = None,
    gradient_checkpointing: bool | None = None,
) -> dict[str, Any]:
    """Stage II steps of `shape` on random padding-free batches (query, positive, hard negative): the compute
    report's windows and the headline over the windows after the first.

    Args:
        shape: a key of `SHAPES`.
        batch: rows per step; None = the preset's Stage II batch per device (the paper's 128 for the 1B preset).
        q_len / d_len: tokens of every query / of every positive and hard negative.
        steps / window: optimizer steps, and steps per compute-report window (steps >= 2 x window, so the
            headline has a window after the first).
        precision: Lightning's; None = bf16-mixed on CUDA, 32-true on CPU.
        gradient_checkpointing: None = the preset's.
    """
    if steps < 2 * window:
        raise ValueError(f"steps={steps} < 2 x window={window}: the headline needs a window after the first")
    from bireco.factory import build_encoder, build_module

    dev = fx.device()
    precision = precision or ("bf16-mixed" if dev.type == "cuda" else "32-true")
    with tempfile.TemporaryDirectory(prefix="bireco-mfu-") as folder:
        cfg, path = build(shape, folder)
        if gradient_checkpointing is not None:
            cfg.model.gradient_checkpointing = gradient_checkpointing
        stage = cfg.stages.contrastive
        batch = batch or int(stage.batch_size)
        torch.manual_seed(0)
        module = build_module("contrastive", stage, build_encoder(cfg, stage, path))
    batches = make_batches(steps, batch, q_len, d_len, module.encoder.model.config.vocab_size)
    report, windows = ComputeReport(every_n_steps=window), WindowLog()
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=steps,
        logger=windows,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[report],
        num_sanity_val_steps=0,
    )
    log.info("mfu: %s, batch %d, q %d / d %d tokens, %d steps, %s", shape, batch, q_len, d_len, steps, precision)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    steady = windows.windows[1:]

    def mean(key: str) -> float | None:
        pairs = [(w[key], w["steps"]) for w in steady if w.get(key) is not None]
        return sum(v * n for v, n in pairs) / sum(n for _, n in pairs) if pairs else None

    spec, vocab, _ = SHAPES[shape]
    return {
        "shape": shape,
        "spec": {**asdict(spec), "vocab_size": vocab},
        "parameters": sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n),
        "lora_parameters": sum(p.numel() for n, p in module.named_parameters() if "lora_" in n),
        "batch": batch,
        "q_len": q_len,
        "d_len": d_len,
        "steps": steps,
        "window": window,
        "gradient_checkpointing": bool(cfg.model.gradient_checkpointing),
        "headline": {
            **{k: mean(k) for k in ("mfu", "model_tflops_per_s", "tokens_per_s")},
            "peak_memory_gb": max(w["peak_memory_gb"] for w in steady),
        },
        "headline_note": f"the {len(steady)} report windows after the first (allocator, autotuning), weighted by "
        "their steps; peak memory: their maximum",
        "windows": windows.windows,
        "stage": report.result,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mfu", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama3.2-1b", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: the preset's)")
    parser.add_argument("--q-len", type=int, default=64)
    parser.add_argument("--d-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--window", type=int, default=10, help="steps per compute-report window")
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on CUDA, 32-true on CPU")
    ckpt = parser.add_mutually_exclusive_group()
    ckpt.add_argument("--checkpointing", dest="gc", action="store_true", default=None)
    ckpt.add_argument("--no-checkpointing", dest="gc", action="store_false")
    parser.add_argument("--out", default="bench/mfu.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    res = measure(args.shape, args.batch, args.q_len, args.d_len, args.steps, args.window, args.precision, args.gc)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), res)
    h = res["headline"]
    mfu = "no MFU (" + res["stage"]["mfu_note"] + ")" if h["mfu"] is None else f"MFU {100 * h['mfu']:.1f} %"
    print(
        f"{res['shape']} ({res['parameters']:,} parameters + {res['lora_parameters']:,} LoRA) on "
        f"{res['stage']['device']}: {mfu}, "
        f"{h['model_tflops_per_s']:.2f} model TFLOP/s, {h['tokens_per_s']:,.0f} tokens/s, "
        f"peak {h['peak_memory_gb']:.2f} GB -> {args.out}"
    )
    print(json.dumps({"flop_convention": res["stage"]["flop_convention"]}))


if __name__ == "__main__":
    main()
