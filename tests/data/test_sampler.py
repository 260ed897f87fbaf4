"""HomogeneousBatchSampler: one source per global batch, each row at most once an epoch, DDP-consistent."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bireco.data.sampler import HomogeneousBatchSampler, length_order

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


# ---- length grouping ---------------------------------------------------------------------------------------


def test_length_order_one_field_sorts_each_mega_batch() -> None:
    lengths = [(5,), (1,), (7,), (3,), (8,), (2,), (6,), (4,), (9,), (0,)]
    # two mega-batches of 4 rows (the last one partial): each sorted on its own, ties keep input order
    assert length_order([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], lengths, mega=4, batch_size=2) == [
        1,
        3,
        0,
        2,
        5,
        7,
        6,
        4,
        9,
        8,
    ]


def test_length_order_two_fields_is_nested() -> None:
    # (document, query): m = round(sqrt(8 / 2)) = 2, so sort by document, cut into groups of 2 x 2 rows,
    # sort each group by query, cut into batches of 2
    lengths = [(10, 4), (20, 3), (30, 1), (40, 2), (50, 8), (60, 5), (70, 7), (80, 6)]
    assert length_order([3, 0, 7, 5, 2, 6, 1, 4], lengths, mega=8, batch_size=2) == [2, 3, 1, 0, 5, 7, 6, 4]


def _lengths(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(5, 128), rng.randint(3, 40)) for _ in range(n)]


def _padded_fraction(batches: list[list[int]], lengths: list[tuple[int, int]]) -> float:
    real = sum(sum(lengths[i][f] for i in b) for b in batches for f in range(2))
    computed = sum(len(b) * max(lengths[i][f] for i in b) for b in batches for f in range(2))
    return real / computed


@pytest.mark.parametrize("sources", [SOURCES, MIXED], ids=["contiguous", "interleaved"])
def test_length_grouping_keeps_the_sampler_contract_and_cuts_padding(sources: list[str]) -> None:
    lengths = _lengths(len(sources))
    plain = HomogeneousBatchSampler(sources, 4, seed=3)
    grouped = HomogeneousBatchSampler(sources, 4, seed=3, lengths=lengths, length_grouping=8)
    assert len(grouped) == len(plain)
    for epoch in range(3):
        batches = _epoch(grouped, epoch)
        assert all(len(b) == 4 and len({sources[i] for i in b}) == 1 for b in batches)
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)), "a row repeated within an epoch"
        assert Counter(sources[b[0]] for b in batches) == Counter(sources[b[0]] for b in _epoch(plain, epoch))
        assert _padded_fraction(batches, lengths) > _padded_fraction(_epoch(plain, epoch), lengths) + 0.08
    # deterministic for (seed, epoch), different across epochs
    assert _epoch(grouped, 1) == _epoch(
        HomogeneousBatchSampler(sources, 4, seed=3, lengths=lengths, length_grouping=8), 1
    )
    assert _epoch(grouped, 0) != _epoch(grouped, 1)


def test_length_grouping_ddp_ranks_take_adjacent_length_slices() -> None:
    lengths = [(d,) for d, _ in _lengths(len(MIXED), seed=1)]
    ranks = [
        HomogeneousBatchSampler(MIXED, 4, seed=5, num_replicas=2, rank=r, lengths=lengths, length_grouping=2)
        for r in range(2)
    ]
    r0, r1 = _epoch(ranks[0], 2), _epoch(ranks[1], 2)
    assert len(r0) == len(r1) == len(ranks[0])
    for b0, b1 in zip(r0, r1, strict=True):
        assert {MIXED[i] for i in b0} == {MIXED[i] for i in b1}  # one source per global batch
        assert not set(b0) & set(b1)
        # each rank holds a contiguous run of the sorted global batch: rank 0 the shorter half
        assert max(lengths[i][0] for i in b0) <= min(lengths[i][0] for i in b1)


def test_length_grouping_needs_one_length_per_row() -> None:
    with pytest.raises(ValueError, match=r"length_grouping=4 needs one length tuple per row: 103 rows, none lengths"):
        HomogeneousBatchSampler(SOURCES, 4, length_grouping=4)
    with pytest.raises(ValueError, match="103 rows, 3 lengths"):
        HomogeneousBatchSampler(SOURCES, 4, lengths=[(1,)] * 3, length_grouping=4)
    with pytest.raises(ValueError, match="length_grouping must be >= 0"):
        HomogeneousBatchSampler(SOURCES, 4, length_grouping=-1)
