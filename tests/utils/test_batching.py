"""Fixed-size and token-budget batches: every row once, longest first, within the budget."""

from __future__ import annotations

import pytest

from bireco.utils.batching import encode_batches, token_budget_batches


def test_token_budget_packs_short_rows_and_isolates_long_ones() -> None:
    lengths = [5, 40, 10, 10, 3, 3, 3, 100]
    batches = token_budget_batches(lengths, 40)
    assert batches == [[7], [1], [2, 3, 0, 4], [5, 6]]  # 100 > budget: alone; 4 x 10 = 40 fits; then 2 x 3
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_fixed_batches_keep_or_sort_the_order() -> None:
    assert encode_batches([1, 3, 2], 2) == [[1, 2], [0]]
    assert encode_batches([1, 3, 2], 2, sort_by_length=False) == [[0, 1], [2]]


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tokens must be a positive"):
        token_budget_batches([1], 0)
