"""A training DataLoader that resumes mid-epoch: a restored run sees exactly the batches it had not trained on.

Lightning stores `state_dict()` of every stateful train loader in its checkpoints and hands it back through
`load_state_dict()` before the first batch. Our batch order is a pure function of (seed, epoch), so the state is
just (epoch, batches already trained in it); the restored loader skips those batches once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler whose order depends only on its epoch; skips the already-trained batches once.

    Args:
        inner: the batch sampler (must have `set_epoch`, and yield the same batches for the same epoch).
    """

    def __init__(self, inner: Sampler[list[int]]) -> None:
        self.inner = inner
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip in it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def resume(self, epoch: int, batches_done: int) -> None:
        self._resume = (epoch, batches_done)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[list[int]]:
        batches: Iterator[list[int]] = iter(self.inner)
        if self._resume is not None and self._resume[0] == self.epoch:
            batches = itertools.islice(batches, self._resume[1], None)
            self._resume = None
        yield from batches


class ResumableDataLoader(DataLoader):
    """DataLoader with the `state_dict`/`load_state_dict` pair Lightning looks for; yields micro-batches.

    With `micro_batches` > 1 the batch sampler yields whole windows (the rows of one optimizer step) and the
    collator returns their micro-batches (`WindowCollator`); the loader yields those one at a time, so the
    Trainer's accumulation sees ordinary batches.

    Args:
        dataset: map-style dataset.
        batch_sampler: the epoch-deterministic batch sampler (of windows when `micro_batches` > 1).
        progress: returns (epoch, micro-batches trained in it) — read from the Trainer at checkpoint time,
            because the loader itself runs ahead of training (Lightning prefetches a batch).
        collate_fn: batch builder (a `WindowCollator` when `micro_batches` > 1).
        micro_batches: micro-batches per window (the stage's gradient accumulation).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_sampler: Sampler[list[int]],
        progress: Callable[[], tuple[int, int]],
        collate_fn: Callable[[list[Any]], Any],
        micro_batches: int = 1,
    ) -> None:
        # a private generator: a DataLoader otherwise draws its base seed from the global torch RNG at every
        # iter(), so a resumed run (which calls iter() at another moment) would shift dropout's random stream
        super().__init__(
            dataset,
            batch_sampler=ResumableBatchSampler(batch_sampler),
            collate_fn=collate_fn,
            num_workers=0,
            generator=torch.Generator().manual_seed(0),
        )
        self.progress = progress
        self.micro_batches = micro_batches
        self._skip_in_window = 0

    def __len__(self) -> int:
        return super().__len__() * self.micro_batches

    def __iter__(self) -> Iterator[Any]:
        if self.micro_batches == 1:
            return super().__iter__()
        skip, self._skip_in_window = self._skip_in_window, 0
        return self._micro_batches(super().__iter__(), skip)

    @staticmethod
    def _micro_batches(windows: Iterator[list[Any]], skip: int) -> Iterator[Any]:
        for window in windows:
            yield from window[skip:]
            skip = 0

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress()
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # the sampler counts windows; a checkpoint taken inside one resumes after its trained micro-batches
        windows, self._skip_in_window = divmod(int(state["batches_done"]), self.micro_batches)
        self.batch_sampler.resume(int(state["epoch"]), windows)
