"""Padding-free encoding: sequences packed into one row, positions restarting at 0 for each.

transformers recognises this layout itself (`masking_utils.find_packed_sequence_indices`: attention mask None,
position ids that restart): with `flash_attention_2` it runs variable-length attention over real tokens only;
with `sdpa` / `eager` it builds a block-diagonal causal mask, which is exact but quadratic in the packed length
(what the equality tests run on CPU). The hidden states come back unpacked into the padded layout, so pooling
is the same code as for padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bireco.errors import UserError
from bireco.models.templates import Encoded


class PackingError(UserError, ValueError):
    """Padding-free encoding was asked for where it would not be exact (a bidirectional encoder)."""


def pack(enc: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
    """One row of every sequence's ids back to back, and positions counted within each.  -> (1, N), (1, N)"""
    ids = torch.tensor([i for e in enc for i in e.input_ids], dtype=torch.long)
    positions = torch.cat([torch.arange(len(e.input_ids)) for e in enc])
    return ids.unsqueeze(0), positions.unsqueeze(0)


def unpack(hidden: torch.Tensor, lengths: Sequence[int], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Packed hidden states back into padded rows, with their attention mask.  (1, N, H) -> (B, T, H), (B, T)"""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    n, t = len(lengths), max(lengths)
    lens = torch.tensor(lengths, device=hidden.device)
    cols = torch.arange(t, device=hidden.device).expand(n, t)
    mask = cols < lens[:, None] if side == "right" else cols >= (t - lens)[:, None]
    out = hidden.new_zeros(n, t, hidden.shape[-1])
    out[mask] = hidden[0]  # row-major order of the mask's True cells = the packed order
    return out, mask.long()
