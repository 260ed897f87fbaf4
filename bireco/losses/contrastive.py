"""Stage II loss: InfoNCE over cosine similarity, a pure function of embeddings (no model code).

Each query is scored against every in-batch positive and every in-batch hard negative; its own positive is
the label. Candidates that are copies of a query's positive can be left out of its softmax (`exclude`; keys from
`bireco.losses.false_negatives`). Computed in fp32 so bf16 logits × scale 50 can never overflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bireco.distributed import all_sizes, gather_rows, gather_rows_with_grad, world
from bireco.losses.false_negatives import duplicate_mask


def info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
    label_offset: int = 0,
    reduction: str = "mean",
    exclude: torch.Tensor | None = None,
    matryoshka: Sequence[tuple[int, float]] | None = None,
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
        exclude: (B, P + K) bool, True = not a candidate of that query (its false negatives; never its label).
        matryoshka: (dims, weight) pairs: the weighted sum of the loss over embeddings truncated to their first
            `dims` dimensions and re-normalised (Matryoshka representation learning); None = the full embedding.
            [(H, 1.0)] is exactly the plain loss.

    Returns:
        Scalar loss.
    """
    cands = positive if negative is None else torch.cat([positive, negative], dim=0)
    labels = torch.arange(query.shape[0], device=query.device) + label_offset
    terms = []
    for dims, weight in matryoshka or [(query.shape[-1], 1.0)]:
        q = F.normalize(query[:, :dims].float(), dim=-1)
        c = F.normalize(cands[:, :dims].float(), dim=-1)
        logits = scale * q @ c.t()  # (B, P + K)
        if exclude is not None:
            logits = logits.masked_fill(exclude, float("-inf"))  # exp(-inf) = 0: out of the softmax, zero gradient
        loss = F.cross_entropy(logits, labels, reduction=reduction)
        terms.append(loss if weight == 1.0 else weight * loss)
    return terms[0] if len(terms) == 1 else torch.stack(terms).sum()


def candidate_exclusions(
    positive_keys: torch.Tensor | None, negative_keys: torch.Tensor | None, queries: int, label_offset: int = 0
) -> torch.Tensor | None:
    """`exclude` for `info_nce` from the candidates' keys: each query's copies of its positive (None = no keys).

    Args:
        positive_keys: (P,) keys of the candidate positives; negative_keys: (K,) of the hard negatives or None.
        queries: B; query i's positive is candidate `label_offset + i`.
    """
    if positive_keys is None:
        return None
    keys = positive_keys if negative_keys is None else torch.cat([positive_keys, negative_keys])
    labels = torch.arange(queries, device=keys.device) + label_offset
    return duplicate_mask(keys, labels)


def gathered_info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
    positive_keys: torch.Tensor | None = None,
    negative_keys: torch.Tensor | None = None,
    stats: dict[str, torch.Tensor] | None = None,
    matryoshka: Sequence[tuple[int, float]] | None = None,
) -> torch.Tensor:
    """InfoNCE with the whole global batch as candidates: this rank's queries vs every rank's positives and
    negatives (gathered with gradients, in rank order: [P_0 … P_{W-1} ; N_0 … N_{W-1}]).

    The value is scaled so that the *mean over ranks* (what DDP's gradient averaging computes) is the mean over
    all global queries: rank r returns sum_i∈r CE_i × W / B_global. With equal per-rank batches that is just the
    rank's mean; with unequal ones it still equals one process over the concatenated batch. Outside a process
    group it is `info_nce`.

    With keys, each query's copies of its positive anywhere in the global batch leave its softmax (false
    negatives, found from the inputs: see `bireco.losses.false_negatives`).

    Args:
        query: (B_r, H); positive: (B_r, H); negative: (K_r, H) or None — this rank's rows.
        positive_keys / negative_keys: (B_r,) / (K_r,) this rank's row keys; None = no masking.
        stats: if given (and keys are), receives `masked_candidates`: candidates masked for this rank's queries.
        matryoshka: see `info_nce` (the candidates are gathered once, at full width).

    Returns:
        Scalar loss (this rank's share).
    """
    if positive_keys is not None and negative is not None and negative_keys is None:
        raise ValueError("positive_keys without negative_keys: every candidate needs a key")
    n_ranks, rank = world()
    if n_ranks == 1:
        return in_batch_info_nce(query, positive, negative, scale, positive_keys, negative_keys, stats, matryoshka)
    if negative is None:  # every rank must join the negatives' gather, even with none of its own
        negative = positive.new_zeros((0, positive.shape[-1]))
        negative_keys = None if positive_keys is None else positive_keys.new_zeros((0,))
    sizes = all_sizes([query.shape[0], positive.shape[0], negative.shape[0]], query.device)  # rank -> [B, P, K]
    pos_all = gather_rows_with_grad(positive, [s[1] for s in sizes])  # (ΣP, H)
    neg_all = gather_rows_with_grad(negative, [s[2] for s in sizes])  # (ΣK, H)
    offset = sum(s[1] for s in sizes[:rank])  # where this rank's positives start among the candidates
    total_queries = sum(s[0] for s in sizes)
    exclude = None
    if positive_keys is not None:
        pos_keys = gather_rows(positive_keys, [s[1] for s in sizes])
        neg_keys = gather_rows(negative_keys, [s[2] for s in sizes])
        exclude = candidate_exclusions(pos_keys, neg_keys, query.shape[0], offset)
    _record(stats, exclude)
    negatives = neg_all if neg_all.shape[0] else None
    loss = info_nce(query, pos_all, negatives, scale, offset, "sum", exclude=exclude, matryoshka=matryoshka)
    return loss * (n_ranks / total_queries)


def in_batch_info_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 50.0,
    positive_keys: torch.Tensor | None = None,
    negative_keys: torch.Tensor | None = None,
    stats: dict[str, torch.Tensor] | None = None,
    matryoshka: Sequence[tuple[int, float]] | None = None,
) -> torch.Tensor:
    """`info_nce` over this process's own rows, copies of each query's positive masked when keys are given
    (one process, `gather_across_ranks=false`, and validation). Arguments as `gathered_info_nce`."""
    exclude = candidate_exclusions(positive_keys, negative_keys, query.shape[0])
    _record(stats, exclude)
    return info_nce(query, positive, negative, scale=scale, exclude=exclude, matryoshka=matryoshka)


def _record(stats: dict[str, torch.Tensor] | None, exclude: torch.Tensor | None) -> None:
    if stats is not None and exclude is not None:
        stats["masked_candidates"] = exclude.sum()
