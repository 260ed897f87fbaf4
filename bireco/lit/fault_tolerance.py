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

from bireco.distributed import all_gather_objects, world
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


class Interrupted(SystemExit):
    """The run stopped on Ctrl-C (SIGINT; Lightning tears down and exits 1, silently): exits 130 (128 + SIGINT)
    with the line that says how to resume and from which checkpoint (the last periodic one: none is saved on
    Ctrl-C)."""

    def __init__(self, stage: str, checkpoint: Path | None) -> None:
        super().__init__(128 + signal.SIGINT)
        self.stage = stage
        where = f"from {checkpoint}" if checkpoint else "from the stage's start (no checkpoint was written yet)"
        self.message = f"stage '{stage}' interrupted (Ctrl-C); rerun the same command to resume {where}"


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
    """Saves every rank's torch/numpy/python RNG states in every checkpoint; restores them when training (re)starts.

    Per rank: ranks consume their streams differently (their batches differ in shape, so dropout draws differ),
    and a resumed rank must continue its own stream for the run to be exact. `state_dict` runs on every rank
    while a checkpoint is written (Lightning collects callback states everywhere, rank 0 writes the file), so the
    states are gathered there. Restoring waits for `on_train_start`: a checkpoint is restored before the sanity
    check and the dataloader setup, and the states must be in place exactly when the first resumed step draws.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        # numpy's state holds an ndarray, which Lightning's weights-only checkpoint loading refuses: store a tensor
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
        return {"rng_per_rank": all_gather_objects(states)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_rank = state_dict.get("rng_per_rank") or ([state_dict["rng"]] if "rng" in state_dict else None)
        if per_rank is None:
            return
        n, rank = world()
        if len(per_rank) == n:
            states = dict(per_rank[rank])
        else:
            log.warning(
                "the checkpoint holds RNG states of %d ranks, this run has %d: every rank continues rank 0's "
                "stream (the resume is correct but not bit-identical to an uninterrupted run)",
                len(per_rank),
                n,
            )
            states = dict(per_rank[0])
            states.pop("torch.cuda", None)  # another device layout: per-device CUDA states may not fit it
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
        self._pending = states

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            _set_rng_states(self._pending)
            self._pending = None


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM, every rank saves `path` together at the next optimizer-step boundary, then stops.

    The handler only records the signal. Lightning's own SIGTERM handling would stop right after the current
    micro-batch (mid-accumulation, without a checkpoint), and under DDP it acts on rank 0's flag alone; but
    saving is collective, so the ranks must agree on *when*: at every step boundary they OR their flags (one
    tiny all-reduce under DDP, nothing in one process), all save, and all stop at the next batch start (not right
    after the save: Lightning hands a step's metrics to the loggers only after `on_train_batch_end`, and the
    checkpointed step's log row must not be lost). A signal to any one rank (SLURM signals all of them, a
    user's `kill` maybe one) stops the whole job cleanly.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.requested = False  # a SIGTERM reached this process
        self.saved = False  # all ranks agreed and saved: every rank stops
        self._launcher: Any = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if not self.requested and self._launcher is not None:
            self._launcher.kill(signum)  # ranks Lightning spawned itself get it too
        self.requested = True

    def _install(self, trainer: L.Trainer) -> None:
        """Take SIGTERM over from Lightning's handler (installed when fit/validate starts; its teardown puts the
        original back). Lightning's would act on rank 0's flag alone, and its handler runs a collective."""
        self._launcher = trainer.strategy.launcher
        if signal.getsignal(signal.SIGTERM) != self._on_sigterm:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and connector.received_sigterm:  # a signal before the take-over: ours now
            self.requested, connector.received_sigterm = True, False

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)  # also the stage's final `trainer.validate`: a SIGTERM there stops after the stage

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.saved or not _at_step_boundary(trainer):
            return
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            trainer.save_checkpoint(self.path)
            self.saved = True
            log.warning("SIGTERM: saved %s at step %d; rerun to resume", self.path, trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.saved:
            raise SIGTERMException()


class FiniteGuard(L.Callback):
    """Stops on a NaN/inf loss or gradient before the optimizer applies it.

    One device→host sync per optimizer step (a single fused norm over all gradients, OR-ed over ranks), not one per
    parameter.
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
        if not checks:
            return
        # OR-ed over ranks before the one host sync of the step: a rank stopping alone would hang the others
        bad = trainer.strategy.reduce((~torch.stack(checks).all()).float(), reduce_op="sum")
        if not bool(bad > 0):
            return
        what = "loss" if loss_ok is not None and not bool(loss_ok) else "gradient"
        ckpt = self.checkpoint if self.checkpoint.is_file() else None
        raise NonFiniteLossError(self.stage, trainer.global_step, what, ckpt)


class FaultInjection(L.Callback):
    """Sends a signal to this process at a given stage and optimizer step: how the resume tests kill a run.

    `spec` is `stage:step:SIGNAL[:rank]` (e.g. `contrastive:3:SIGKILL`); step 0 fires when the stage starts; with
    a rank, only that rank's process gets the signal (the others learn of it only through the collectives).
    """

    def __init__(self, stage: str, spec: str) -> None:
        want_stage, step, sig, *rank = spec.split(":")
        self.armed = want_stage == stage
        self.rank = int(rank[0]) if rank else None
        self.step = int(step)
        self.signal = signal.Signals[sig]

    @classmethod
    def from_env(cls, stage: str) -> FaultInjection | None:
        spec = os.environ.get(FAULT_ENV)
        return cls(stage, spec) if spec else None

    def _fire(self, trainer: L.Trainer) -> None:
        if self.armed and trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            self.armed = False
            log.warning("%s: sending %s at step %d", FAULT_ENV, self.signal.name, trainer.global_step)
            os.kill(os.getpid(), self.signal)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == 0:
            self._fire(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.step > 0 and _at_step_boundary(trainer):
            self._fire(trainer)
