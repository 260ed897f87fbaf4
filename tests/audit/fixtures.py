"""Texts with known overlaps, and the folders that plant them (the `planted` fixture in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# 80 words: one word changed in the middle keeps word-5-gram Jaccard at 71/81 ≈ 0.88 (≥ 0.8 from 49 words on)
LONG = (
    "the committee met on a rainy tuesday morning to discuss the new budget for the public library in the old "
    "town and after a long debate that went on well past noon the members agreed to fund longer opening hours "
    "more books for children a reading room for students a small garden behind the main building new chairs "
    "for the hall and a part time librarian who will run story hours twice a week for the families of the town"
)
NEAR = LONG.replace("rainy", "sunny")
QUERY = "Who wrote the novel about the white whale?"
QUERY_VARIANT = "  who WROTE the novel, about the white whale "  # case, spacing and punctuation only
NEGATIVE = "A man is playing a large flute."


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@dataclass(frozen=True)
class Planted:
    """A training folder and a task root whose overlaps are known: see `planted`."""

    train: Path
    tasks: Path


def plant(tmp_path: Path) -> Planted:
    """Training rows whose query, positive and negative reappear in two tasks (and texts that reappear nowhere).

    - task `qa` (retrieval): query q1 is QUERY_VARIANT (exact after normalisation), document d1 is NEAR (near),
      q2 and d2 are unrelated;
    - task `sts`: sentence1 of row 1 is the training negative verbatim (exact), the rest unrelated.
    """
    train = write_jsonl(
        tmp_path / "train" / "train.jsonl",
        [
            {"query": QUERY, "positive": LONG, "negative": NEGATIVE, "source": "books"},
            {"query": "how tall is the eiffel tower", "positive": "It is 330 metres tall.", "source": "facts"},
        ],
    ).parent
    tasks = tmp_path / "tasks"
    write_jsonl(
        tasks / "qa" / "corpus.jsonl",
        [
            {"_id": "d1", "title": "minutes", "text": NEAR},
            {"_id": "d2", "title": "", "text": "Penguins live in the southern hemisphere and cannot fly."},
        ],
    )
    write_jsonl(
        tasks / "qa" / "queries.jsonl",
        [{"_id": "q1", "text": QUERY_VARIANT}, {"_id": "q2", "text": "Where do penguins live?"}],
    )
    (tasks / "qa" / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    write_jsonl(
        tasks / "sts" / "test.jsonl",
        [
            {"sentence1": NEGATIVE, "sentence2": "A woman is slicing an onion.", "score": 0.5},
            {"sentence1": "Two dogs run on the beach.", "sentence2": "Dogs are running on sand.", "score": 4.2},
        ],
    )
    return Planted(train, tasks)
