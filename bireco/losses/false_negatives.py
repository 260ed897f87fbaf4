"""False negatives: a candidate that is a copy of a query's own positive is not a negative of that query.

A homogeneous global batch (one source: NLI, duplicate questions, …) often holds the same document twice; InfoNCE
would then push a query away from an exact copy of its own positive. The copies are found from the *inputs*, never
from the embeddings — dropout makes two copies of a text embed differently (why sentence-transformers PR #3260
was dropped). Each collated positive and hard negative carries a 63-bit key of what it is:

- `token_ids`: the exact token ids the model reads (template included) — a copy in every sense that matters;
- `text`: the text after Unicode NFKC, case folding and whitespace collapsing — also catches copies that differ
  only in case or spacing.

A key collision between two different texts (probability ~2⁻⁶³ per pair) would mask one extra candidate.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import numpy as np
import torch

DUPLICATE_KEYS = ("token_ids", "text")


def digest_key(data: bytes) -> int:
    """63-bit key of some bytes (blake2b), non-negative so it fits int64."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1  # fits int64


def token_ids_key(ids: Sequence[int]) -> int:
    """Key of one token-id sequence."""
    return digest_key(np.asarray(ids, dtype="<i4").tobytes())


def normalize_text(text: str) -> str:
    """The form two texts are compared in under `text` keys."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> int:
    """Key of one text, after `normalize_text`."""
    return digest_key(normalize_text(text).encode("utf-8"))


def duplicate_mask(candidate_keys: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Which candidates to leave out of each query's softmax: copies of its positive, other than the positive.

    Args:
        candidate_keys: (C,) keys of every candidate (positives, then hard negatives).
        labels: (B,) index of each query's own positive among the candidates.

    Returns:
        (B, C) bool, True = masked.
    """
    own = candidate_keys[labels]  # (B,)
    mask = candidate_keys[None, :] == own[:, None]
    mask[torch.arange(labels.shape[0], device=labels.device), labels] = False
    return mask
