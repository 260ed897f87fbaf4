"""The compute report of a stage: tokens/s, real-token fraction, peak memory and model FLOPs utilization.

"80 hours, is this normal?" needs numbers that compare across runs and frameworks, so the FLOP convention
(`bireco.models.flops.CONVENTION`) and the peak used for MFU (the accelerator's *dense* bf16 peak, by device
name; no peak known = no MFU, with the reason) are written next to every figure. Counted from the batches' shapes
on the host: no device sync per step (one per report window, for honest timing on CUDA).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch

from bireco.losses.objective import ROLES
from bireco.models.flops import CONVENTION, training_flops

# dense bf16 tensor-core peaks (NVIDIA datasheets; the sparse figures are twice these), FLOP/s
DENSE_BF16_PEAK = (  # (name substrings, peak): first match wins, so the more specific come first
    (("h200",), 989e12),
    (("h100", "pcie"), 756e12),
    (("h100", "nvl"), 835e12),
    (("h100",), 989e12),
    (("a100",), 312e12),
    (("l40s",), 362e12),
    (("l4",), 121e12),
)


def dense_bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak of a device by its name (`torch.cuda.get_device_name`), None if not in the table."""
    name = device_name.lower()
    for parts, peak in DENSE_BF16_PEAK:
        if all(p in name for p in parts):
            return peak
    return None


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): the CUDA allocator's peak, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process peak RSS"


def adapter_params(module: torch.nn.Module) -> int | None:
    """Trainable LoRA parameters, or None when the stage trains every weight (full fine-tuning)."""
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if any("lora_" not in n for n, _ in trainable):
        return None
    return sum(p.numel() for _, p in trainable)


@contextmanager
def outside_training_time(trainer: L.Trainer) -> Iterator[None]:
    """Run a probe or monitor inside the training loop without its time counting as training's (tokens/s, MFU):
    the stage's `ComputeReport` clocks stop for the block. Nothing happens when the stage has none."""
    reports = [cb for cb in trainer.callbacks if isinstance(cb, ComputeReport)]
    started = [r for r in reports if not r.paused]  # an outer pause (validation) keeps its own clock
    for r in started:
        r.pause()
    try:
        yield
    finally:
        for r in started:
            r.resume()


class ComputeReport(L.Callback):
    """Logs `compute/*` every `every_n_steps` optimizer steps and keeps the stage's totals in `result`.

    Args:
        every_n_steps: report window in optimizer steps.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self.result: dict[str, Any] | None = None
        self.device: torch.device | None = None
        self._reset_totals()

    def _reset_totals(self) -> None:
        self.total = {"real": 0, "padded": 0, "flops": 0.0, "seconds": 0.0, "steps": 0}
        self.window = {"real": 0, "padded": 0, "flops": 0.0}
        self._t0 = time.perf_counter()
        self._last_step = 0
        self._paused_at: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_totals()
        self._last_step = trainer.global_step  # a resumed stage reports the steps it ran itself
        self.device = trainer.strategy.root_device
        self.config = pl_module.encoder.model.config
        self.adapters = adapter_params(pl_module)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.device_name, self.peak = name, dense_bf16_peak(name) if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def pause(self) -> None:
        """Stop the clock (validation, a probe): that time is not training's. Nested pauses count once."""
        if self._paused_at is None:
            self._sync()
            self._paused_at = time.perf_counter()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def resume(self) -> None:
        """Start the clock again; the paused time is left out of the window and the totals."""
        if self._paused_at is not None:
            self._sync()
            self._t0 += time.perf_counter() - self._paused_at
            self._paused_at = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.resume()

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        real = int(batch.get("num_tokens", 0))
        padded = sum(int(batch[r]["input_ids"].numel()) for r in ROLES if r in batch)
        flops = training_flops(self.config, pl_module.flop_passes(batch), self.adapters)
        for acc in (self.total, self.window):
            acc["real"] += real
            acc["padded"] += padded
            acc["flops"] += flops
        step = trainer.global_step
        if step != self._last_step and step % self.every_n_steps == 0:
            self._report(trainer, step)

    def _report(self, trainer: L.Trainer, step: int) -> None:
        self._sync()
        now = time.perf_counter()
        seconds = now - self._t0
        metrics = self._figures(self.window, seconds, step - self._last_step)
        self.total["seconds"] += seconds
        self.total["steps"] += step - self._last_step
        self.window = {"real": 0, "padded": 0, "flops": 0.0}
        self._t0, self._last_step = now, step
        if trainer.is_global_zero:
            scalars = {f"compute/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)

    def _figures(self, acc: dict[str, Any], seconds: float, steps: int) -> dict[str, Any]:
        flops_per_s = acc["flops"] / seconds if seconds > 0 else 0.0
        mem, _ = peak_memory(self.device)
        return {
            "tokens_per_s": acc["real"] / seconds if seconds > 0 else 0.0,
            "padded_tokens_per_s": acc["padded"] / seconds if seconds > 0 else 0.0,
            "real_token_fraction": acc["real"] / acc["padded"] if acc["padded"] else 0.0,
            "model_tflops_per_s": flops_per_s / 1e12,
            "mfu": flops_per_s / self.peak if self.peak else None,
            "peak_memory_gb": mem / 2**30,
            "steps": steps,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step != self._last_step:
            self._report(trainer, step)
        figures = self._figures(self.total, self.total["seconds"], self.total["steps"])
        mem, source = peak_memory(self.device)
        self.result = {
            **figures,
            "seconds": self.total["seconds"],
            "timing": "wall time of the training loop; validation and in-training probes excluded",
            "real_tokens": self.total["real"],
            "model_flops": self.total["flops"],
            "peak_memory_bytes": mem,
            "peak_memory_source": source,
            "device": self.device_name,
            "precision": str(trainer.precision),
            "training": "full fine-tuning" if self.adapters is None else f"LoRA ({self.adapters:,} parameters)",
            "peak_flops": self.peak,
            "mfu_note": (
                "of the device's dense bf16 peak"
                if self.peak
                else f"no dense bf16 peak known for '{self.device_name}' (CPU, or not in the table): no MFU"
            ),
            "flop_convention": CONVENTION,
            "per_device": True,
        }
