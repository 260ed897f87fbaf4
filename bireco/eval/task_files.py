"""Reading a local task folder: which layout it has (`detect_kind`) and its rows, each error naming
`file:line` and the field (`TaskFormatError`, a user error: one line, no traceback)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bireco.data.formats import field_message, parse_json_object
from bireco.errors import UserError

LAYOUTS = """expected one of these layouts (any file may also be gzipped, e.g. corpus.jsonl.gz):
  Retrieval (BEIR): corpus.jsonl {"_id","title","text"} + queries.jsonl {"_id","text"}
                    + qrels.tsv with header query-id<TAB>corpus-id<TAB>score
  STS:                test.jsonl {"sentence1","sentence2","score"}
  PairClassification: test.jsonl {"sentence1","sentence2","label"} (label 0/1)
  Reranking:          test.jsonl {"query","positive":[...],"negative":[...]}
  Classification:     train.jsonl + test.jsonl {"text","label"}
  (Clustering is declared: clustering_task(file, name) or discover_tasks(root, clustering=[folder]))"""

STS_RANGE = (0.0, 5.0)
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".tsv", ".tsv.gz")


class TaskFormatError(UserError, ValueError):
    """A local task folder or one of its rows does not match any expected layout."""


def find_file(folder: Path, name: str) -> Path | None:
    """`name` or `name.gz` in `folder` (the plain file wins)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def open_text(path: Path) -> Any:
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def iter_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`file:line`, JSON object) for every non-blank line: the location goes into every error message."""
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            yield where, parse_json_object(raw.rstrip(b"\r\n"), where, TaskFormatError)


def first_row(path: Path) -> tuple[str, dict[str, Any]]:
    """(`file:line`, object) of the first non-blank line."""
    for where, row in iter_rows(path):
        return where, row
    raise TaskFormatError(f"{path}: no rows (empty file)")


def text_field(row: dict[str, Any], key: str, where: str, allow_empty: bool = False) -> str:
    """`row[key]` as a (non-empty) string, or a TaskFormatError naming `where` and the field."""
    value = row.get(key)
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise TaskFormatError(field_message(where, key, f"must be a string, got {got}"))
    if not allow_empty and not value.strip():
        raise TaskFormatError(field_message(where, key, "is empty"))
    return value


def key_field(row: dict[str, Any], key: str, where: str) -> str:
    """An id or a label: a non-empty string or an integer, as a string."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise TaskFormatError(field_message(where, key, f"must be a non-empty string or integer, got {value!r}"))
    return str(value)


def preview(items: list[str], n: int = 10) -> str:
    """A short list for an error message."""
    return str(items[:n])[:-1] + f", ... ({len(items)} in all)]" if len(items) > n else str(items)


def data_files(folder: Path) -> list[Path]:
    """The folder's task data files (.jsonl / .tsv, plain or gzipped), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def is_training_pairs(folder: Path) -> bool:
    """Only training files with `{"query","positive": str}` rows: data for training, not an evaluation task."""
    files = data_files(folder)
    if not files or not all(f.name.startswith("train.") and f.name.endswith((".jsonl", ".jsonl.gz")) for f in files):
        return False
    try:
        rows = [first_row(f)[1] for f in files]
    except TaskFormatError:
        return False
    return all(isinstance(r.get("query"), str) and isinstance(r.get("positive"), str) for r in rows)


def detect_kind(folder: Path) -> str:
    """The kind of a task folder (never Clustering: that is declared), from its file names and first row."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskFormatError(f"{folder}: not a folder")
    beir = {n: find_file(folder, n) for n in ("corpus.jsonl", "queries.jsonl", "qrels.tsv")}
    found = sorted(p.name for p in folder.iterdir() if p.is_file())
    if all(beir.values()):
        return "Retrieval"
    if any(beir.values()):
        missing = [n for n, p in beir.items() if p is None]
        raise TaskFormatError(f"{folder}: incomplete BEIR folder, missing {missing}; files found: {found}\n{LAYOUTS}")
    test = find_file(folder, "test.jsonl")
    if test is not None:
        first, row = first_row(test)
        keys = set(row)
        if {"sentence1", "sentence2", "score"} <= keys:
            return "STS"
        if {"sentence1", "sentence2", "label"} <= keys:
            return "PairClassification"
        if {"query", "positive", "negative"} <= keys:
            return "Reranking"
        if {"text", "label"} <= keys and find_file(folder, "train.jsonl") is not None:
            return "Classification"
        hint = f"; its first row, {first}, has fields {sorted(keys)}"
    else:
        hint = " (a training-pairs folder is not an evaluation task)" if is_training_pairs(folder) else ""
    raise TaskFormatError(f"{folder}: matches no task layout{hint}; files found: {found}\n{LAYOUTS}")
