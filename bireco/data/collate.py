"""Pad assembled sequences into tensors, and collate training rows into model inputs.

With gradient accumulation the unit of collation is the *window*: the micro-batches of one optimizer step.
`WindowCollator` collates them together, so every micro-batch knows how many tokens of each segment the whole
window has — what a loss averaged over the global batch's tokens must divide by (Stage I), however the lengths
fall on the micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bireco.losses.false_negatives import DUPLICATE_KEYS, text_key, token_ids_key
from bireco.models.templates import BoundTemplate, pad_encoded, segment_counts


class PairCollator:
    """Rows `{"query","positive","negative"?,"source"}` -> padded query / positive (/ negative) batches.

    Queries get their source's instruction; documents get none (as the paper). Negatives are optional per row:
    only rows that have one contribute a negative (they are extra candidates in the contrastive loss).

    Args:
        template: bound template of the model's tokenizer.
        instructions: source name -> instruction (None/empty = no instruction).
        max_length: per-sequence cap (template + EOS included).
        with_negatives: collate negatives (Stage II) or drop them (Stage I does not use hard negatives).
        duplicate_key: give every positive and negative a `key` (rows,) int64 — `token_ids` or `text`, see
            `bireco.losses.false_negatives` — so the contrastive loss can mask copies of a query's positive;
            None = no keys.
    """

    def __init__(
        self,
        template: BoundTemplate,
        instructions: dict[str, str | None],
        pad_id: int,
        max_length: int = 512,
        with_negatives: bool = True,
        padding_side: str = "right",
        duplicate_key: str | None = None,
    ) -> None:
        if duplicate_key not in (None, *DUPLICATE_KEYS):
            raise ValueError(f"duplicate_key must be one of {DUPLICATE_KEYS} or None, got {duplicate_key!r}")
        self.duplicate_key = duplicate_key
        self.template = template
        self.instructions = instructions
        self.pad_id = pad_id
        self.max_length = max_length
        self.with_negatives = with_negatives
        self.padding_side = padding_side

    def _pad(
        self, texts: list[str], instructions: list[str | None] | None = None, keyed: bool = False
    ) -> dict[str, torch.Tensor]:
        encoded = self.template.encode_batch(texts, instructions, self.max_length)
        part = pad_encoded(encoded, self.pad_id, self.padding_side)
        if keyed and self.duplicate_key == "token_ids":
            part["key"] = torch.tensor([token_ids_key(e.input_ids) for e in encoded], dtype=torch.long)
        elif keyed and self.duplicate_key == "text":
            part["key"] = torch.tensor([text_key(t) for t in texts], dtype=torch.long)
        return part

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        instr = [self.instructions.get(r["source"]) for r in rows]
        batch: dict[str, Any] = {
            "query": self._pad([r["query"] for r in rows], instr),
            "positive": self._pad([r["positive"] for r in rows], keyed=True),
            "source": rows[0]["source"],
        }
        if self.with_negatives:
            negs = [r["negative"] for r in rows if r.get("negative")]
            if negs:
                batch["negative"] = self._pad(negs, keyed=True)
        # counted here, on the CPU: the compute report and the windows would otherwise sync the device
        # (plain lists: nothing here moves to the device)
        roles = [r for r in ("query", "positive", "negative") if r in batch]
        batch["segment_tokens"] = {r: segment_counts(batch[r]).tolist() for r in roles}
        batch["num_tokens"] = sum(sum(c) for c in batch["segment_tokens"].values())
        return batch


@dataclass
class Window:
    """Where a micro-batch sits in its optimizer step, and the token counts of the whole step (this rank's rows).

    Args:
        index: this micro-batch's position in the window (0 .. size - 1).
        size: micro-batches per optimizer step (the accumulation).
        counts: role -> real tokens per segment over the window's micro-batches.  (len(Segment),) each
    """

    index: int
    size: int
    counts: dict[str, torch.Tensor]


class WindowCollator:
    """Rows of one optimizer step -> its micro-batches, each carrying the window's token counts (`Window`).

    Args:
        collator: collates one micro-batch.
        micro_batch_size: rows per micro-batch.
    """

    def __init__(self, collator: PairCollator, micro_batch_size: int) -> None:
        self.collator = collator
        self.micro_batch_size = micro_batch_size

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        b = self.micro_batch_size
        micro = [self.collator(rows[s : s + b]) for s in range(0, len(rows), b)]
        roles = [r for r in ("query", "positive", "negative") if any(r in m for m in micro)]
        counts = {r: sum(torch.tensor(m["segment_tokens"][r]) for m in micro if r in m) for r in roles}
        for i, m in enumerate(micro):
            m["window"] = Window(i, len(micro), counts)
        return micro
