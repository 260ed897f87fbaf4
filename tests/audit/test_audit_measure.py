"""Counting: each planted overlap lands in its task and field, with its kind, source and example; others do not."""

from __future__ import annotations

from bireco.audit.measure import measure_overlap
from bireco.audit.overlap import OverlapSettings
from bireco.audit.texts import TaskTexts, TrainText
from tests.audit.fixtures import LONG, NEAR, NEGATIVE, QUERY, QUERY_VARIANT

UNRELATED = "Penguins live in the southern hemisphere and cannot fly."


def _train() -> list[TrainText]:
    return [
        TrainText(QUERY, "books", "query", "train.jsonl row 1"),
        TrainText(LONG, "books", "positive", "train.jsonl row 1"),
        TrainText(NEGATIVE, "books", "negative", "train.jsonl row 1"),
        TrainText(QUERY.upper(), "quiz", "query", "quiz.jsonl row 7"),  # a repeat from another source
    ]


def _tasks() -> list[TaskTexts]:
    what = {"queries": "q", "corpus": "c"}
    return [
        TaskTexts("qa", "Retrieval", {"queries": [QUERY_VARIANT, "Where do penguins live?"], "corpus": [NEAR]}, what),
        TaskTexts("sts", "STS", {"queries": [UNRELATED, NEGATIVE, NEGATIVE], "corpus": [UNRELATED]}, what),
        TaskTexts("clean", "STS", {"queries": [UNRELATED], "corpus": []}, what),
    ]


def test_planted_overlaps_are_found_in_the_right_task_and_field() -> None:
    results, passes = measure_overlap(_tasks(), _train(), OverlapSettings(), max_examples=1)
    qa, sts, clean = (results[n]["fields"] for n in ("qa", "sts", "clean"))
    assert (qa["queries"]["n"], qa["queries"]["exact"], qa["queries"]["near"]) == (2, 1, 0)
    assert (qa["corpus"]["n"], qa["corpus"]["exact"], qa["corpus"]["near"]) == (1, 0, 1)
    assert qa["queries"]["by_source"] == {"books": 1, "quiz": 1}
    assert (sts["queries"]["exact"], sts["queries"]["near"], sts["corpus"]["exact"]) == (2, 0, 0)  # each occurrence
    assert all(clean[f]["exact"] == clean[f]["near"] == 0 for f in ("queries", "corpus"))
    (near,) = qa["corpus"]["examples"]
    assert near["match"] == "near" and near["train_field"] == "positive" and near["train_source"] == "books"
    assert near["jaccard"] == round(71 / 81, 4) and near["train_where"] == "train.jsonl row 1"
    assert len(sts["queries"]["examples"]) == 1  # capped
    assert qa["queries"]["examples"][0]["train_text"] == QUERY
    assert passes == {"train_texts": 4, "distinct_train_texts": 3, "distinct_eval_texts": 5}


def test_a_text_with_a_copy_counts_as_exact_not_also_as_near() -> None:
    tasks = [TaskTexts("t", "STS", {"queries": [LONG], "corpus": []}, {"queries": "q", "corpus": "c"})]
    results, _ = measure_overlap(
        tasks, [TrainText(LONG, "s", "positive", "x"), TrainText(NEAR, "s", "query", "y")], OverlapSettings()
    )
    field = results["t"]["fields"]["queries"]
    assert (field["exact"], field["near"]) == (1, 0)
