"""The texts an audit compares: every training text (query, positive, negative) and each evaluation task's texts.

A task's texts come from its mteb task object after `load_data()`, the same object `bireco-eval` scores, so
local folders and mteb's hub tasks are read alike. Each task has two fields, named as for retrieval:

| task kind | `queries` | `corpus` |
|---|---|---|
| Retrieval, Reranking | the queries | the documents' `text` (titles are not compared); reranking: every candidate |
| STS, PairClassification | `sentence1` | `sentence2` |
| Classification (and multilabel, regression) | the evaluation split's texts | the training split's texts |
| Clustering | the texts | (none) |
| Summarization | machine summaries | human summaries |

A text is counted each time it occurs, so `n` equals the number of texts the task embeds in that field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mteb.abstasks import (
    AbsTask,
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskClusteringLegacy,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
    AbsTaskSummarization,
)
from mteb.abstasks.aggregated_task import AbsTaskAggregate

from bireco.data.formats import iter_rows
from bireco.errors import HubUnreachable, UserError, hub_access

TRAIN_FIELDS = ("query", "positive", "negative")
TASK_FIELDS = ("queries", "corpus")


class AuditError(UserError, ValueError):
    """The audit cannot run as configured (no training rows, a task kind it cannot read, an unknown mteb name)."""


@dataclass(frozen=True)
class TrainText:
    """One text of one training row, and where it came from (`where`: file and valid-row number)."""

    text: str
    source: str
    field: str
    where: str


@dataclass
class TrainingCounts:
    """What was read: rows per source and texts per field (filled while the texts are streamed)."""

    rows_by_source: Counter[str] = field(default_factory=Counter)
    texts_by_field: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_source.values())


def training_texts(
    files: list[Path], counts: TrainingCounts, on_bad_row: str = "error", max_rows_per_file: int | None = None
) -> Iterator[TrainText]:
    """Every non-empty query, positive and negative of the validated rows (bireco's own reader, file by file)."""
    for f in files:
        for n, row in enumerate(iter_rows([f], on_bad_row, max_rows_per_file), start=1):
            counts.rows_by_source[row["source"]] += 1
            for name in TRAIN_FIELDS:
                if row.get(name):
                    counts.texts_by_field[name] += 1
                    yield TrainText(row[name], row["source"], name, f"{f} row {n}")


@dataclass
class TaskTexts:
    """The texts of one evaluation task, per field (see the module docstring), and what each field holds."""

    name: str
    kind: str
    fields: dict[str, list[str]]
    what: dict[str, str]


def _strings(values: Any) -> list[str]:
    """Flatten a column (strings, or lists of them as in mteb's legacy clustering and summarization sets)."""
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list | tuple):
            out += _strings(v)
    return out


def _column(data: Any, name: Any, task: str) -> list[str]:
    if not isinstance(name, str):
        raise AuditError(f"task {task}: column {name!r} is not a text column; the audit compares text only")
    return _strings(data[name])


def _subsets(task: AbsTask) -> Iterator[Any]:
    """The DatasetDict (or retrieval splits) of each evaluated subset, as mteb's `evaluate` selects them."""
    ds = task.dataset
    for subset in task.hf_subsets or list(ds):
        yield ds if subset == "default" and subset not in ds else ds[subset]


def _split_fields(task: AbsTask, data: Any, split: str) -> tuple[list[str], list[str]]:
    """(queries, corpus) of one split of one subset."""
    name = task.metadata.name
    if isinstance(task, AbsTaskRetrieval):
        part = data[split]
        return _column(part["queries"], "text", name), _column(part["corpus"], "text", name)
    if isinstance(task, AbsTaskSTS):
        first, second = task.column_names
        return _column(data[split], first, name), _column(data[split], second, name)
    if isinstance(task, AbsTaskPairClassification):
        return (
            _column(data[split], task.input1_column_name, name),
            _column(data[split], task.input2_column_name, name),
        )
    if isinstance(task, AbsTaskSummarization):
        return (
            _column(data[split], task.machine_summaries_column_name, name),
            _column(data[split], task.human_summaries_column_name, name),
        )
    if isinstance(task, AbsTaskClassification):
        return _column(data[split], task.input_column_name, name), _column(
            data[task.train_split], task.input_column_name, name
        )
    if isinstance(task, AbsTaskClustering | AbsTaskClusteringLegacy):
        return _column(data[split], task.input_column_name, name), []
    raise AuditError(f"task {name}: the audit cannot read tasks of type {task.metadata.type} ({type(task).__name__})")


WHAT = {
    "Retrieval": ("queries", "documents (text)"),
    "Reranking": ("queries", "candidates"),
    "STS": ("sentence1", "sentence2"),
    "PairClassification": ("sentence1", "sentence2"),
    "Classification": ("evaluation texts", "training-split texts"),
    "Clustering": ("texts", "(none)"),
    "Summarization": ("machine summaries", "human summaries"),
}


def load_task_data(task: AbsTask) -> None:
    """`task.load_data()`, a hub failure as one line naming the task (as bireco-eval says it)."""
    where = task.metadata.dataset.get("path")
    try:
        with hub_access(f"the data of task {task.metadata.name} ({where}; eval=local reads local task folders)"):
            task.load_data()
    except HubUnreachable as e:
        raise HubUnreachable(f"task {task.metadata.name}: its data could not be reached: {e}") from e


def task_texts(task: AbsTask) -> TaskTexts:
    """Load a task's data and collect its texts per field (an aggregate task: all of its sub-tasks)."""
    name, kind = task.metadata.name, task.metadata.type
    queries: list[str] = []
    corpus: list[str] = []
    parts = list(task.tasks) if isinstance(task, AbsTaskAggregate) else [task]
    for part in parts:
        load_task_data(part)
        for data in _subsets(part):
            for split in part.eval_splits:
                q, c = _split_fields(part, data, split)
                queries += q
                corpus += c
    what = WHAT.get(kind, ("queries", "corpus"))
    return TaskTexts(name, kind, {"queries": queries, "corpus": corpus}, dict(zip(TASK_FIELDS, what, strict=True)))
