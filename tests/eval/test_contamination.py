"""Readers of audit.json: the per-task counts for summary.json and the mteb training_datasets declaration."""

from __future__ import annotations

from bireco.audit import contamination_by_task, declare_training_datasets


def _field(n: int, exact: int, near: int) -> dict:
    return {"n": n, "exact": exact, "near": near, "by_source": {}, "examples": []}


TASKS = {
    "scifact": {
        "kind": "Retrieval",
        "mteb_name": "SciFact",
        "fields": {"queries": _field(300, 2, 1), "corpus": _field(5183, 0, 0)},
    },
    "wikiqa": {
        "kind": "Reranking",
        "mteb_name": None,
        "fields": {"queries": _field(237, 0, 0), "corpus": _field(2341, 5, 0)},
    },
    "banking77": {
        "kind": "Classification",
        "mteb_name": "Banking77Classification",
        "fields": {"queries": _field(10, 0, 0), "corpus": _field(20, 0, 0)},
    },
}


def test_contamination_by_task_is_the_flat_counts_of_each_task() -> None:
    by_task = contamination_by_task({"tasks": TASKS})
    assert by_task["scifact"] == {
        "n_queries": 300,
        "exact_queries": 2,
        "near_queries": 1,
        "n_corpus": 5183,
        "exact_corpus": 0,
        "near_corpus": 0,
    }
    assert set(by_task) == set(TASKS)
    assert contamination_by_task({}) == {}


def test_declaration_names_sources_with_rows_and_tasks_with_overlap() -> None:
    decl = declare_training_datasets(
        {"msmarco": ["MSMARCO"], "nq": ["NQ"], "quora": []}, {"msmarco": 10, "nq": 0, "quora": 3}, TASKS
    )
    assert decl["declared"] == ["MSMARCO", "SciFact"]  # nq has no rows; banking77 no overlap; wikiqa no mteb name
    assert "training source 'msmarco'" in decl["reasons"]["MSMARCO"][0]
    assert "2 exact + 1 near queries" in decl["reasons"]["SciFact"][0]
    assert decl["overlapping_tasks_without_mteb_name"] == ["wikiqa"]


def test_nothing_to_declare_is_an_empty_set_with_no_leftovers() -> None:
    clean = {"banking77": TASKS["banking77"]}
    assert declare_training_datasets({}, {}, clean) == {
        "declared": [],
        "reasons": {},
        "overlapping_tasks_without_mteb_name": [],
    }
