"""NaN/inf guard, RNG state in checkpoints and atomic checkpoint writes, on a one-layer module (fast)."""

from __future__ import annotations

import io
import os
import random
import signal
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from bireco.lit.fault_tolerance import (
    AtomicCheckpointIO,
    FiniteGuard,
    NonFiniteLossError,
    PreemptionCheckpoint,
    RngState,
)
from bireco.utils import io as io_utils


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return torch.full_like(g, float("nan"))


class _Toy(L.LightningModule):
    """Linear regression whose loss (or only its gradient) turns non-finite at optimizer step `bad_step`."""

    def __init__(self, bad_step: int, bad: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.bad_step, self.bad = bad_step, bad

    def training_step(self, batch, batch_idx):
        (x,) = batch
        y = self.layer(x)
        if self.global_step == self.bad_step:
            y = y * float("inf") if self.bad == "loss" else _NanGrad.apply(y)
        return y.pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path: Path, module: L.LightningModule, accumulate: int = 1) -> None:
    ckpt_dir = tmp_path / "checkpoints"
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=10,
        accumulate_grad_batches=accumulate,
        callbacks=[
            FiniteGuard("contrastive", ckpt_dir / "last.ckpt"),
            ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=1),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
    trainer.fit(module, data)


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_non_finite_stops_before_the_step_naming_stage_and_step(tmp_path: Path, bad: str) -> None:
    torch.manual_seed(0)
    module = _Toy(bad_step=3, bad=bad)
    with pytest.raises(NonFiniteLossError, match=rf"stage 'contrastive', optimizer step 3: non-finite {bad}") as err:
        _fit(tmp_path, module)
    assert err.value.stage == "contrastive" and err.value.step == 3
    assert str(tmp_path / "checkpoints" / "last.ckpt") in str(err.value)
    # the NaN step was never applied, and the last good checkpoint (after step 3) is intact and finite
    assert all(torch.isfinite(p).all() for p in module.parameters())
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    for k, v in module.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)


def test_non_finite_micro_batch_is_caught_under_accumulation(tmp_path: Path) -> None:
    # the bad micro-batch is the first of two accumulated ones; the second is finite
    class _FirstMicroBatchBad(_Toy):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if batch_idx == 4 else loss

    with pytest.raises(NonFiniteLossError, match="optimizer step 2: non-finite loss"):
        _fit(tmp_path, _FirstMicroBatchBad(bad_step=-1, bad="loss"), accumulate=2)


def test_sigterm_mid_accumulation_saves_at_the_next_step_boundary(tmp_path: Path) -> None:
    """Lightning alone would stop right after the signalled micro-batch, half-way through an accumulated step and
    without a checkpoint; the callback holds the stop until the optimizer step is done and saved."""
    seen: list[int] = []

    class _SignalAtMicroBatch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen.append(batch_idx)
            if batch_idx == 4:  # the first micro-batch of optimizer step 3 (accumulating 2)
                os.kill(os.getpid(), signal.SIGTERM)

    preemption = PreemptionCheckpoint(tmp_path / "last.ckpt")
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=10,
        accumulate_grad_batches=2,
        callbacks=[_SignalAtMicroBatch(), preemption],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module = _Toy(bad_step=-1, bad="loss")
    with pytest.raises(SIGTERMException):
        trainer.fit(module, DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4))
    assert seen == [0, 1, 2, 3, 4, 5], "stopped after the step's second micro-batch, before a new one"
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3 and preemption.requested and preemption.saved
    for k, v in module.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)
    assert signal.getsignal(signal.SIGTERM) != preemption._on_sigterm, "the handler is handed back"


def test_sigterm_during_validation_is_recorded_not_raised(tmp_path: Path) -> None:
    """The stage's final `trainer.validate` runs to its end under a SIGTERM (Lightning's handler would stop it
    half-way); the callback records it, and the pipeline stops after writing the finished stage."""

    class _Val(_Toy):
        def validation_step(self, batch, batch_idx):
            if batch_idx == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            self.log("val/loss", self.training_step(batch, batch_idx))

    preemption = PreemptionCheckpoint(tmp_path / "last.ckpt")
    trainer = L.Trainer(accelerator="cpu", callbacks=[preemption], logger=False, enable_progress_bar=False)
    results = trainer.validate(
        _Val(bad_step=-1, bad="loss"), DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)
    )
    assert results and "val/loss" in results[0], "validation finished every batch"
    assert preemption.requested and not trainer.received_sigterm
    assert signal.getsignal(signal.SIGTERM) != preemption._on_sigterm, "the handler is handed back"


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    saved = RngState().state_dict()
    torch.save(saved, tmp_path / "rng.pt")
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    cb = RngState()
    cb.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))  # as Lightning loads checkpoints
    cb.on_train_start(None, None)  # type: ignore[arg-type]
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and got[2] == want[2]


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, plugins=[AtomicCheckpointIO()]
    )
    module = _Toy(bad_step=-1, bad="loss")
    trainer.fit(module, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    with torch.no_grad():
        module.layer.weight.add_(1.0)  # a different state to save

    def die(fd: int) -> None:  # the bytes are in the temp file; the process dies before the rename
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(io_utils.os, "fsync", die)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left behind
    trainer.save_checkpoint(path)  # and a normal save replaces it
    assert not torch.equal(
        torch.load(path, weights_only=True)["state_dict"]["layer.weight"],
        torch.load(io.BytesIO(before), weights_only=True)["state_dict"]["layer.weight"],
    )
