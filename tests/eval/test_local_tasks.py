"""Local task folders -> mteb 2.x tasks: detection, row validation, and exact scores through mteb's evaluators."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import numpy as np
import pytest
from mteb.abstasks import (
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
)
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from scipy.stats import spearmanr

from bireco.eval.local_tasks import (
    KINDS,
    TaskFormatError,
    clustering_task,
    detect_kind,
    discover_tasks,
    load_local_task,
    task_category,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ---------------------------------------------------------------------------------------------------- helpers
class LookupEncoder(AbsEncoder):
    """Maps each known text to a chosen vector, so every score follows from geometry computed by hand.

    An unknown text raises KeyError: a prompt or title mteb prepended would be noticed, not silently encoded.
    """

    def __init__(self, vectors: dict[str, Sequence[float]]) -> None:
        self.vectors = {text: np.asarray(v, dtype=np.float32) for text, v in vectors.items()}
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name="bireco-tests/lookup-encoder",
            revision="1",
            release_date=None,
            languages=["eng-Latn"],
            n_parameters=0,
            memory_usage_mb=None,
            max_tokens=None,
            embed_dim=2,
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,  # the enum: a plain "cosine" fails late in mteb
            use_instructions=False,
            training_datasets=None,
        )

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str, **kwargs: Any) -> np.ndarray:
        return np.stack([self.vectors[text] for batch in inputs for text in batch["text"]])


def angle(degrees: float) -> list[float]:
    """A 2-D unit vector: the cosine of two of them is the cosine of their angle difference."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Rows as jsonl, gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_beir(
    folder: Path,
    corpus: dict[str, str],
    queries: dict[str, str],
    qrels: Sequence[tuple[str, str, int]],
    gz: bool = False,
) -> Path:
    ext = ".jsonl.gz" if gz else ".jsonl"
    write_jsonl(folder / f"corpus{ext}", ({"_id": k, "title": "", "text": v} for k, v in corpus.items()))
    write_jsonl(folder / f"queries{ext}", ({"_id": k, "text": v} for k, v in queries.items()))
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in qrels)]
    (folder / "qrels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# docs at 0/30/60/90 degrees; q1 at 0 ranks d1>d2>d3>d4, q2 at 90 ranks d4>d3>d2>d1
DOC_ANGLES = {"d1": 0, "d2": 30, "d3": 60, "d4": 90}
QUERY_ANGLES = {"q1": 0, "q2": 90}
CORPUS = {d: f"doc {d}" for d in DOC_ANGLES}
QUERIES = {q: f"query {q}" for q in QUERY_ANGLES}
RETRIEVAL_VECTORS = {
    **{f"doc {d}": angle(a) for d, a in DOC_ANGLES.items()},
    **{f"query {q}": angle(a) for q, a in QUERY_ANGLES.items()},
}

STS_GOLD = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
STS_NONMONOTONE_ANGLES = [80, 70, 20, 50, 40, 10]  # cosine ranks 1,2,5,3,4,6 vs gold ranks 1..6


def sts_rows(prefix: str, angles: Sequence[float]) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    rows, vectors = [], {}
    for i, (gold, a) in enumerate(zip(STS_GOLD, angles, strict=True)):
        s1, s2 = f"{prefix} left {i}", f"{prefix} right {i}"
        rows.append({"sentence1": s1, "sentence2": s2, "score": gold})
        vectors[s1], vectors[s2] = angle(0), angle(a)
    return rows, vectors


def minimal_folder(tmp_path: Path, kind: str, gz: bool = False) -> Path:
    """The smallest valid folder of each detectable kind."""
    ext = ".jsonl.gz" if gz else ".jsonl"
    folder = tmp_path / f"{kind}{'_gz' if gz else ''}"
    if kind == "Retrieval":
        return write_beir(folder, CORPUS, QUERIES, [("q1", "d1", 1), ("q2", "d4", 1)], gz=gz)
    rows = {
        "STS": [{"sentence1": "a", "sentence2": "b", "score": 3.5}],
        "PairClassification": [{"sentence1": "a", "sentence2": "b", "label": 1}],
        "Reranking": [{"query": "q", "positive": ["p"], "negative": ["n"]}],
        "Classification": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}],
    }[kind]
    write_jsonl(folder / f"test{ext}", rows)
    if kind == "Classification":
        write_jsonl(folder / f"train{ext}", rows)
    return folder


