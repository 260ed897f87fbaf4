"""Stage II loss: InfoNCE over cosine similarity, a pure function of embeddings (no model code).

Each query is scored against every in-batch positive and every in-batch hard negative; its own positive is
the label. Computed in fp32 so bf16 logits × scale 50 can never overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
    label_offset: int = 0,
) -> torch.Tensor:
    """Mean InfoNCE loss.

    Args:
        query: (B, H) query embeddings.
        positive: (P, H) positives; query i's positive is row `label_offset + i` (P ≥ B once gathered across
            ranks, where `label_offset` = rank × B).
        negative: (K, H) hard negatives, extra candidates for every query (K may differ from B: rows without a
            negative contribute none).
        scale: 1/τ; the paper uses 50 (τ = 0.02).
        label_offset: index of query 0's positive among the candidates.

    Returns:
        Scalar loss.
    """
    q = F.normalize(query.float(), dim=-1)
    cands = positive if negative is None else torch.cat([positive, negative], dim=0)
    c = F.normalize(cands.float(), dim=-1)
    logits = scale * q @ c.t()  # (B, P + K)
    labels = torch.arange(q.shape[0], device=q.device) + label_offset
    return F.cross_entropy(logits, labels)
