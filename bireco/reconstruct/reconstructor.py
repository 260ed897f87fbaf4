"""Embed one side of a (query, positive) pair, decode the other side from the embedding, and score it.

Directions follow Stage I: `q2d` embeds the query *with its instruction* and decodes the document; `d2q` embeds
the document (no instruction) and decodes the query. A query is templated with its instruction in training, so
in `d2q` the instruction (and separator) is fed after the embedding as known text and only the query body is
generated and scored by F1; the teacher-forced loss covers the same target tokens as Stage I.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from bireco.models.encoder import TextEncoder
from bireco.models.templates import Segment
from bireco.reconstruct.generate import DecodeConfig, generate_from_anchors, target_layout
from bireco.reconstruct.score import teacher_forced_losses, token_f1

DIRECTIONS = ("q2d", "d2q")


@dataclass
class Pair:
    """One (query, positive) row and the query's instruction."""

    query: str
    positive: str
    instruction: str | None = None


def _sides(pair: Pair, direction: str) -> tuple[str, str | None, str, str | None]:
    """(embedded text, its instruction, decoded text, its instruction)."""
    if direction == "q2d":
        return pair.query, pair.instruction, pair.positive, None
    if direction == "d2q":
        return pair.positive, None, pair.query, pair.instruction
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()  # no dropout: greedy decoding must be deterministic
    try:
        yield
    finally:
        model.train(was)


class Reconstructor:
    """An encoder plus decoding settings.

    Args:
        encoder: the stage's encoder (its model may be peft-wrapped during training).
        decode: decoding settings.
        target_segments: Stage I's targets for the teacher-forced loss (names of `Segment`).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        decode: DecodeConfig | None = None,
        target_segments: Sequence[str] = ("template", "instruction", "text"),
    ) -> None:
        self.encoder = encoder
        self.decode_cfg = decode or DecodeConfig()
        self.target_segments = [int(Segment[s.upper()]) for s in target_segments]

    @property
    def device(self) -> torch.device:
        return next(self.encoder.model.parameters()).device

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], instructions: Sequence[str | None]) -> torch.Tensor:
        """(B, H) unnormalized embeddings: what Stage I places at position 0."""
        batch = self.encoder.tokenize(texts, instructions)
        with _eval_mode(self.encoder.model):
            return self.encoder(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))

    def generate(self, anchors: torch.Tensor, instructions: Sequence[str | None]) -> list[str]:
        """Decode one text per anchor; `instructions` are the decoded side's (fed, not generated)."""
        layouts = [target_layout(self.encoder.bound, i) for i in instructions]
        with _eval_mode(self.encoder.model):
            ids = generate_from_anchors(
                self.encoder.model, anchors, [lay.head for lay in layouts], layouts[0], self.decode_cfg
            )
        return self.encoder.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def losses(
        self, anchors: torch.Tensor, texts: Sequence[str], instructions: Sequence[str | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row teacher-forced loss sums and target-token counts of `texts` given `anchors`."""
        side = {k: v.to(self.device) for k, v in self.encoder.tokenize(texts, instructions).items()}
        with _eval_mode(self.encoder.model):
            return teacher_forced_losses(self.encoder.model, anchors, side, self.target_segments)

    def run(self, pairs: Sequence[Pair], direction: str, anchors: torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Decode and score a batch of pairs in one direction.

        Args:
            anchors: (B, H) embeddings to decode from instead of the pairs' own (e.g. shuffled: the control).

        Returns:
            Per pair: `generated`, `reference`, `f1`, `loss` (mean over its target tokens), `tokens`.
        """
        sides = [_sides(p, direction) for p in pairs]
        if anchors is None:
            anchors = self.embed([s[0] for s in sides], [s[1] for s in sides])
        targets, target_instr = [s[2] for s in sides], [s[3] for s in sides]
        generated = self.generate(anchors, target_instr)
        sums, counts = self.losses(anchors, targets, target_instr)
        return [
            {
                "generated": g,
                "reference": ref,
                "f1": token_f1(g, ref),
                "loss": float(s / max(int(n), 1)),
                "loss_sum": float(s),
                "tokens": int(n),
            }
            for g, ref, s, n in zip(generated, targets, sums.tolist(), counts.tolist(), strict=True)
        ]


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Mean F1 over rows; loss averaged over all target tokens (as Stage I's validation loss)."""
    if not records:
        raise ValueError("no rows to summarize")
    tokens = sum(r["tokens"] for r in records)
    return {
        "rows": len(records),
        "f1": sum(r["f1"] for r in records) / len(records),
        "loss": sum(r["loss_sum"] for r in records) / max(tokens, 1),
        "tokens": tokens,
    }