# ---------------------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Clustering"])
def test_detect_kind(tmp_path: Path, kind: str, gz: bool) -> None:
    folder = minimal_folder(tmp_path, kind, gz=gz)
    assert detect_kind(folder) == kind
    task = load_local_task(folder)
    task.load_data()
    assert task_category(task) == kind
    assert task.metadata.name == folder.name


def test_unknown_folder_names_folder_files_and_layouts(tmp_path: Path) -> None:
    folder = tmp_path / "mystery"
    write_jsonl(folder / "test.jsonl", [{"foo": 1}])
    (folder / "notes.txt").write_text("x")
    with pytest.raises(TaskFormatError) as err:
        detect_kind(folder)
    msg = str(err.value)
    assert msg.startswith(
        f"{folder}: matches no task layout; its first row, {folder / 'test.jsonl'}:1, has fields ['foo']"
    )
    assert "files found: ['notes.txt', 'test.jsonl']" in msg
    assert "corpus.jsonl" in msg and "sentence1" in msg  # the expected layouts are listed
    with pytest.raises(TaskFormatError, match="mystery"):
        discover_tasks(tmp_path)


def test_incomplete_beir_folder_names_missing_file(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "half", CORPUS, QUERIES, [("q1", "d1", 1)])
    (folder / "qrels.tsv").unlink()
    with pytest.raises(TaskFormatError, match=r"half.*missing \['qrels.tsv'\]"):
        detect_kind(folder)


def test_classification_without_train_is_not_detected(tmp_path: Path) -> None:
    folder = tmp_path / "labels_only"
    write_jsonl(folder / "test.jsonl", [{"text": "a", "label": "x"}])
    with pytest.raises(TaskFormatError, match="labels_only"):
        detect_kind(folder)


def test_discover_skips_training_pairs_and_empty_folders(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train_pairs" / "train.jsonl.gz", [{"query": "q", "positive": "p", "negative": "n"}])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("no data here")
    minimal_folder(tmp_path, "STS")
    minimal_folder(tmp_path, "Retrieval")
    with pytest.raises(TaskFormatError, match="training-pairs"):
        detect_kind(tmp_path / "train_pairs")
    assert [t.metadata.name for t in discover_tasks(tmp_path)] == ["Retrieval", "STS"]


def test_metadata_revision_and_classes(tmp_path: Path) -> None:
    folder = minimal_folder(tmp_path, "STS")
    task = load_local_task(folder, name="MySTS")
    meta = task.metadata
    assert isinstance(task, AbsTaskSTS)
    assert (meta.name, meta.type, meta.main_score) == ("MySTS", "STS", "cosine_spearman")
    assert meta.description == f"Local task from {folder}"
    assert meta.dataset["path"] == str(folder) and meta.eval_splits == ["test"] and meta.eval_langs == ["eng-Latn"]
    assert len(meta.dataset["revision"]) == 12
    write_jsonl(folder / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1.0}])
    assert load_local_task(folder).metadata.dataset["revision"] != meta.dataset["revision"]
    # each folder gets its own class: two tasks never share (and overwrite) one metadata
    assert type(load_local_task(folder)) is not type(task)
    expected = {
        "Retrieval": AbsTaskRetrieval,
        "PairClassification": AbsTaskPairClassification,
        "Reranking": AbsTaskRetrieval,
        "Classification": AbsTaskClassification,
    }
    for kind, base in expected.items():
        assert isinstance(load_local_task(minimal_folder(tmp_path, kind)), base)
    assert load_local_task(minimal_folder(tmp_path, "Reranking")).metadata.main_score == "map_at_1000"


