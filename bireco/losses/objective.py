"""The contract of a stage's loss: a small object that takes the encoder and a batch (sentence-transformers style).

A stage's YAML names its loss with `_target_` (`stages.<name>.loss`), and one LightningModule
(`bireco.lit.module.StageModule`) runs any of them: logging, optimizer, checkpoints and artifacts are the
module's; what is trained is the loss object's. A new objective is therefore a class and a config file. Loss
objects hold settings, never weights (checkpoints keep the encoder's keys only), and know nothing of Lightning:
what they need from the training loop comes in a `Step`.

Settings are keyword-only without defaults: the stage's YAML holds the one default of every knob, and the
constructor its one check (run by `validate_config` before any model is loaded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass

Batch = dict[str, Any]
ROLES = ("query", "positive", "negative")


def _unchanged(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class Step:
    """What a training loss may need from the loop, without importing it.

    Attributes:
        world_size: ranks of the job (1 outside a process group).
        reduce_sum: sums a tensor over the ranks (the identity on one process).
        params: the trainable parameters (GradCache pulls their gradients chunk by chunk).
    """

    world_size: int = 1
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _unchanged
    params: Sequence[nn.Parameter] = ()


@dataclass
class LossOutput:
    """One micro-batch's result: `losses["loss"]` is backpropagated, every entry is logged (averaged over ranks);
    `counts` are logged summed over ranks (e.g. `masked_candidates`)."""

    losses: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor] = field(default_factory=dict)


def batch_rows(batch: Batch) -> int:
    """Rows (pairs) of a collated batch, for logging's batch size."""
    first = next(batch[r] for r in ROLES if r in batch)
    return int(first["input_ids"].shape[0])


def role_pass(batch: Batch, role: str, lm_head_tokens: int = 0) -> Pass:
    """One forward pass over a role's padded (rows, length) batch, for the FLOP count."""
    rows, length = batch[role]["input_ids"].shape
    return Pass(int(rows), int(length), lm_head_tokens)


def embed(encoder: TextEncoder, part: dict[str, torch.Tensor]) -> torch.Tensor:
    """A role's padded batch -> its (rows, H) embeddings."""
    return encoder(part["input_ids"], part["attention_mask"])


class Objective:
    """Base of the stage losses. Subclasses implement `__call__`; the rest has defaults.

    Attributes:
        duplicate_key: the row key the collator must attach to each candidate (`token_ids`, `text`) or None.
    """

    duplicate_key: str | None = None

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        """The training loss of one micro-batch."""
        raise NotImplementedError

    def validation(self, encoder: TextEncoder, batch: Batch) -> dict[str, torch.Tensor]:
        """Validation losses (every rank sees the whole validation set: nothing is gathered); by default the
        training loss of one process."""
        return self(encoder, batch, Step()).losses

    def flop_passes(self, batch: Batch) -> list[Pass]:
        """The forward passes a training step runs on `batch` (the compute report counts their FLOPs from the
        shapes): by default one encoder pass per role."""
        return [role_pass(batch, r) for r in ROLES if r in batch]

    def check(self, encoder: TextEncoder) -> None:
        """Refuse settings the loaded model cannot serve (raise ValueError); by default none."""
