"""Local evaluation folders as mteb 2.x task objects (`eval=local eval.data_root=DIR`).

Only reading and validating happens here: every metric comes from mteb's own task classes and evaluators. A factory
builds one task class per folder (mteb reads `metadata` from the class); its dataset revision hashes the names and
bytes of the folder's data files. Caveat: mteb 2.26's default `overwrite_strategy="only-missing"` keys its result
cache by model + task name only and returns a stale score for a changed file anyway, so runners pass
`overwrite_strategy="always"`. Clustering is never detected, only declared. A folder of training pairs only
(`train.jsonl[.gz]` rows `{"query","positive": str, ...}`, like `train_pairs/`) is not a task: it is skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from mteb.abstasks import (
    AbsTask,
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
)
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from bireco.data.formats import field_message
from bireco.eval.task_files import (
    STS_RANGE,
    TaskFormatError,
    data_files,
    detect_kind,
    find_file,
    is_training_pairs,
    iter_rows,
    key_field,
    open_text,
    preview,
    text_field,
)
from bireco.utils.io import sha256_files

log = logging.getLogger(__name__)

KINDS = ("Retrieval", "STS", "PairClassification", "Reranking", "Classification", "Clustering")

# kind -> (mteb base class, main score as mteb's own tasks of that kind declare it, task category).
# mteb 2.x runs reranking as retrieval restricted to each query's candidates (`top_ranked`); its Reranking tasks
# (SciDocsRR, AskUbuntuDupQuestions) subclass AbsTaskRetrieval with type="Reranking", main score MAP@1000.
_SPECS: dict[str, tuple[type[AbsTask], str, str]] = {
    "Retrieval": (AbsTaskRetrieval, "ndcg_at_10", "t2t"),
    "STS": (AbsTaskSTS, "cosine_spearman", "t2t"),
    "PairClassification": (AbsTaskPairClassification, "max_ap", "t2t"),
    "Reranking": (AbsTaskRetrieval, "map_at_1000", "t2t"),
    "Classification": (AbsTaskClassification, "accuracy", "t2c"),
    "Clustering": (AbsTaskClustering, "v_measure", "t2c"),
}


def _split(corpus: dict, queries: dict, qrels: dict, top_ranked: dict | None) -> dict[str, dict[str, Any]]:
    """mteb 2.x retrieval layout: {"default": {"test": RetrievalSplitData}}, `id` columns, qrels as dicts."""
    data = RetrievalSplitData(
        corpus=Dataset.from_dict(corpus),
        queries=Dataset.from_dict(queries),
        relevant_docs=qrels,
        top_ranked=top_ranked,
    )
    return {"default": {"test": data}}


def _read_beir(path: Path, with_title: bool) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Columns `id`, `text` (and `title`) of a BEIR corpus or queries file, and the `file:line` of each id."""
    cols: dict[str, list[str]] = {"id": [], "text": [], "title": []} if with_title else {"id": [], "text": []}
    lines: dict[str, str] = {}
    for where, row in iter_rows(path):
        key = key_field(row, "_id", where)
        if key in lines:
            raise TaskFormatError(field_message(where, "_id", f"{key!r} repeats the id of {lines[key]}"))
        lines[key] = where
        cols["id"].append(key)
        cols["text"].append(text_field(row, "text", where))
        if with_title:
            cols["title"].append(
                text_field(row, "title", where, allow_empty=True) if row.get("title") is not None else ""
            )
    return cols, lines


