"""Padding efficiency is exact, and agrees with what the collator really pads."""

from __future__ import annotations

import pytest
from datasets import Dataset

from benchmarks.padding import efficiency
from bireco.data.collate import PairCollator
from bireco.data.datamodule import padded_lengths
from bireco.models.templates import Template
from tests.bench.helpers import sentences


def test_efficiency_on_a_constructed_case() -> None:
    lengths = [(4, 2), (2, 2), (3, 0), (1, 5)]
    # batch 0: field 0 real 6 of 2x4, field 1 real 4 of 2x2; batch 1: field 0 real 4 of 2x3, field 1 only row 3
    # has one (an absent negative is not collated): real 5 of 1x5
    assert efficiency([[0, 1], [2, 3]], lengths) == pytest.approx((6 + 4 + 4 + 5) / (8 + 4 + 6 + 5), abs=0)
    assert efficiency([[0], [1]], lengths) == 1.0
    with pytest.raises(ValueError, match="no tokens"):
        efficiency([[2]], [(0, 0), (0, 0), (0, 0)])


@pytest.mark.parametrize("with_negatives", [True, False])
def test_efficiency_matches_the_collated_batches(bench_tokenizer, with_negatives: bool) -> None:
    bound = Template(name="plain").bind(bench_tokenizer)
    collator = PairCollator(bound, {"s": "find the answer"}, bench_tokenizer.pad_token_id, 16, with_negatives)
    q, p, n = sentences(12, 1, 6, seed=3), sentences(12, 2, 30, seed=4), sentences(12, 2, 12, seed=5)
    rows = [
        {"query": a, "positive": b, "negative": c if i % 3 else None, "source": "s"}
        for i, (a, b, c) in enumerate(zip(q, p, n, strict=True))
    ]
    lengths = padded_lengths(Dataset.from_list(rows), collator)
    assert len(lengths[0]) == (3 if with_negatives else 2)
    batches = [[0, 1, 2, 3], [4, 5, 6, 7, 8], [9, 10, 11]]
    real = computed = 0
    for b in batches:
        out = collator([rows[i] for i in b])
        for key in ("query", "positive", "negative"):
            if key in out:
                real += int(out[key]["attention_mask"].sum())
                computed += out[key]["attention_mask"].numel()
    assert efficiency(batches, lengths) == pytest.approx(real / computed, abs=1e-12)
    assert real / computed < 0.95  # the case does have padding to measure
