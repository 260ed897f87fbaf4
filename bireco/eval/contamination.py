"""What an audit.json says, for its readers: per-task counts for summary.json, the mteb `training_datasets`
declaration, the printed table's rows. Plain dicts only (no torch, no mteb), so tables and cards stay quick."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS = ("queries", "corpus")


def contamination_by_task(audit: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Task -> what summary.json shows for it: `n_<field>`, `exact_<field>`, `near_<field>` for queries and corpus.

    `exact` counts texts whose normal form occurs in the training rows; `near` the others with a near duplicate
    there, so `exact + near` texts of the field are contaminated.
    """
    out = {}
    for name, task in audit.get("tasks", {}).items():
        counts = {}
        for f in FIELDS:
            r = task["fields"][f]
            counts |= {f"n_{f}": r["n"], f"exact_{f}": r["exact"], f"near_{f}": r["near"]}
        out[name] = counts
    return out


def contaminated(task: Mapping[str, Any]) -> int:
    """How many of a task's texts (both fields) have an exact or near copy in the training rows."""
    return sum(task["fields"][f]["exact"] + task["fields"][f]["near"] for f in FIELDS)


def declare_training_datasets(
    source_tasks: Mapping[str, list[str]], rows_by_source: Mapping[str, int], tasks: Mapping[str, Any]
) -> dict[str, Any]:
    """The mteb `ModelMeta.training_datasets` set (mteb task names), with the reason for each name.

    A name is declared (a) when a training source that has rows is known to come from that mteb task
    (`data.sources.<name>.mteb_tasks`), and (b) when an audited task shares any text with the training rows. A task
    with overlap but no mteb name (a local folder mteb does not have) is listed apart, never dropped.
    """
    reasons: dict[str, list[str]] = {}
    for source, names in sorted(source_tasks.items()):
        if rows_by_source.get(source):
            for name in names:
                reasons.setdefault(name, []).append(f"training source '{source}' comes from it")
    unnamed = []
    for task_name, task in sorted(tasks.items()):
        n = contaminated(task)
        if not n:
            continue
        parts = [f"{task['fields'][f]['exact']} exact + {task['fields'][f]['near']} near {f}" for f in FIELDS]
        reason = f"audit: task '{task_name}' shares texts with the training rows ({', '.join(parts)})"
        if task.get("mteb_name"):
            reasons.setdefault(task["mteb_name"], []).append(reason)
        else:
            unnamed.append(task_name)
    return {
        "declared": sorted(reasons),
        "reasons": {k: reasons[k] for k in sorted(reasons)},
        "overlapping_tasks_without_mteb_name": unnamed,
    }


def table_rows(audit: Mapping[str, Any]) -> list[list[str]]:
    """One row per task: task, kind, then n / exact / near of queries and of corpus (as printed)."""
    rows = []
    for name, task in sorted(audit.get("tasks", {}).items()):
        cells = [name, task["kind"]]
        for f in FIELDS:
            r = task["fields"][f]
            cells += [f"{r['n']:,}", f"{r['exact']:,}", f"{r['near']:,}"]
        rows.append(cells)
    return rows
