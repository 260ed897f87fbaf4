"""`bireco-audit`: the overlap of the training rows with every evaluation task -> audit.json and a printed table.

    bireco-audit data=local data.path=TRAIN eval.data_root=TASKS
    bireco-audit run_dir=RUN eval.data_root=TASKS       # the run's own training data, into RUN/audit.json

What is compared and why: docs/audit.md (and bireco/audit/overlap.py, texts.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bireco.audit.measure import measure_overlap
from bireco.audit.overlap import OverlapSettings
from bireco.audit.texts import TRAIN_FIELDS, AuditError, TrainingCounts, task_texts, training_texts
from bireco.data.formats import list_row_files
from bireco.errors import UserError
from bireco.eval.contamination import declare_training_datasets, table_rows
from bireco.runs import AUDIT_FILE, CONFIG_FILE, Run
from bireco.utils.io import atomic_write_json
from bireco.utils.resolvers import register as register_resolvers

register_resolvers()

METHOD = (
    "exact: equal normal forms (NFKC, case folded, punctuation as spaces, whitespace collapsed); near: Jaccard "
    "similarity of word-shingle sets >= threshold, candidates from MinHash LSH, each confirmed with the exact Jaccard"
)


def _data_of(cfg: DictConfig, overrides: list[str]) -> tuple[dict[str, Any], str, Path | None]:
    """(data config, cache dir, run folder or None): with run_dir, the data the run trained on (its config.yaml)."""
    if not cfg.run_dir:
        return OmegaConf.to_container(cfg.data, resolve=True), cfg.paths.cache_dir, None
    run = Run(cfg.run_dir)
    if not (run.path / CONFIG_FILE).is_file() or "data" not in run.config():
        raise AuditError(f"run_dir={cfg.run_dir}: not a bireco run (no {CONFIG_FILE} with its data settings)")
    own = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] == "data"]
    if own:
        raise AuditError(f"run_dir={cfg.run_dir} audits the data that run trained on; drop {own}")
    run_cfg = run.config()
    return run_cfg["data"], (run_cfg.get("paths") or {}).get("cache_dir") or cfg.paths.cache_dir, run.path


def _training_files(data: dict[str, Any], cache_dir: str) -> tuple[list[Path], Path | None]:
    """The training files, and the held-out task folder of a synthetic world (the default task root)."""
    if data.get("kind") == "synthetic":
        from bireco.data.prepare import prepare_data

        cfg = OmegaConf.create(
            {"data": data, "paths": {"cache_dir": cache_dir}, "probe": {"task_dir": None, "instruction": None}}
        )
        prepared = prepare_data(cfg)
        return list_row_files(prepared.train_path), prepared.probe_dir.parent if prepared.probe_dir else None
    if data.get("kind") == "local":
        if data.get("path") in (None, "???"):
            raise AuditError("data=local needs data.path=<folder or file of training jsonl rows>")
        return list_row_files(data["path"]), None
    raise AuditError(f"data.kind={data.get('kind')!r}: the audit reads 'local' or 'synthetic' training data")


def _tasks(ecfg: DictConfig, default_root: Path | None) -> list:
    from bireco.eval.runner import resolve_tasks

    if ecfg.kind == "local" and not ecfg.data_root and default_root is None:
        raise AuditError("eval=local needs eval.data_root=<folder of task folders> (or eval=mteb_en)")
    if ecfg.kind not in ("local", "mteb"):
        raise AuditError(f"eval={ecfg.name}: nothing to audit; choose eval=local eval.data_root=DIR or eval=mteb_en")
    try:
        return resolve_tasks(ecfg, default_root)[0]
    except UserError:
        raise
    except ValueError as e:
        raise AuditError(str(e)) from e


def _check_mteb_names(names: set[str]) -> None:
    """Every declared name must be an mteb task name (a typo would make the declaration silently wrong)."""
    import mteb

    unknown = []
    for name in sorted(names):
        try:
            mteb.get_task(name)
        except KeyError:
            unknown.append(name)
    if unknown:
        raise AuditError(
            f"not mteb task names: {unknown} (in data.sources.<name>.mteb_tasks or audit.mteb_names); "
            "use the names mteb.get_task accepts, e.g. MSMARCO, NQ, HotpotQA"
        )


def run_audit(cfg: DictConfig, out_dir: str | Path, overrides: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Measure, write audit.json (into `out_dir`, or the run folder with run_dir) and return (its path, it)."""
    data, cache_dir, run_path = _data_of(cfg, list(overrides))
    files, heldout = _training_files(data, cache_dir)
    a = cfg.audit
    settings = OverlapSettings(a.shingle_words, a.num_perm, a.lsh_bands, a.lsh_rows, a.jaccard_threshold, a.seed)
    sources = data.get("sources") or {}
    source_tasks = {s: list((c or {}).get("mteb_tasks") or []) for s, c in sources.items() if isinstance(c, dict)}
    local_names = dict(a.mteb_names or {}) if cfg.eval.kind == "local" else {}
    _check_mteb_names({n for names in source_tasks.values() for n in names} | set(local_names.values()))
    tasks = _tasks(cfg.eval, heldout)
    with tqdm(tasks, desc="loading tasks", unit="task", leave=False) as bar:  # cleared before an error line
        texts = [task_texts(t) for t in bar]
    counts = TrainingCounts()
    stream = training_texts(files, counts, data.get("on_bad_row", "error"), data.get("max_rows_per_source"))
    results, passes = measure_overlap(texts, stream, settings, int(a.max_examples))
    for name, r in results.items():
        r["mteb_name"] = name if cfg.eval.kind == "mteb" else local_names.get(name)
    root = cfg.eval.get("data_root") or (str(heldout) if heldout else None)
    audit = {
        "settings": {
            "method": METHOD,
            "library": "datasketch",
            "library_version": version("datasketch"),
            "shingles": f"word {settings.shingle_words}-grams",
            **settings.record(),
            "max_examples": int(a.max_examples),
        },
        "train": {
            "data": data.get("name"),
            "kind": data.get("kind"),
            "path": str(data.get("path") or files[0].parent),
            "files": [str(f) for f in files],
            "fields": list(TRAIN_FIELDS),
            "rows": counts.rows,
            "rows_by_source": dict(sorted(counts.rows_by_source.items())),
            "texts_by_field": dict(counts.texts_by_field),
            "texts": passes["train_texts"],
            "distinct_texts": passes["distinct_train_texts"],
        },
        "eval": {"name": cfg.eval.name, "kind": cfg.eval.kind, "task_root": root, "tasks": len(results)},
        "tasks": results,
        "training_datasets": declare_training_datasets(source_tasks, counts.rows_by_source, results),
    }
    path = (run_path or Path(out_dir)) / AUDIT_FILE
    atomic_write_json(path, audit)
    return path, audit


def print_table(audit: dict[str, Any], path: Path) -> None:
    """The per-task counts, the declaration and where audit.json is (rich, to stdout)."""
    from rich.console import Console
    from rich.table import Table

    s = audit["settings"]
    table = Table(
        title="evaluation texts found in the training rows",
        caption=f"exact: same normal form; near: Jaccard ≥ {s['jaccard_threshold']} of {s['shingles']}",
    )
    for name in ("task", "kind", "queries", "exact", "near", "corpus", "exact", "near"):
        table.add_column(name, justify="left" if name in ("task", "kind") else "right")
    for row in table_rows(audit):
        table.add_row(*row)
    console = Console(width=None if sys.stdout.isatty() else 120)  # a log or a pipe: do not cut task names
    console.print(table)
    decl = audit["training_datasets"]
    console.print(f"mteb training_datasets: {decl['declared'] or 'none'}")
    if decl["overlapping_tasks_without_mteb_name"]:
        console.print(f"overlap in tasks without an mteb name: {decl['overlapping_tasks_without_mteb_name']}")
    console.print(f"wrote {path}")
