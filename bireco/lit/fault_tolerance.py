"""Callbacks that make a killed, preempted or diverging run safe to resume, and resumed runs exact.

- `RngState`: checkpoints carry the RNG streams (dropout, LoRA dropout), so a resumed run draws the same numbers.
- `PreemptionCheckpoint`: on SIGTERM (SLURM preemption, `scancel`, Ctrl-\\) save `last.ckpt` at the next optimizer-step
  boundary and stop; a rerun of the same command continues from it and loses nothing.
- `FiniteGuard`: a NaN/inf loss or gradient stops the run naming stage and step *before* the optimizer step, so
  neither the weights nor the last good checkpoint ever hold a NaN state.
- `AtomicCheckpointIO`: checkpoints are replaced atomically, never left half-written by a kill.
- `FaultInjection`: test hook (env `BIRECO_INJECT_FAULT=stage:step:SIGNAL`) that kills the process at a chosen step.
"""

from __future__ import annotations

import io
import logging
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from bireco.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

FAULT_ENV = "BIRECO_INJECT_FAULT"


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient; names where, so the run can be fixed and resumed."""

    def __init__(self, stage: str, step: int, what: str, checkpoint: Path | None) -> None:
        kept = f"the last good checkpoint is kept: {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(
            f"stage '{stage}', optimizer step {step}: non-finite {what}; the step was not applied and {kept}. "
            "Lower the learning rate or check the data of this step, then rerun to resume."
        )
        self.stage = stage
        self.step = step


class Preempted(SystemExit):
    """The run stopped on SIGTERM after saving its checkpoint; exits with 143 (128 + SIGTERM) like a killed job."""

    def __init__(self, stage: str, checkpoint: Path) -> None:
        super().__init__(128 + signal.SIGTERM)
        self.stage = stage
        self.message = f"stage '{stage}' preempted (SIGTERM); rerun the same command to resume from {checkpoint}"


def _at_step_boundary(trainer: L.Trainer) -> bool:
    """True right after an optimizer step: no half-accumulated gradient would be lost by stopping here."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return done % trainer.accumulate_grad_batches == 0 or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file *in the same folder*, fsynced, then renamed over the old one.

    Lightning's default goes through an fsspec transaction whose temp file lives in the system temp dir; when that
    is another filesystem the final move is a copy, and a kill during it leaves a truncated `last.ckpt`.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getbuffer())


class RngState(L.Callback):
    """Saves the torch/numpy/python RNG states in every checkpoint; restores them when training (re)starts.

    Restoring waits for `on_train_start` because restoring a checkpoint happens before the sanity check and the
    dataloader setup; the states must be in place exactly when the first resumed step draws from them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        # numpy's state holds an ndarray, which Lightning's weights-only checkpoint loading refuses: store a tensor
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("rng")
        if states is not None:
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
        self._pending = states

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            _set_rng_states(self._pending)
            self._pending = None


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM, write `path` at the next optimizer-step boundary, then stop with Lightning's SIGTERMException.

    The stop comes at the start of the next batch, not right after the save: Lightning hands a step's metrics to
    the loggers only after `on_train_batch_end`, and the checkpointed step's log row must not be lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.saved = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.received_sigterm and not self.saved and _at_step_boundary(trainer):
            trainer.save_checkpoint(self.path)
            self.saved = True
            log.warning("SIGTERM: saved %s at step %d; rerun to resume", self.path, trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.saved:
            raise SIGTERMException()


class FiniteGuard(L.Callback):
    """Stops on a NaN/inf loss or gradient before the optimizer applies it.

    One device→host sync per optimizer step (a single fused norm over all gradients), not one per parameter.
    """

    def __init__(self, stage: str, checkpoint: Path) -> None:
        self.stage = stage
        self.checkpoint = Path(checkpoint)
        self._loss_ok: torch.Tensor | None = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        ok = torch.isfinite(loss.detach()).all()
        self._loss_ok = ok if self._loss_ok is None else self._loss_ok & ok  # over accumulated micro-batches

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        loss_ok, self._loss_ok = self._loss_ok, None
        checks = [] if loss_ok is None else [loss_ok]
        if grads:
            checks.append(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if not checks or bool(torch.stack(checks).all()):  # the one host sync of the step
            return
        what = "loss" if loss_ok is not None and not bool(loss_ok) else "gradient"
        ckpt = self.checkpoint if self.checkpoint.is_file() else None
        raise NonFiniteLossError(self.stage, trainer.global_step, what, ckpt)


class FaultInjection(L.Callback):
    """Sends a signal to this process at a given stage and optimizer step: how the resume tests kill a run.

    `spec` is `stage:step:SIGNAL` (e.g. `contrastive:3:SIGKILL`); step 0 fires when the stage starts.
    """

    def __init__(self, stage: str, spec: str) -> None:
        want_stage, step, sig = spec.split(":")
        self.armed = want_stage == stage
        self.step = int(step)
        self.signal = signal.Signals[sig]

    @classmethod
    def from_env(cls, stage: str) -> FaultInjection | None:
        spec = os.environ.get(FAULT_ENV)
        return cls(stage, spec) if spec else None

    def _fire(self, trainer: L.Trainer) -> None:
        if self.armed and trainer.global_step == self.step:
            self.armed = False
            log.warning("%s: sending %s at step %d", FAULT_ENV, self.signal.name, trainer.global_step)
            os.kill(os.getpid(), self.signal)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == 0:
            self._fire(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.step > 0 and _at_step_boundary(trainer):
            self._fire(trainer)
