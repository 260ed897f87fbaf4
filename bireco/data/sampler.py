"""Homogeneous batches: every (global) batch comes from one source, as in the paper.

One source per batch makes in-batch negatives hard (same task, same domain). Under DDP the *global* batch
(all ranks together) is one source and each rank takes its own slice, so the gathered negatives stay
homogeneous too.

Length grouping (optional) cuts padding without mixing sources: a source's shuffled rows are cut into
mega-batches of `length_grouping` global batches, each mega-batch is ordered so that neighbouring rows have
similar lengths, and batches are cut from that order; the batch order is shuffled as before. Rows carry one
length per padded field (e.g. document, query): a single sort key cannot make two weakly correlated fields
both tight, so the order is nested (sort by the first field, cut into groups, sort each group by the next).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class HomogeneousBatchSampler(Sampler[list[int]]):
    """Yields lists of row indices; each global batch is drawn from a single source.

    Args:
        sources: the source of every row (row i -> sources[i]).
        batch_size: per-rank batch size.
        ratios: source -> sampling weight; None = proportional to the source's size (every row once per epoch,
            what llm2vec does). With weights, each epoch has as many batches as the proportional schedule, split
            across sources by weight (a source may repeat rows or leave some out).
        seed: base seed; epoch e shuffles with seed + e (call `set_epoch`; Lightning does).
        num_replicas / rank: DDP world size and this rank.
        accumulate: micro-batches per optimizer step. The global batch is `batch_size × num_replicas ×
            accumulate` rows of one source, and each rank gets its `batch_size × accumulate` rows as one window
            (collated into micro-batches by `WindowCollator`), so a whole optimizer step stays one source.
        lengths: per row, the token length of each padded field, most important first (e.g. `(document,
            query)`); needed when `length_grouping` > 0.
        length_grouping: mega-batch size in global batches for length-aware batching; 0 = off.
    """

    def __init__(
        self,
        sources: Sequence[str],
        batch_size: int,
        ratios: dict[str, float] | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        lengths: Sequence[Sequence[int]] | None = None,
        length_grouping: int = 0,
        accumulate: int = 1,
    ) -> None:
        if length_grouping < 0:
            raise ValueError(f"length_grouping must be >= 0 (0 = off), got {length_grouping}")
        if length_grouping > 0 and (lengths is None or len(lengths) != len(sources)):
            got = "none" if lengths is None else len(lengths)
            raise ValueError(
                f"length_grouping={length_grouping} needs one length tuple per row: {len(sources)} rows, {got} lengths"
            )
        self.lengths = lengths
        self.length_grouping = length_grouping
        if accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {accumulate}")
        self.batch_size = batch_size
        self.window = batch_size * accumulate  # this rank's rows per optimizer step
        self.global_batch = self.window * num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        by_source: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(sources):
            by_source[s].append(i)
        self.by_source = dict(sorted(by_source.items()))
        small = {s: len(ix) for s, ix in self.by_source.items() if len(ix) < self.global_batch}
        if small:
            raise ValueError(
                f"sources with fewer rows than one global batch ({self.global_batch} = {batch_size} per rank × "
                + (f"{accumulate} accumulation × " if accumulate > 1 else "")
                + f"{num_replicas} ranks): {small}; lower the batch size, or drop or merge these sources"
            )
        self.counts = self._batches_per_source(ratios)

    def _batches_per_source(self, ratios: dict[str, float] | None) -> dict[str, int]:
        natural = {s: len(ix) // self.global_batch for s, ix in self.by_source.items()}
        if ratios is None:
            return natural
        unknown = set(ratios) - set(self.by_source)
        if unknown:
            raise ValueError(f"ratios name sources with no rows: {sorted(unknown)}; sources: {sorted(self.by_source)}")
        total = sum(natural.values())
        weights = {s: float(ratios.get(s, 0.0)) for s in self.by_source}
        norm = sum(weights.values())
        if norm <= 0:
            raise ValueError(f"source ratios must have a positive sum, got {ratios}")
        return {s: max(1, round(total * w / norm)) if w > 0 else 0 for s, w in weights.items()}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        batches: list[list[int]] = []
        for source, idx in self.by_source.items():
            pool: list[int] = []
            for _ in range(self.counts[source]):
                if len(pool) < self.global_batch:  # refill (ratios may ask for more batches than one pass)
                    fresh = list(idx)
                    if self.shuffle:
                        rng.shuffle(fresh)
                    if self.length_grouping > 0:
                        fresh = length_order(
                            fresh, self.lengths, self.length_grouping * self.global_batch, self.batch_size
                        )
                    pool = fresh  # leftovers are dropped, never duplicated within a batch
                batches.append(pool[: self.global_batch])
                pool = pool[self.global_batch :]
        if self.shuffle:
            rng.shuffle(batches)
        lo = self.rank * self.window
        for b in batches:
            yield b[lo : lo + self.window]


def length_order(rows: list[int], lengths: Sequence[Sequence[int]], mega: int, batch_size: int) -> list[int]:
    """Reorder `rows` mega-batch by mega-batch so that every run of `batch_size` rows has similar lengths.

    With D fields, each mega-batch is sorted by field 0 and cut into groups of batch_size × m^(D-1) rows
    (m = round((mega / batch_size)^(1/D))), each group sorted by field 1 and cut into batch_size × m^(D-2) rows,
    and so on down to single batches. The global batch (num_replicas consecutive per-rank batches) and each
    rank's slice of it are therefore both length-homogeneous. Deterministic: ties keep the input order.

    Args:
        rows: row indices in their (shuffled) order.
        lengths: per row index, its field lengths, most important field first.
        mega: rows per mega-batch (a multiple of the global batch).
        batch_size: per-rank batch size (the finest group).
    """
    if not rows:
        return []
    fields = len(lengths[rows[0]])
    m = max(1, round((mega / batch_size) ** (1 / fields)))
    out: list[int] = []
    for start in range(0, len(rows), mega):
        groups = [rows[start : start + mega]]
        for d in range(fields):
            size = batch_size * m ** (fields - 1 - d)
            cut: list[list[int]] = []
            for g in groups:
                g = sorted(g, key=lambda i, d=d: lengths[i][d])
                cut += [g[i : i + size] for i in range(0, len(g), size)]
            groups = cut
        out += [i for g in groups for i in g]
    return out