# ---------------------------------------------------------------------------------------------------- bad rows
STS_ROW = {"sentence1": "a", "sentence2": "b", "score": 1}


def _beir(folder: Path, qrels: list[tuple[str, str, Any]]) -> None:
    write_beir(folder, CORPUS, QUERIES, qrels)


def _sts(f: Path, bad: dict[str, Any]) -> None:
    write_jsonl(f / "test.jsonl", [STS_ROW, bad])


def _classes(f: Path, train: list[str], test: list[Any]) -> None:
    write_jsonl(f / "train.jsonl", [{"text": f"tr {i}", "label": y} for i, y in enumerate(train)])
    write_jsonl(f / "test.jsonl", [{"text": f"te {i}", "label": y} for i, y in enumerate(test)])


# case: (writer, file, line, field, problem); the message reads "<folder>/<file>:<line>: field '<field>': <problem>"
BAD_CASES: dict[str, tuple[Any, str, int, str, str]] = {
    "sts_score_out_of_range": (
        lambda f: _sts(f, {**STS_ROW, "score": 7}),
        "test.jsonl",
        2,
        "score",
        "must be a number in the declared range [0, 5], got 7",
    ),
    "sts_score_below_range": (
        lambda f: _sts(f, {**STS_ROW, "score": -0.5}),
        "test.jsonl",
        2,
        "score",
        "must be a number in the declared range [0, 5], got -0.5",
    ),
    "sts_score_wrong_type": (
        lambda f: _sts(f, {**STS_ROW, "score": "4"}),
        "test.jsonl",
        2,
        "score",
        "must be a number in the declared range [0, 5], got '4'",
    ),
    "sts_missing_sentence": (
        lambda f: _sts(f, {"sentence1": "a", "sentence2": None, "score": 1}),
        "test.jsonl",
        2,
        "sentence2",
        "must be a string, got missing",
    ),
    "sts_empty_sentence": (
        lambda f: _sts(f, {"sentence1": " ", "sentence2": "b", "score": 1}),
        "test.jsonl",
        2,
        "sentence1",
        "is empty",
    ),
    "qrels_unknown_query": (
        lambda f: _beir(f, [("q1", "d1", 1), ("q2", "d2", 1), ("q9", "d1", 1)]),
        "qrels.tsv",
        4,
        "query-id",
        "'q9' is not an id in {folder}/queries.jsonl",
    ),
    "qrels_unknown_doc": (
        lambda f: _beir(f, [("q1", "d1", 1), ("q2", "dX", 1)]),
        "qrels.tsv",
        3,
        "corpus-id",
        "'dX' is not an id in {folder}/corpus.jsonl",
    ),
    "qrels_bad_score": (
        lambda f: _beir(f, [("q1", "d1", 1), ("q2", "d2", "high")]),
        "qrels.tsv",
        3,
        "score",
        "must be an integer, got 'high'",
    ),
    "query_without_judged_document": (
        lambda f: _beir(f, [("q1", "d1", 1)]),
        "queries.jsonl",
        2,
        "_id",
        "query 'q2' has no judged document in {folder}/qrels.tsv",
    ),
    "query_judged_only_irrelevant": (
        lambda f: _beir(f, [("q1", "d1", 1), ("q2", "d2", 0)]),
        "queries.jsonl",
        2,
        "_id",
        "query 'q2' has no document with score > 0 in {folder}/qrels.tsv",
    ),
    "corpus_repeated_id": (
        lambda f: (
            write_beir(f, CORPUS, QUERIES, [("q1", "d1", 1), ("q2", "d2", 1)]),
            write_jsonl(
                f / "corpus.jsonl", [{"_id": "d1", "text": "x"}, {"_id": 7, "text": "y"}, {"_id": "d1", "text": "z"}]
            ),
        ),
        "corpus.jsonl",
        3,
        "_id",
        "'d1' repeats the id of {folder}/corpus.jsonl:1",
    ),
    "pair_label_not_binary": (
        lambda f: write_jsonl(f / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 2}]),
        "test.jsonl",
        1,
        "label",
        "must be 0 or 1, got 2",
    ),
    "reranking_no_positive": (
        lambda f: write_jsonl(f / "test.jsonl", [{"query": "q", "positive": [], "negative": ["n"]}]),
        "test.jsonl",
        1,
        "positive",
        "is empty: the query has no relevant candidate",
    ),
    "reranking_negative_not_a_list": (
        lambda f: write_jsonl(f / "test.jsonl", [{"query": "q", "positive": ["p"], "negative": "n"}]),
        "test.jsonl",
        1,
        "negative",
        "must be a list of non-empty strings, got 'n'",
    ),
    "classification_unseen_test_label": (
        lambda f: _classes(f, ["x", "y"], ["x", "z"]),
        "test.jsonl",
        2,
        "label",
        "'z' never occurs in {folder}/train.jsonl (labels there: ['x', 'y'])",
    ),
    "classification_label_wrong_type": (
        lambda f: _classes(f, ["x", "y"], ["x", ["y"]]),
        "test.jsonl",
        2,
        "label",
        "must be a non-empty string or integer, got ['y']",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_rows_name_file_line_and_field(tmp_path: Path, case: str) -> None:
    writer, file, line, field, problem = BAD_CASES[case]
    folder = tmp_path / case
    folder.mkdir()
    writer(folder)
    with pytest.raises(TaskFormatError) as err:
        load_local_task(folder).load_data()
    assert str(err.value) == f"{folder / file}:{line}: field '{field}': {problem.format(folder=folder)}"


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "sts"
    folder.mkdir()
    (folder / "test.jsonl").write_text(json.dumps(STS_ROW) + "\n\n" + '{"sentence1": "a",\n')
    with pytest.raises(TaskFormatError) as err:
        load_local_task(folder).load_data()
    assert re.fullmatch(
        rf"{re.escape(str(folder / 'test.jsonl'))}:3: invalid JSON \(.+ at column \d+\)", str(err.value)
    )


def test_many_train_labels_are_previewed(tmp_path: Path) -> None:
    _classes(tmp_path, [f"l{i:02d}" for i in range(12)], ["l00", "zz"])
    with pytest.raises(TaskFormatError) as err:
        load_local_task(tmp_path, kind="Classification").load_data()
    labels = ", ".join(f"'l{i:02d}'" for i in range(10))
    assert str(err.value).endswith(f"(labels there: [{labels}, ... (12 in all)])")


# ---------------------------------------------------------------------------------------------------- exact scores
def test_retrieval_ndcg_exact(tmp_path: Path, run_mteb: Any) -> None:
    perfect = write_beir(tmp_path / "perfect", CORPUS, QUERIES, [("q1", "d1", 1), ("q2", "d4", 1), ("q2", "d3", 1)])
    reversed_ = write_beir(tmp_path / "reversed", CORPUS, QUERIES, [("q1", "d4", 1), ("q2", "d1", 1), ("q2", "d2", 1)])
    scores = run_mteb(LookupEncoder(RETRIEVAL_VECTORS), [load_local_task(perfect), load_local_task(reversed_)])
    assert scores["perfect"] == pytest.approx(1.0)
    # q1: its one relevant doc at rank 4; q2: relevant docs at ranks 3 and 4 (ideal: ranks 1 and 2)
    ndcg_q1 = 1 / math.log2(5)
    ndcg_q2 = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert scores["reversed"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-5)


def test_sts_spearman_exact(tmp_path: Path, run_mteb: Any) -> None:
    mono_rows, mono_vec = sts_rows("mono", [90 - 15 * g for g in STS_GOLD])  # cosine increases with the gold score
    mixed_rows, mixed_vec = sts_rows("mixed", STS_NONMONOTONE_ANGLES)
    write_jsonl(tmp_path / "sts_mono" / "test.jsonl", mono_rows)
    write_jsonl(tmp_path / "sts_mixed" / "test.jsonl.gz", mixed_rows)
    tasks = [load_local_task(tmp_path / "sts_mono"), load_local_task(tmp_path / "sts_mixed")]
    scores = run_mteb(LookupEncoder({**mono_vec, **mixed_vec}), tasks)
    assert scores["sts_mono"] == pytest.approx(1.0)
    # cosine ranks 1,2,5,3,4,6 against gold ranks 1..6: sum d^2 = 6 -> 1 - 6*6 / (6*35) = 29/35
    cosines = [math.cos(math.radians(a)) for a in STS_NONMONOTONE_ANGLES]
    assert spearmanr(STS_GOLD, cosines)[0] == pytest.approx(29 / 35)
    assert scores["sts_mixed"] == pytest.approx(29 / 35, abs=1e-6)


def test_changed_file_new_revision_new_score(tmp_path: Path, run_mteb: Any) -> None:
    """Same task name, same result cache: a changed file must give its own score (and dataset revision)."""
    rows, vectors = sts_rows("mixed", STS_NONMONOTONE_ANGLES)
    write_jsonl(tmp_path / "sts" / "test.jsonl", rows)
    first = load_local_task(tmp_path / "sts")
    assert run_mteb(LookupEncoder(vectors), [first])["sts"] == pytest.approx(29 / 35, abs=1e-6)
    write_jsonl(tmp_path / "sts" / "test.jsonl", [{**r, "score": 5 - r["score"]} for r in rows])
    second = load_local_task(tmp_path / "sts")
    assert second.metadata.revision != first.metadata.revision
    assert run_mteb(LookupEncoder(vectors), [second])["sts"] == pytest.approx(-29 / 35, abs=1e-6)


def test_declared_sts_range(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "sts01" / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 0.5}])
    task = load_local_task(tmp_path / "sts01", sts_range=(0.0, 1.0))
    task.load_data()
    assert (task.min_score, task.max_score) == (0.0, 1.0)
    with pytest.raises(
        TaskFormatError, match=r"test.jsonl:1: field 'score': must be a number in the declared range \[0, 0.25\]"
    ):
        load_local_task(tmp_path / "sts01", sts_range=(0.0, 0.25)).load_data()