def _load_retrieval(folder: Path) -> dict[str, dict[str, Any]]:
    corpus_path, queries_path, qrels_path = (
        find_file(folder, n) for n in ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
    )
    assert corpus_path and queries_path and qrels_path  # detect_kind checked them
    corpus, doc_ids = _read_beir(corpus_path, with_title=True)
    queries, query_lines = _read_beir(queries_path, with_title=False)
    qrels: dict[str, dict[str, int]] = {}
    with open_text(qrels_path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if header != ["query-id", "corpus-id", "score"]:
            raise TaskFormatError(f"{qrels_path}:1: header must be query-id<TAB>corpus-id<TAB>score, got {header}")
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            where, cols = f"{qrels_path}:{lineno}", line.rstrip("\r\n").split("\t")
            if len(cols) != 3:
                raise TaskFormatError(f"{where}: expected 3 tab-separated columns, got {len(cols)}")
            if cols[0] not in query_lines:
                raise TaskFormatError(field_message(where, "query-id", f"{cols[0]!r} is not an id in {queries_path}"))
            if cols[1] not in doc_ids:
                raise TaskFormatError(field_message(where, "corpus-id", f"{cols[1]!r} is not an id in {corpus_path}"))
            try:
                qrels.setdefault(cols[0], {})[cols[1]] = int(cols[2])
            except ValueError:
                raise TaskFormatError(field_message(where, "score", f"must be an integer, got {cols[2]!r}")) from None
    for qid, where in query_lines.items():
        if qid not in qrels:
            raise TaskFormatError(field_message(where, "_id", f"query {qid!r} has no judged document in {qrels_path}"))
        if not any(score > 0 for score in qrels[qid].values()):
            raise TaskFormatError(
                field_message(where, "_id", f"query {qid!r} has no document with score > 0 in {qrels_path}")
            )
    return _split(corpus, queries, qrels, None)


def _load_reranking(folder: Path) -> dict[str, dict[str, Any]]:
    """Each row's candidates become documents of that query only (mteb's `top_ranked`), positives relevance 1."""
    path = find_file(folder, "test.jsonl")
    assert path is not None
    corpus: dict[str, list[str]] = {"id": [], "text": []}
    queries: dict[str, list[str]] = {"id": [], "text": []}
    qrels: dict[str, dict[str, int]] = {}
    top_ranked: dict[str, list[str]] = {}
    for i, (where, row) in enumerate(iter_rows(path)):
        qid = f"q{i}"
        queries["id"].append(qid)
        queries["text"].append(text_field(row, "query", where))
        qrels[qid], top_ranked[qid] = {}, []
        for field, relevance in (("positive", 1), ("negative", 0)):
            docs = row.get(field)
            if not isinstance(docs, list) or not all(isinstance(d, str) and d.strip() for d in docs):
                raise TaskFormatError(
                    field_message(where, field, f"must be a list of non-empty strings, got {docs!r:.80}")
                )
            if field == "positive" and not docs:
                raise TaskFormatError(
                    field_message(where, "positive", "is empty: the query has no relevant candidate")
                )
            for j, doc in enumerate(docs):
                doc_id = f"{qid}_{field[:3]}{j}"
                corpus["id"].append(doc_id)
                corpus["text"].append(doc)
                qrels[qid][doc_id] = relevance
                top_ranked[qid].append(doc_id)
    return _split(corpus, queries, qrels, top_ranked)


def _load_pairs(folder: Path, target: str, sts_range: tuple[float, float]) -> DatasetDict:
    """STS (`target`="score", checked against the declared range) or PairClassification (`target`="label", 0/1)."""
    path = find_file(folder, "test.jsonl")
    assert path is not None
    cols: dict[str, list[Any]] = {"sentence1": [], "sentence2": [], "score" if target == "score" else "labels": []}
    for where, row in iter_rows(path):
        cols["sentence1"].append(text_field(row, "sentence1", where))
        cols["sentence2"].append(text_field(row, "sentence2", where))
        value = row.get(target)
        if target == "score":
            lo, hi = sts_range
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise TaskFormatError(
                    field_message(
                        where, "score", f"must be a number in the declared range [{lo:g}, {hi:g}], got {value!r}"
                    )
                )
            cols["score"].append(float(value))
        else:
            if isinstance(value, bool) or value not in (0, 1):
                raise TaskFormatError(field_message(where, "label", f"must be 0 or 1, got {value!r}"))
            cols["labels"].append(int(value))
    return DatasetDict({"test": Dataset.from_dict(cols)})


def _labelled(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Texts, labels (as strings) and the `file:line` of each `{"text","label"}` row."""
    texts, labels, wheres = [], [], []
    for where, row in iter_rows(path):
        texts.append(text_field(row, "text", where))
        labels.append(key_field(row, "label", where))
        wheres.append(where)
    if not texts:
        raise TaskFormatError(f"{path}: no rows (empty file)")
    return texts, labels, wheres


def _load_classification(folder: Path) -> DatasetDict:
    """Labels become a ClassLabel (ints, names kept): mteb's binary AP metric fails on string labels."""
    train_path, test_path = find_file(folder, "train.jsonl"), find_file(folder, "test.jsonl")
    assert train_path is not None and test_path is not None
    train_texts, train_labels, _ = _labelled(train_path)
    test_texts, test_labels, test_wheres = _labelled(test_path)
    names = sorted(set(train_labels))
    for label, where in zip(test_labels, test_wheres, strict=True):
        if label not in names:
            raise TaskFormatError(
                field_message(
                    where, "label", f"{label!r} never occurs in {train_path} (labels there: {preview(names)})"
                )
            )
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    splits = {"train": (train_texts, train_labels), "test": (test_texts, test_labels)}
    return DatasetDict(
        {k: Dataset.from_dict({"text": t, "label": y}, features=features) for k, (t, y) in splits.items()}
    )


def _load_clustering(path: Path) -> DatasetDict:
    texts, labels, _ = _labelled(path)
    return DatasetDict({"test": Dataset.from_dict({"sentences": texts, "labels": labels})})


def _make_task(
    kind: str, name: str, source: Path, files: list[Path], load: Callable[[], Any], **attrs: Any
) -> AbsTask:
    """A fresh AbsTask subclass of `kind` whose `load_data` fills `self.dataset` from local files."""
    base, main_score, category = _SPECS[kind]
    metadata = TaskMetadata(
        name=name,
        description=f"Local task from {source}",
        dataset={"path": str(source), "revision": sha256_files(files)[:12]},
        type=kind,
        category=category,
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
    )

    def load_data(self: AbsTask, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = load()
        self.data_loaded = True
        if isinstance(self, AbsTaskClustering):  # bootstrap samples of the set's own size, as mteb's small sets do
            self.max_documents_per_cluster = min(type(self).max_documents_per_cluster, len(self.dataset["test"]))

    cls_name = f"Local{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
    cls = type(cls_name, (base,), {"metadata": metadata, "load_data": load_data, "__module__": __name__, **attrs})
    return cls()


def load_local_task(
    folder: Path, name: str | None = None, kind: str | None = None, *, sts_range: tuple[float, float] = STS_RANGE
) -> AbsTask:
    """The mteb task of one folder; rows are read and validated lazily by `task.load_data()` (as mteb does)."""
    folder = Path(folder)
    kind = kind or detect_kind(folder)
    name = name or folder.name
    if kind == "Clustering":
        test = find_file(folder, "test.jsonl")
        if test is None:
            raise TaskFormatError(f"{folder}: declared as Clustering but has no test.jsonl[.gz] with text/label rows")
        return clustering_task(test, name)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    files = data_files(folder)
    loaders: dict[str, Callable[[], Any]] = {
        "Retrieval": lambda: _load_retrieval(folder),
        "Reranking": lambda: _load_reranking(folder),
        "STS": lambda: _load_pairs(folder, "score", sts_range),
        "PairClassification": lambda: _load_pairs(folder, "label", sts_range),
        "Classification": lambda: _load_classification(folder),
    }
    attrs = {"min_score": sts_range[0], "max_score": sts_range[1]} if kind == "STS" else {}
    return _make_task(kind, name, folder, files, loaders[kind], **attrs)


def clustering_task(jsonl: Path, name: str) -> AbsTask:
    """A Clustering view of labelled `{"text","label"}` rows: mteb's bootstrapped k-means protocol over every row."""
    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise TaskFormatError(f"{jsonl}: no such file")
    # embed the whole file (mteb's default embeds 4%, meant for its 100k-row sets)
    return _make_task(
        "Clustering", name, jsonl, [jsonl], lambda: _load_clustering(jsonl), max_fraction_of_documents_to_embed=None
    )


def discover_tasks(root: Path, clustering: Sequence[str] = ()) -> list[AbsTask]:
    """Every task folder directly under `root`, sorted by name, plus a `<name>Clustering` task per declared folder.

    Skipped: subfolders without any jsonl/tsv file and training-pairs folders (`train.jsonl[.gz]` with
    `{"query","positive": str}` rows). Any other subfolder that matches no layout raises TaskFormatError.
    """
    root = Path(root)
    if not root.is_dir():
        raise TaskFormatError(f"{root}: eval data root is not a folder")
    tasks: list[AbsTask] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not data_files(folder):
            continue
        if is_training_pairs(folder):
            log.info("%s: training pairs, not an evaluation task; skipped", folder)
            continue
        tasks.append(load_local_task(folder))
    tasks += [load_local_task(root / name, f"{name}Clustering", kind="Clustering") for name in clustering]
    return sorted(tasks, key=lambda t: t.metadata.name)


def task_category(task: AbsTask) -> str:
    """The KINDS name of a task (mteb's `metadata.type`), for the summary table."""
    kind = task.metadata.type
    if kind not in KINDS:
        raise ValueError(f"{task.metadata.name}: task type {kind!r} is not one of {KINDS}")
    return kind
