"""The one LightningModule of every stage: it runs the stage's loss object on the encoder and owns what is
the same for all of them — logging, AdamW (or whatever `stages.<name>.optimizer` names) and its schedule, lean
checkpoints, the artifact.

It holds no model code and no loss: losses live in `bireco.losses` (`Objective`), the encoder in
`bireco.models`, and which loss a stage trains is its YAML's `loss._target_`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bireco.distributed import clean_param_name
from bireco.losses.objective import Batch, LossOutput, Objective, Step, batch_rows
from bireco.models.backbone import save_artifact
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass
from bireco.runs import base_in_run

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int | None], Any]


class StageModule(L.LightningModule):
    """Trains `objective` on `encoder`.

    Args:
        encoder: backbone + template + pooling.
        objective: the stage's loss (`bireco.losses.objective.Objective`).
        optimizer: trainable parameters -> optimizer (`stages.<name>.optimizer`, a Hydra partial).
        scheduler: (optimizer, the stage's max_steps) -> per-step LR scheduler (`stages.<name>.scheduler`);
            None = a constant learning rate.
        stage: the stage's name, used as the logging prefix and in the artifact.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        objective: Objective,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None,
        stage: str,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.stage = stage
        self._step_losses: dict[str, torch.Tensor] = {}
        # checkpoints of LoRA stages hold only trainable weights (see on_save_checkpoint)
        self.strict_loading = False

    @property
    def model(self) -> torch.nn.Module:
        return self.encoder.model

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"params/total": total, "params/trainable": trainable}

    def trainable(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer steps (LoRA: the adapters; full fine-tuning: all)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.make_optimizer(self.trainable())
        if self.make_scheduler is None:
            return {"optimizer": opt}
        try:
            sched = self.make_scheduler(opt, self.trainer.max_steps)
        except ValueError as e:
            raise ValueError(f"stage '{self.stage}': {e}") from e
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A LoRA stage's frozen base is rebuilt from its source on resume; storing it would copy the whole LLM
        # into every checkpoint. Full fine-tuning keeps everything (everything is trainable).
        # FSDP inserts wrapper names into named_parameters() but not into state-dict keys
        trainable = {clean_param_name(n) for n, p in self.named_parameters() if p.requires_grad}
        if len(trainable) < sum(1 for _ in self.parameters()):
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def flop_passes(self, batch: Batch) -> list[Pass]:
        """The forward passes a training step runs on `batch` (for the compute report): the loss's."""
        return self.objective.flop_passes(batch)

    def _step(self) -> Step:
        """What the loss may need from the loop: ranks, a sum over them, the trainable parameters."""
        if self._trainer is None:
            return Step(params=self.trainable())
        strategy = self.trainer.strategy
        return Step(
            world_size=self.trainer.world_size,
            reduce_sum=lambda t: strategy.reduce(t, reduce_op="sum"),
            params=self.trainable(),
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.objective(self.encoder, batch, self._step())
        self._log_train(out, batch)
        return out.losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_losses("val", self.objective.validation(self.encoder, batch), batch_rows(batch))

    def _log_train(self, out: LossOutput, batch: Batch) -> None:
        """Log a micro-batch's losses — under accumulation (a `window` in the batch) once per optimizer step, as
        the step's loss: the sum over its micro-batches of what the trainer backpropagates (loss / size) — and
        its counts, summed over ranks."""
        rows = batch_rows(batch)
        window = batch.get("window")
        if window is None or window.size == 1:
            self._log_losses("train", out.losses, rows)
        else:
            if window.index == 0:
                self._step_losses = {}
            for k, v in out.losses.items():
                self._step_losses[k] = self._step_losses.get(k, 0.0) + v.detach() / window.size
            if window.index == window.size - 1:
                self._log_losses("train", self._step_losses, rows * window.size)
        for k, v in out.counts.items():
            self.log(f"train/{k}", v, on_step=True, sync_dist=True, reduce_fx="sum", batch_size=rows)

    def _log_losses(self, prefix: str, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        """Train losses are averaged over ranks when logged: each rank's loss is scaled so that the mean over
        ranks is the global batch's loss (see the losses), so the curve shows exactly that, not rank 0's share.
        Validation needs no sync: every rank sees the whole validation set."""
        on_step = prefix == "train"
        for k, v in losses.items():
            self.log(
                f"{prefix}/{k}",
                v.detach(),
                on_step=on_step,
                on_epoch=not on_step,
                prog_bar=k == "loss",
                batch_size=batch_size,
                sync_dist=on_step,
            )

    def save_artifact(
        self,
        out_dir: Path,
        init_from: str,
        state_dict: dict[str, torch.Tensor] | None = None,
        prompts: dict[str, Any] | None = None,
    ) -> Path:
        """Write this stage's weights (or adapter) atomically: a temp folder renamed into place.

        Args:
            state_dict: this module's whole state dict when the live parameters are shards (FSDP: see
                `bireco.distributed.full_state_dict`); None = the module's own parameters.
            prompts: the prompts this stage trained with (`bireco.models.prompts.training_prompts`), so
                evaluation can check it builds its inputs the same way.
        """
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        meta = {
            "stage": self.stage,
            "base": init_from,
            **base_in_run(out_dir, init_from),
            "template": self.encoder.template.to_dict(),
            "pooling": self.encoder.pooling_name,
            "max_length": self.encoder.max_length,
            "attention": self.encoder.attention,
            "steps": self.global_step,
            "prompts": prompts,
        }
        prefix = "encoder.model."
        weights = (
            None
            if state_dict is None
            else {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        )
        save_artifact(self.model, self.encoder.tokenizer, tmp, meta, weights)
        # an earlier artifact is moved aside, not deleted, until the new one is in place
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return out_dir