def test_reranking_map_and_pair_ap_exact(tmp_path: Path, run_mteb: Any) -> None:
    # query A (0 deg): candidates ranked n10 > p30 > n50 > p70 -> AP = (1/2 + 2/4) / 2; query B: its positive first
    rerank = [
        {"query": "qa", "positive": ["p30", "p70"], "negative": ["n10", "n50"]},
        {"query": "qb", "positive": ["p0"], "negative": ["n20", "n40"]},
    ]
    vectors = {"qa": angle(0), "qb": angle(0), "p0": angle(0)}
    vectors |= {t: angle(int(t[1:])) for t in ("p30", "p70", "n10", "n50", "n20", "n40")}
    write_jsonl(tmp_path / "rerank" / "test.jsonl", rerank)
    # pair classification: similarity order of the pairs has labels 1,0,1,0 -> AP = (1/1 + 2/3) / 2
    pairs = [("s0", 10, 1), ("s1", 30, 0), ("s2", 50, 1), ("s3", 70, 0)]
    write_jsonl(
        tmp_path / "pairs" / "test.jsonl", [{"sentence1": "anchor", "sentence2": s, "label": y} for s, _, y in pairs]
    )
    vectors |= {"anchor": angle(0)} | {s: angle(a) for s, a, _ in pairs}
    scores = run_mteb(
        LookupEncoder(vectors), [load_local_task(tmp_path / "rerank"), load_local_task(tmp_path / "pairs")]
    )
    assert scores["rerank"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)
    assert scores["pairs"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)


