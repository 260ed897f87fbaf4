"""Which rows share a forward pass: fixed-size batches or token budgets, longest first (less padding)."""

from __future__ import annotations

from collections.abc import Sequence


def encode_batches(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True) -> list[list[int]]:
    """Indices of each batch: longest first when sorted (an out-of-memory shows at once), else input order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort_by_length else list(range(len(lengths)))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of each batch, longest first, as many rows as fit in `max_tokens` padded tokens (rows × the
    batch's longest), so every batch holds at most `max_tokens` real tokens too; a row longer than the budget
    is a batch of its own. Memory follows tokens, not rows: short texts share a batch, long ones split."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive number of tokens, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def packed_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of each batch, longest first, as many rows as fit in `max_tokens` *real* tokens: for padding-free
    (packed) passes, where a batch costs the sum of its lengths; a row longer than the budget is a batch alone."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive number of tokens, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    used = 0
    for i in order:
        if batches and used + lengths[i] <= max_tokens:
            batches[-1].append(i)
            used += lengths[i]
        else:
            batches.append([i])
            used = lengths[i]
    return batches
