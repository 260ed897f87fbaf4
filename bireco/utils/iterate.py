"""`itertools.batched` for Python 3.11 (added to the standard library in 3.12)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), read lazily: streams stay streams."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