def test_classification_and_clustering_separable(tmp_path: Path, run_mteb: Any) -> None:
    rows = {
        split: [{"text": f"{split} {lab} {i}", "label": lab} for lab in ("x", "y") for i in range(8)]
        for split in ("train", "test")
    }
    for split, split_rows in rows.items():
        write_jsonl(tmp_path / "topics" / f"{split}.jsonl", split_rows)
    vectors = {
        r["text"]: angle((0 if r["label"] == "x" else 80) + int(r["text"].split()[-1]))
        for rs in rows.values()
        for r in rs
    }
    tasks = discover_tasks(tmp_path, clustering=["topics"])
    assert [(t.metadata.name, task_category(t)) for t in tasks] == [
        ("topics", "Classification"),
        ("topicsClustering", "Clustering"),
    ]
    assert isinstance(tasks[1], AbsTaskClustering) and tasks[1].metadata.main_score == "v_measure"
    scores = run_mteb(LookupEncoder(vectors), tasks)
    assert scores == {"topics": pytest.approx(1.0), "topicsClustering": pytest.approx(1.0)}
    assert clustering_task(tmp_path / "topics" / "test.jsonl", name="c").metadata.dataset["revision"]


def test_declared_clustering_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TaskFormatError, match="nowhere"):
        discover_tasks(tmp_path, clustering=["nowhere"])
    write_jsonl(tmp_path / "bad" / "test.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    task = load_local_task(tmp_path / "bad", kind="Clustering")
    assert (task.metadata.name, task_category(task)) == ("bad", "Clustering")
    with pytest.raises(TaskFormatError, match=r"test.jsonl:2: field 'label': "):
        task.load_data()


# ---------------------------------------------------------------------------------------------------- shared data
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present (shared data sets live next to the repo)")
def test_shared_data_kinds_and_counts() -> None:
    tasks = {t.metadata.name: t for t in discover_tasks(SHARED, clustering=["banking77"])}
    assert {name: task_category(t) for name, t in tasks.items()} == {
        "banking77": "Classification",
        "banking77Clustering": "Clustering",
        "scifact": "Retrieval",
        "stsbenchmark": "STS",
        "twitterurlcorpus": "PairClassification",
        "wikiqa_reranking": "Reranking",
    }  # train_pairs is training data, not a task
    for task in tasks.values():
        task.load_data()
    scifact = tasks["scifact"].dataset["default"]["test"]
    assert (len(scifact["corpus"]), len(scifact["queries"])) == (5183, 300)
    assert sum(len(docs) for docs in scifact["relevant_docs"].values()) == 339
    assert len(tasks["stsbenchmark"].dataset["test"]) == 1379
    banking = tasks["banking77"].dataset
    assert (len(banking["train"]), len(banking["test"])) == (10003, 3080)
    assert banking["train"].features["label"].num_classes == 77
    clusters = tasks["banking77Clustering"].dataset["test"]
    assert len(clusters) == 3080 and len(set(clusters["labels"])) == 77
    twitter = tasks["twitterurlcorpus"].dataset["test"]
    assert (len(twitter), sum(twitter["labels"])) == (9334, 1821)
    wikiqa = tasks["wikiqa_reranking"].dataset["default"]["test"]
    assert (len(wikiqa["queries"]), len(wikiqa["corpus"])) == (237, 2341)
    assert all(any(rel.values()) for rel in wikiqa["relevant_docs"].values())


def test_non_utf8_task_file_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "sts"
    folder.mkdir()
    (folder / "test.jsonl").write_bytes(b'{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "\xff"}\n')
    with pytest.raises(TaskFormatError, match=r"test\.jsonl:2: not valid UTF-8"):
        load_local_task(folder, kind="STS").load_data()
