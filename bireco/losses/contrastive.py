"""Stage II loss: InfoNCE over cosine similarity, a pure function of embeddings (no model code).

Each query is scored against every in-batch positive and every in-batch hard negative; its own positive is
the label. Computed in fp32 so bf16 logits × scale 50 can never overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bireco.distributed import all_sizes, gather_rows_with_grad, world


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
    label_offset: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE loss.

    Args:
        query: (B, H) query embeddings.
        positive: (P, H) positives; query i's positive is row `label_offset + i` (P ≥ B once gathered across
            ranks, where `label_offset` = rank × B).
        negative: (K, H) hard negatives, extra candidates for every query (K may differ from B: rows without a
            negative contribute none).
        scale: 1/τ; the paper uses 50 (τ = 0.02).
        label_offset: index of query 0's positive among the candidates.
        reduction: `mean` or `sum` over queries.

    Returns:
        Scalar loss.
    """
    q = F.normalize(query.float(), dim=-1)
    cands = positive if negative is None else torch.cat([positive, negative], dim=0)
    c = F.normalize(cands.float(), dim=-1)
    logits = scale * q @ c.t()  # (B, P + K)
    labels = torch.arange(q.shape[0], device=q.device) + label_offset
    return F.cross_entropy(logits, labels, reduction=reduction)


def gathered_info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
) -> torch.Tensor:
    """InfoNCE with the whole global batch as candidates: this rank's queries vs every rank's positives and
    negatives (gathered with gradients, in rank order: [P_0 … P_{W-1} ; N_0 … N_{W-1}]).

    The value is scaled so that the *mean over ranks* (what DDP's gradient averaging computes) is the mean over
    all global queries: rank r returns sum_i∈r CE_i × W / B_global. With equal per-rank batches that is just the
    rank's mean; with unequal ones it still equals one process over the concatenated batch. Outside a process
    group it is `info_nce`.

    Args:
        query: (B_r, H); positive: (B_r, H); negative: (K_r, H) or None — this rank's rows.

    Returns:
        Scalar loss (this rank's share).
    """
    n_ranks, rank = world()
    if n_ranks == 1:
        return info_nce(query, positive, negative, scale=scale)
    if negative is None:  # every rank must join the negatives' gather, even with none of its own
        negative = positive.new_zeros((0, positive.shape[-1]))
    sizes = all_sizes([query.shape[0], positive.shape[0], negative.shape[0]], query.device)  # rank -> [B, P, K]
    pos_all = gather_rows_with_grad(positive, [s[1] for s in sizes])  # (ΣP, H)
    neg_all = gather_rows_with_grad(negative, [s[2] for s in sizes])  # (ΣK, H)
    offset = sum(s[1] for s in sizes[:rank])  # where this rank's positives start among the candidates
    total_queries = sum(s[0] for s in sizes)
    loss = info_nce(query, pos_all, neg_all if neg_all.shape[0] else None, scale, offset, reduction="sum")
    return loss * (n_ranks / total_queries)
