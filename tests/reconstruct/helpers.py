"""Shared constants and data of the reconstruct tests (imported by conftest and the tests)."""

from __future__ import annotations

import random

from bireco.reconstruct.reconstructor import Pair

INSTRUCTION = "find the match"
ALL_SEGMENTS = ("template", "instruction", "text", "eos")
STEPS = 300


def make_pairs(n: int = 8, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)]
    return [Pair(" ".join(rng.sample(words, 3)), " ".join(rng.sample(words, 5)), INSTRUCTION) for _ in range(n)]
