"""Exact and near-duplicate matching of texts: one normal form, word n-gram shingles, MinHash LSH, exact Jaccard.

Why each step:
- `normal_form`: `normalize_text` (Unicode NFKC, case folding, whitespace collapsed: the form the false-negative
  masking compares texts in) with every punctuation character turned into a space, so a copy that differs only in
  case, spacing or punctuation ("Who's there?" vs "who s there") is an *exact* match.
- shingles: the set of word 5-grams of the normal form (a text of fewer than 5 words is one shingle, so it can only
  match exactly: one changed word in a short query usually makes another question).
- MinHash LSH (datasketch): finds candidate pairs without comparing every training text with every evaluation
  text. The banding is fixed at 32 bands of 4 rows (128 permutations), so a pair at Jaccard 0.8 is missed with
  probability (1 - 0.8^4)^32 ≈ 5e-8 (the library's own choice for 0.8, 9 bands of 13 rows, misses 60 % of them).
- every candidate is confirmed with the exact Jaccard similarity of the two shingle sets, so a count is never an
  LSH estimate: near duplicate = Jaccard ≥ 0.8, a common threshold for near-duplicate text. One word changed in a
  text of 100 words leaves Jaccard ≈ 0.9; 13 words with the last one changed is exactly 0.8.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from datasketch import MinHash, MinHashLSH

from bireco.errors import UserError
from bireco.losses.false_negatives import normalize_text


class OverlapSettingError(UserError, ValueError):
    """`audit.*` settings that cannot measure anything (`bireco-audit` says so in one line)."""


@dataclass(frozen=True)
class OverlapSettings:
    """How near is near: the shingle size, the MinHash banding and the Jaccard threshold (see the module doc)."""

    shingle_words: int = 5
    num_perm: int = 128
    lsh_bands: int = 32
    lsh_rows: int = 4
    jaccard_threshold: float = 0.8
    seed: int = 1

    def __post_init__(self) -> None:
        low = [
            f"audit.{k}={v} (at least {m})"
            for k, v, m in (
                ("shingle_words", self.shingle_words, 1),
                ("lsh_bands", self.lsh_bands, 2),
                ("lsh_rows", self.lsh_rows, 1),
            )
            if v < m
        ]
        if low:
            raise OverlapSettingError(", ".join(low))
        if self.lsh_bands * self.lsh_rows > self.num_perm:
            raise OverlapSettingError(
                f"audit.lsh_bands x audit.lsh_rows = {self.lsh_bands * self.lsh_rows} exceeds "
                f"audit.num_perm={self.num_perm}"
            )
        if not 0.0 < self.jaccard_threshold <= 1.0:
            raise OverlapSettingError(f"audit.jaccard_threshold must be in (0, 1], got {self.jaccard_threshold}")

    def miss_probability(self, jaccard: float | None = None) -> float:
        """Chance that the LSH never proposes a pair of this Jaccard similarity (default: the threshold)."""
        j = self.jaccard_threshold if jaccard is None else jaccard
        return (1.0 - j**self.lsh_rows) ** self.lsh_bands

    def record(self) -> dict:
        return {**asdict(self), "lsh_miss_probability_at_threshold": self.miss_probability()}


class _PunctuationToSpace(dict):
    """A `str.translate` table mapping every Unicode punctuation character (category P*) to a space, built lazily."""

    def __missing__(self, code: int) -> int:
        self[code] = value = 32 if unicodedata.category(chr(code)).startswith("P") else code
        return value


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


def normal_form(text: str) -> str:
    """The form two texts are compared in: `normalize_text`, punctuation as spaces, whitespace collapsed."""
    return " ".join(normalize_text(text).translate(_PUNCTUATION_TO_SPACE).split())


def shingles(normal: str, n: int) -> frozenset[bytes]:
    """Word n-grams of a normal form; fewer than n words: the whole text as its one shingle; empty: none."""
    words = normal.split()
    if len(words) <= n:
        return frozenset([normal.encode()]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1))


def jaccard(a: frozenset[bytes], b: frozenset[bytes]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets: an empty text matches nothing)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(frozen=True)
class Match:
    """What one text matches in the index: the id of an identical normal form, and near ids with their Jaccard."""

    exact: int | None
    near: tuple[tuple[int, float], ...]


class OverlapIndex:
    """The texts to protect (the evaluation side), each distinct normal form once, queried one text at a time."""

    def __init__(self, settings: OverlapSettings | None = None) -> None:
        self.settings = settings or OverlapSettings()
        s = self.settings
        self._ids: dict[str, int] = {}
        self._shingles: list[frozenset[bytes]] = []
        self._template = MinHash(num_perm=s.num_perm, seed=s.seed)
        self._lsh = MinHashLSH(num_perm=s.num_perm, params=(s.lsh_bands, s.lsh_rows))

    def __len__(self) -> int:
        return len(self._shingles)

    def _minhash(self, sh: Iterable[bytes]) -> MinHash:
        t = self._template
        m = MinHash(num_perm=t.num_perm, seed=t.seed, permutations=t.permutations, scheme=t.scheme)
        m.update_batch(list(sh))
        return m

    def add(self, text: str) -> int | None:
        """The id of `text`'s normal form (a repeat gets the same id); None for a text that is empty once normal."""
        normal = normal_form(text)
        if not normal:
            return None
        known = self._ids.get(normal)
        if known is not None:
            return known
        i = self._ids[normal] = len(self._shingles)
        sh = shingles(normal, self.settings.shingle_words)
        self._shingles.append(sh)
        self._lsh.insert(i, self._minhash(sh))
        return i

    def match(self, text: str) -> Match:
        """The indexed texts `text` is a copy of (same normal form) or a near duplicate of (Jaccard ≥ threshold)."""
        return self.match_normal(normal_form(text))

    def match_normal(self, normal: str) -> Match:
        """`match` of a text already in its normal form (callers that key on the normal form compute it once)."""
        if not normal or not self._shingles:
            return Match(None, ())
        exact = self._ids.get(normal)
        sh = shingles(normal, self.settings.shingle_words)
        near = []
        for i in self._lsh.query(self._minhash(sh)):
            if i != exact and (j := jaccard(sh, self._shingles[i])) >= self.settings.jaccard_threshold:
                near.append((i, j))
        return Match(exact, tuple(sorted(near)))
