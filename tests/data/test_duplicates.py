"""The false-negative census of homogeneous batches (docs/results.md reports it on ../shared/data/train_pairs)."""

from __future__ import annotations

import gzip
import json

import pytest

from bireco.data.duplicates import false_negatives_per_source
from tests.shared_files import DATA


def _rows(source: str, n: int) -> list[dict[str, str]]:
    return [{"query": f"{source} q{i}", "positive": f"{source} doc {i}", "source": source} for i in range(n)]


def test_planted_copies_are_counted_per_source() -> None:
    rows = _rows("a", 8) + _rows("b", 8)
    rows[1]["positive"] = rows[0]["positive"]  # a: queries 0 and 1 each see a copy of their positive
    rows[2]["negative"] = "A  Doc 0"  # a: a copy of query 0's positive up to case and space (text keys only)
    exact, text = (false_negatives_per_source(rows, 8, key=k) for k in ("exact", "text"))
    assert [(s.source, s.batches, s.masked_max) for s in exact] == [("a", 1, 2), ("b", 1, 0)]
    assert text[0].masked_max == 4  # + the negative, for queries 0 and 1
    assert text[0].queries_affected == pytest.approx(2 / 8)
    assert false_negatives_per_source(rows, 16)[0].batches == 0  # only full batches are drawn


def test_census_on_the_shared_training_pairs() -> None:
    path = DATA / "train_pairs" / "train.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared/data)")
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f]
    exact, text = (false_negatives_per_source(rows, 256, key=k) for k in ("exact", "text"))
    assert [s.source for s in exact] == sorted({r["source"] for r in rows})
    for e, t in zip(exact, text, strict=True):
        assert e.batches == t.batches == e.rows // 256
        assert e.masked_mean <= t.masked_mean  # normalising can only merge more texts
    assert max(s.masked_max for s in exact) > 0  # real homogeneous batches do hold copies
