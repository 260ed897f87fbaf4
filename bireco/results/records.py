"""Runs as the results tools see them: one `RunRecord` per pipeline job found on disk (or expected and absent).

A run's status and scores come from its folder through `bireco.runs`; the newer of a summary and a failure marker
decides, and a folder that cannot be read is still a record (with why), never a crash of the whole table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from bireco.errors import UserError
from bireco.runs import CONFIG_FILE, FAILED_FILE, RESULTS_FILE, SUMMARY_FILE, Run, find_runs


class TableInputError(UserError, ValueError):
    """What `bireco-table` / `bireco-report` was given cannot make a table or report (an absent folder, no run in
    it, a bad --expect or paper table)."""


log = logging.getLogger(__name__)

# mteb task type (summary.json's categories) -> the paper's column
_TYPES = ["Retrieval", "Reranking", "Clustering", "PairClassification", "Classification", "STS", "Summarization"]
CATEGORIES = dict(zip(_TYPES, ["Retr", "Rerank", "Clust", "PairCls", "Class", "STS", "Summ"], strict=True))
COLUMNS = [*CATEGORIES.values(), "Avg"]
MODEL_ORDER = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]
PIPELINE_ORDER = ["baseline", "bireco", "baseline_budget", "anchor_control", "only_q2d", "only_d2q", "stage1_only"]

Scores = dict[str, float | None]


@dataclass
class RunRecord:
    """One pipeline job as found on disk (or expected and absent): what the table needs from it."""

    model: str
    pipeline: str
    status: str  # ok | failed | missing
    reason: str = ""
    path: Path | None = None
    scores: Scores = field(default_factory=dict)
    seed: int | None = None
    tasks: dict[str, tuple[str, float]] = field(default_factory=dict)  # task -> (column, main score)
    trained: bool = False  # training finished (results.json), whatever the evaluation's state


def find_run_dirs(root: Path, max_depth: int = 3) -> list[Path]:
    """Run folders under `root`, itself included (never inside a run: its `eval/`, `.hydra/` ...)."""
    return [r.path for r in find_runs(root, max_depth)]


def _names(run_dir: Path) -> tuple[str, str, list[str], int | None]:
    """(model, pipeline, stages, seed) from results.json, else config.yaml; the folder name when neither says."""
    run = Run(run_dir)
    if (r := run.results()) is not None:
        return r["model"], r["pipeline"], list(r.get("stages") or []), r.get("seed")
    if (run_dir / CONFIG_FILE).is_file():
        cfg = run.config()
        model, pipe = cfg.get("model") or {}, cfg.get("pipeline") or {}
        return model.get("name", "?"), pipe.get("name", run_dir.name), list(pipe.get("stages") or []), cfg.get("seed")
    if (run_dir / FAILED_FILE).is_file():  # a sweep job refused before config.yaml: failed.json names it
        f = run.failed() or {}
        if f.get("model") and f.get("pipeline"):
            return f["model"], f["pipeline"], [], f.get("seed")
    return "?", run_dir.name, [], None


def read_run(run_dir: Path, eval_subdir: str = "eval") -> RunRecord:
    """Status and scores of one run folder; the newer of a summary and a failure marker decides."""
    model, pipeline, stages, seed = _names(run_dir)
    summary, failed = run_dir / eval_subdir / SUMMARY_FILE, run_dir / FAILED_FILE
    if failed.is_file() and not (summary.is_file() and summary.stat().st_mtime >= failed.stat().st_mtime):
        f = json.loads(failed.read_text())
        where = f" (stage {f['stage']})" if f.get("stage") else ""
        return RunRecord(model, pipeline, "failed", f"{f.get('error', 'no error message')}{where}", run_dir, seed=seed)
    if summary.is_file():
        s = json.loads(summary.read_text())
        scores: Scores = {col: s.get("categories", {}).get(cat) for cat, col in CATEGORIES.items()}
        scores["Avg"] = s.get("average")
        tasks = {
            name: (CATEGORIES.get(t.get("category"), t.get("category")), float(t["main_score"]))
            for name, t in (s.get("tasks") or {}).items()
        }
        return RunRecord(model, pipeline, "ok", "", run_dir, scores, seed, tasks)
    if (run_dir / RESULTS_FILE).is_file():
        reason = f"no {eval_subdir}/{SUMMARY_FILE} (training finished)"
        return RunRecord(model, pipeline, "missing", reason, run_dir, seed=seed, trained=True)
    done = sum(1 for s in Run(run_dir).stages() if s.done is not None)
    progress = f"; {done}/{len(stages)} stages done" if stages else ""
    reason = f"no results.json (training did not finish{progress})"
    return RunRecord(model, pipeline, "missing", reason, run_dir, seed=seed)


def _read_run_safely(run_dir: Path, eval_subdir: str) -> RunRecord:
    """A run whose files cannot be read is still a row (with why), not a crash of the whole table."""
    try:
        return read_run(run_dir, eval_subdir)
    except (OSError, ValueError, KeyError, AttributeError, yaml.YAMLError) as e:
        log.warning("%s: cannot read the run: %s: %s", run_dir, type(e).__name__, e)
        return RunRecord("?", run_dir.name, "missing", f"unreadable run directory: {type(e).__name__}: {e}", run_dir)


def collect_runs(
    paths: Iterable[str | Path], expect: Iterable[str] = (), eval_subdir: str = "eval"
) -> list[RunRecord]:
    """Every run under `paths` (run or sweep folders), plus a `missing` record per expected MODEL:PIPELINE absent."""
    dirs: dict[Path, None] = {}
    for p in paths:
        if not Path(p).exists():
            raise TableInputError(f"{p}: no such run or sweep directory")
        found = find_run_dirs(Path(p))
        if not found:
            log.warning("%s: no run directory found (looked for run folders up to 3 levels down)", p)
        dirs.update({d.resolve(): None for d in found})
    runs = [_read_run_safely(d, eval_subdir) for d in dirs]
    unevaluated = [r.path for r in runs if r.status == "missing" and r.trained]
    if unevaluated:  # bireco-eval writes into its own Hydra folder unless told where
        log.warning(
            "%d finished run(s) have no %s/%s, e.g. %s: bireco-eval run_dir=RUN hydra.run.dir=RUN/%s writes it there",
            len(unevaluated),
            eval_subdir,
            SUMMARY_FILE,
            unevaluated[0],
            eval_subdir,
        )
    have = {(r.model, r.pipeline) for r in runs}
    for spec in expect:
        model, sep, pipeline = spec.partition(":")
        if not sep or not model or not pipeline:
            raise TableInputError(f"--expect takes MODEL:PIPELINE, got '{spec}'")
        if (model, pipeline) not in have:
            runs.append(RunRecord(model, pipeline, "missing", "no run directory"))
    return runs


def select_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """One record per (model, pipeline, seed), in table order: the newest ok run, else newest failed, else missing."""
    rank = {"ok": 0, "failed": 1, "missing": 2}
    groups: dict[tuple[str, str, int | None], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.model, r.pipeline, r.seed), []).append(r)
    chosen = []
    for (model, pipeline, seed), group in groups.items():
        group.sort(key=lambda r: (rank[r.status], -(r.path.stat().st_mtime if r.path else 0.0)))
        best = group[0]
        if len(group) > 1:
            others = ", ".join(f"{o.status} {o.path}" for o in group[1:])
            log.warning(
                "%s:%s seed %s has %d runs; using %s (others: %s)",
                model,
                pipeline,
                seed,
                len(group),
                best.path,
                others,
            )
            note = f"newest {best.status} of {len(group)} runs"
            best = replace(best, reason=f"{best.reason}; {note}" if best.reason else note)
        chosen.append(best)
    return sorted(chosen, key=lambda r: (*_order(r.model, r.pipeline), r.seed if r.seed is not None else -1))


def _order(model: str, pipeline: str) -> tuple:
    m = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    p = PIPELINE_ORDER.index(pipeline) if pipeline in PIPELINE_ORDER else len(PIPELINE_ORDER)
    return m, model, p, pipeline
