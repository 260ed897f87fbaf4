"""Small deterministic texts and a tiny Llama spec for the benchmark's correctness tests."""

from __future__ import annotations

import random

from tests.helpers import MICRO_SPEC

WORDS = "the a cat dog bird sat ran on under mat tree house river red blue find search answer query".split()  # noqa: SIM905
SPEC = MICRO_SPEC


def sentences(n: int, lo: int = 2, hi: int = 20, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def allocate(mb: int) -> dict:
    """A child for `measure.isolated`: touch `mb` MiB, so its peak RSS must show them."""
    import torch

    x = torch.ones(mb * 2**20 // 4, dtype=torch.float32)
    return {"sum": float(x[:10].sum())}


def fail() -> dict:
    raise ValueError("boom in the child")
