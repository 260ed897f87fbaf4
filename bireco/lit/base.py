"""What every stage's LightningModule shares: the encoder, AdamW + linear warmup/decay, lean checkpoints.

A LightningModule here holds no model code: losses live in `bireco.losses`, the encoder in `bireco.models`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import get_linear_schedule_with_warmup

from bireco.distributed import clean_param_name
from bireco.models.backbone import save_artifact
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass


@dataclass
class OptimConfig:
    """Optimizer and schedule of one stage.

    Args:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (the paper: 0).
        warmup_steps: linear warmup.
        schedule_steps: horizon of the linear decay. The paper decays over 3 nominal epochs but stops at
            `max_steps` = 2,000, so the two are separate settings; None = decay to 0 at max_steps.
        betas / eps: AdamW.
    """

    lr: float = 4e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule_steps: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


ROLES = ("query", "positive", "negative")


def batch_rows(batch: dict[str, Any]) -> int:
    first = next(batch[r] for r in ROLES if r in batch)
    return int(first["input_ids"].shape[0])


def role_pass(batch: dict[str, Any], role: str, lm_head_tokens: int = 0) -> Pass:
    rows, length = batch[role]["input_ids"].shape
    return Pass(int(rows), int(length), lm_head_tokens)


class StageModule(L.LightningModule):
    """Base of the stage modules.

    Args:
        encoder: backbone + template + pooling.
        optim: optimizer/schedule settings.
        stage: the stage's name, used as the logging prefix.
    """

    def __init__(self, encoder: TextEncoder, optim: OptimConfig, stage: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.optim = optim
        self.stage = stage
        # checkpoints of LoRA stages hold only trainable weights (see on_save_checkpoint)
        self.strict_loading = False

    @property
    def model(self) -> torch.nn.Module:
        return self.encoder.model

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"params/total": total, "params/trainable": trainable}

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, betas=self.optim.betas, eps=self.optim.eps
        )
        horizon = self.optim.schedule_steps or self.trainer.max_steps
        if horizon is None or horizon <= 0:
            raise ValueError(f"stage '{self.stage}': set trainer max_steps or optim.schedule_steps for the schedule")
        sched = get_linear_schedule_with_warmup(opt, self.optim.warmup_steps, horizon)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A LoRA stage's frozen base is rebuilt from its source on resume; storing it would copy the whole LLM
        # into every checkpoint. Full fine-tuning keeps everything (everything is trainable).
        # FSDP inserts wrapper names into named_parameters() but not into state-dict keys
        trainable = {clean_param_name(n) for n, p in self.named_parameters() if p.requires_grad}
        if len(trainable) < sum(1 for _ in self.parameters()):
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def flop_passes(self, batch: dict[str, Any]) -> list[Pass]:
        """The forward passes a training step runs on `batch` (the compute report counts their FLOPs from the
        shapes): by default one encoder pass per role."""
        return [role_pass(batch, r) for r in ROLES if r in batch]

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
