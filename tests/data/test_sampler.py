"""HomogeneousBatchSampler: one source per global batch, each row at most once an epoch, DDP-consistent."""

from __future__ import annotations

from collections import Counter

import pytest

from bireco.data.sampler import HomogeneousBatchSampler

SOURCES = ["a"] * 50 + ["b"] * 33 + ["c"] * 20
# interleaved, so a sampler that assumed contiguous sources would be caught
MIXED = [s for trio in zip(["a"] * 20, ["b"] * 20, ["c"] * 20, strict=True) for s in trio] + ["a"] * 30 + ["b"] * 13


def _epoch(sampler: HomogeneousBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("sources", [SOURCES, MIXED], ids=["contiguous", "interleaved"])
@pytest.mark.parametrize("bs", [4, 8])
def test_batches_are_homogeneous_and_rows_unique(sources: list[str], bs: int) -> None:
    sampler = HomogeneousBatchSampler(sources, batch_size=bs, seed=3)
    counts = Counter(sources)
    assert len(sampler) == sum(n // bs for n in counts.values())
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler)
        assert all(len(b) == bs for b in batches)
        for b in batches:
            assert len({sources[i] for i in b}) == 1, f"mixed batch {[sources[i] for i in b]}"
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)), "a row repeated within an epoch"
        per_source = Counter(sources[b[0]] for b in batches)
        assert per_source == {s: n // bs for s, n in counts.items()}


def test_batch_size_3_exact_lengths() -> None:
    sampler = HomogeneousBatchSampler(SOURCES, batch_size=3)
    assert len(sampler) == 50 // 3 + 33 // 3 + 20 // 3 == 16 + 11 + 6


def test_same_epoch_same_order_different_epoch_different_order() -> None:
    sampler = HomogeneousBatchSampler(SOURCES, batch_size=4, seed=11)
    e0, e0_again, e1 = _epoch(sampler, 0), _epoch(sampler, 0), _epoch(sampler, 1)
    assert e0 == e0_again
    assert e0 != e1
    assert list(sampler) == e1  # iterating again without set_epoch repeats the epoch
    # a fresh sampler with the same seed reproduces it; another seed does not
    assert _epoch(HomogeneousBatchSampler(SOURCES, batch_size=4, seed=11), 1) == e1
    assert _epoch(HomogeneousBatchSampler(SOURCES, batch_size=4, seed=12), 1) != e1
    # the order of the batches (sources) is shuffled too, not only rows within a source
    assert [SOURCES[b[0]] for b in e0] != [SOURCES[b[0]] for b in e1]


def test_no_shuffle_is_in_order() -> None:
    sampler = HomogeneousBatchSampler(["a"] * 9 + ["b"] * 4, batch_size=4, shuffle=False)
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7], [9, 10, 11, 12]]


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_ddp_ranks_share_the_source_and_split_the_global_batch(epoch: int) -> None:
    ranks = [HomogeneousBatchSampler(MIXED, 4, seed=7, num_replicas=2, rank=r) for r in range(2)]
    single = HomogeneousBatchSampler(MIXED, 8, seed=7, num_replicas=1)
    r0, r1, glob = _epoch(ranks[0], epoch), _epoch(ranks[1], epoch), _epoch(single, epoch)
    assert len(ranks[0]) == len(ranks[1]) == len(single) == len(r0) == len(r1) == len(glob)
    for b0, b1, g in zip(r0, r1, glob, strict=True):
        assert len(b0) == len(b1) == 4
        assert {MIXED[i] for i in b0} == {MIXED[i] for i in b1} == {MIXED[g[0]]}
        assert not set(b0) & set(b1)
        assert b0 + b1 == g


def test_source_smaller_than_a_global_batch_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="fewer rows than one global batch") as info:
        HomogeneousBatchSampler(["a"] * 50 + ["tiny"] * 5, batch_size=8)
    assert "'tiny': 5" in str(info.value)
    assert "'a'" not in str(info.value)
    # per rank it fits, but not the global batch of 2 ranks
    with pytest.raises(ValueError, match=r"\(16 = 8 per rank × 2 ranks\): \{'b': 12\}"):
        HomogeneousBatchSampler(["a"] * 50 + ["b"] * 12, batch_size=8, num_replicas=2, rank=1)


def test_ratio_zero_never_yields_that_source() -> None:
    sampler = HomogeneousBatchSampler(SOURCES, batch_size=8, ratios={"a": 1, "b": 0, "c": 1}, seed=1)
    total = 50 // 8 + 33 // 8 + 20 // 8
    assert len(sampler) == total
    assert sampler.counts == {"a": total // 2, "b": 0, "c": total // 2}
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == total
        assert Counter(SOURCES[b[0]] for b in batches) == {"a": 6, "c": 6}
        for b in batches:
            assert len(set(b)) == 8  # no duplicate row inside a batch, even when c (20 rows) is reused
            assert len({SOURCES[i] for i in b}) == 1


def test_ratios_omitting_a_source_give_it_no_batches() -> None:
    sampler = HomogeneousBatchSampler(SOURCES, batch_size=8, ratios={"a": 3, "c": 1})
    assert sampler.counts == {"a": 9, "b": 0, "c": 3}
    assert {SOURCES[b[0]] for b in sampler} == {"a", "c"}


def test_unknown_ratio_source_raises() -> None:
    with pytest.raises(ValueError, match=r"ratios name sources with no rows: \['zzz'\]; sources: \['a', 'b', 'c'\]"):
        HomogeneousBatchSampler(SOURCES, batch_size=8, ratios={"a": 1, "zzz": 1})


def test_ratios_must_have_a_positive_sum() -> None:
    with pytest.raises(ValueError, match="positive sum"):
        HomogeneousBatchSampler(SOURCES, batch_size=8, ratios={"a": 0, "b": 0})
