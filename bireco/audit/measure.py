"""Measure the overlap: index every evaluation text once, stream the training texts through it once.

The evaluation side is indexed (it is what must stay unseen; a task's texts are embedded anyway, so they fit in
memory), the training side streamed: a 1.5M-row mixture is read once, each distinct normal form matched once
(a set of 8-byte digests remembers which were seen). An evaluation text is *exact* when some training text has
its normal form, *near* when it is not exact but some training text is a near duplicate (Jaccard ≥ the threshold);
so exact + near is the number of contaminated texts of a field.
"""

from __future__ import annotations

import gc
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from bireco.audit.overlap import Match, OverlapIndex, OverlapSettings, normal_form
from bireco.audit.texts import TASK_FIELDS, TaskTexts, TrainText

EXAMPLE_CHARS = 300


@dataclass
class _Hits:
    """Per evaluation id: the first exact copy, the nearest near duplicate, and every matching training source."""

    exact: dict[int, TrainText] = field(default_factory=dict)
    near: dict[int, tuple[float, TrainText]] = field(default_factory=dict)
    sources: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, match: Match, t: TrainText) -> None:
        if match.exact is not None:
            self.exact.setdefault(match.exact, t)
            self.sources[match.exact].add(t.source)
        for i, j in match.near:
            if i not in self.near or j > self.near[i][0]:
                self.near[i] = (j, t)
            self.sources[i].add(t.source)


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def _example(kind: str, text: str, t: TrainText, similarity: float) -> dict[str, Any]:
    return {
        "match": kind,
        "jaccard": round(similarity, 4),
        "text": _clip(text),
        "train_text": _clip(t.text),
        "train_source": t.source,
        "train_field": t.field,
        "train_where": t.where,
    }


def _field_result(texts: list[str], ids: list[int | None], hits: _Hits, max_examples: int) -> dict[str, Any]:
    exact = near = 0
    by_source: dict[str, int] = defaultdict(int)
    examples: dict[str, list[dict[str, Any]]] = {"exact": [], "near": []}
    for text, i in zip(texts, ids, strict=True):
        if i is None or (i not in hits.exact and i not in hits.near):
            continue
        for s in hits.sources[i]:
            by_source[s] += 1
        if i in hits.exact:
            exact += 1
            if len(examples["exact"]) < max_examples:
                examples["exact"].append(_example("exact", text, hits.exact[i], 1.0))
        else:
            near += 1
            if len(examples["near"]) < max_examples:
                examples["near"].append(_example("near", text, hits.near[i][1], hits.near[i][0]))
    return {
        "n": len(texts),
        "exact": exact,
        "near": near,
        "by_source": dict(sorted(by_source.items())),
        "examples": examples["exact"] + examples["near"],
    }


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The index is millions of small acyclic containers (LSH buckets): without this, each of Python's full
    collections re-scans all of them (a quarter of the indexing time on the shared data)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measure_overlap(
    tasks: list[TaskTexts], train: Iterable[TrainText], settings: OverlapSettings, max_examples: int = 3
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Per task and field: n, exact, near, contaminated texts per training source, examples; and pass counts.

    Returns:
        (task name -> {"kind", "fields": {field -> result, with "what"}}, {"train_texts", "distinct_train_texts",
        "distinct_eval_texts"}).
    """
    with _cyclic_gc_paused():
        return _measure(tasks, train, settings, max_examples)


def _measure(
    tasks: list[TaskTexts], train: Iterable[TrainText], settings: OverlapSettings, max_examples: int
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    index = OverlapIndex(settings)
    ids: dict[tuple[str, str], list[int | None]] = {}
    total = sum(len(task.fields[name]) for task in tasks for name in TASK_FIELDS)
    with tqdm(total=total, desc="indexing evaluation texts", unit=" texts", leave=False) as bar:
        for task in tasks:
            for name in TASK_FIELDS:
                ids[task.name, name] = [index.add(t) for t in task.fields[name]]
                bar.update(len(task.fields[name]))
    hits, seen, matched = _Hits(), set(), {}
    n_train = 0
    with tqdm(desc="matching training texts", unit=" texts", leave=False) as bar:  # closed (cleared) on errors too
        for t in train:
            n_train += 1
            bar.update()
            normal = normal_form(t.text)
            key = hashlib.blake2b(normal.encode(), digest_size=8).digest()
            if key in matched:
                hits.add(matched[key], t)  # a repeat: the same ids, but its source counts too
                continue
            if key in seen:
                continue
            seen.add(key)
            match = index.match_normal(normal)
            if match.exact is not None or match.near:
                matched[key] = match
                hits.add(match, t)
    results = {}
    for task in tasks:
        fields = {}
        for name in TASK_FIELDS:
            fields[name] = {
                "what": task.what[name],
                **_field_result(task.fields[name], ids[task.name, name], hits, max_examples),
            }
        results[task.name] = {"kind": task.kind, "fields": fields}
    passes = {"train_texts": n_train, "distinct_train_texts": len(seen), "distinct_eval_texts": len(index)}
    return results, passes
