"""Homogeneous batches: every (global) batch comes from one source, as in the paper.

One source per batch makes in-batch negatives hard (same task, same domain). Under DDP the *global* batch
(all ranks together) is one source and each rank takes its own slice, so the gathered negatives stay
homogeneous too.
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
    ) -> None:
        self.batch_size = batch_size
        self.global_batch = batch_size * num_replicas
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
                f"{num_replicas} ranks): {small}; lower the batch size, or drop or merge these sources"
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
                    pool = fresh  # leftovers are dropped, never duplicated within a batch
                batches.append(pool[: self.global_batch])
                pool = pool[self.global_batch :]
        if self.shuffle:
            rng.shuffle(batches)
        lo = self.rank * self.batch_size
        for b in batches:
            yield b[lo : lo + self.batch_size]
