"""How many false negatives homogeneous batches of a training file hold (what `mask_duplicates` removes).

Batches are drawn as the sampler draws them — one source per batch, rows shuffled within their source — and each
query's candidates are the batch's positives and hard negatives, masked exactly as the loss masks them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from bireco.losses.contrastive import candidate_exclusions
from bireco.losses.false_negatives import digest_key, text_key


@dataclass
class SourceDuplicates:
    """False negatives of one source's full batches.

    Args:
        rows / batches: the source's rows and how many full batches they make.
        masked_mean / masked_max: masked candidates per batch.
        queries_affected: fraction of queries with at least one masked candidate.
    """

    source: str
    rows: int
    batches: int
    masked_mean: float
    masked_max: int
    queries_affected: float


def _exact_key(text: str) -> int:
    return digest_key(text.encode("utf-8"))


def false_negatives_per_source(
    rows: list[dict[str, Any]], batch_size: int, key: str = "text", seed: int = 0
) -> list[SourceDuplicates]:
    """Per source: masked candidates in its full homogeneous batches of `batch_size` rows.

    Args:
        rows: training rows `{"query","positive","negative"?,"source"}`.
        key: `text` (normalised, as `mask_duplicates: text`) or `exact` (equal strings: what `token_ids` masks
            unless truncation makes two long texts equal).
    """
    keyer = text_key if key == "text" else _exact_key
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_source[r.get("source", "default")].append(r)
    out = []
    for source, src_rows in sorted(by_source.items()):
        order = list(src_rows)
        random.Random(seed).shuffle(order)
        counts, affected, queries = [], 0, 0
        for s in range(0, len(order) - batch_size + 1, batch_size):
            batch = order[s : s + batch_size]
            pos = torch.tensor([keyer(r["positive"]) for r in batch])
            neg = torch.tensor([keyer(r["negative"]) for r in batch if r.get("negative")], dtype=torch.long)
            mask = candidate_exclusions(pos, neg, len(batch))
            counts.append(int(mask.sum()))
            affected += int(mask.any(dim=1).sum())
            queries += len(batch)
        out.append(
            SourceDuplicates(
                source=source,
                rows=len(src_rows),
                batches=len(counts),
                masked_mean=sum(counts) / len(counts) if counts else 0.0,
                masked_max=max(counts, default=0),
                queries_affected=affected / queries if queries else 0.0,
            )
        )
    return out
