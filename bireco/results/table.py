"""The paper's results table as rows: per (model, pipeline) its seeds' mean ± sd, the paper's numbers and the
difference, and a Δ against the baseline with a paired interval. Rendering is `bireco.results.render`.

Runs of the same (model, pipeline) with different seeds make one row: mean ± sd over the seeds that finished, with
n; seeds another pipeline of that model has but this one lacks are listed, never dropped silently, and one seed is
labelled as one seed. A (model, pipeline) with no finished seed is a row with the reason (failed / missing), so a
table never looks complete when it is not. Each pipeline gets a Δ against the baseline with a paired 95% interval
(seeds and the category's tasks resampled; † marks an interval that includes 0). Rows that the paper reports get
the paper's numbers underneath (`bireco/results/paper_table.csv`) and the difference.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bireco.results.records import COLUMNS, RunRecord, Scores, TableInputError, select_runs
from bireco.results.stats import PairedDelta, paired_bootstrap, spread

log = logging.getLogger(__name__)

DEFAULT_PAPER_TABLE = Path(__file__).resolve().parent / "paper_table.csv"  # package data: wheels too


@dataclass
class Row:
    """One table line; `kind` says whether it is a run (ours/missing/failed) or derived (delta/paper/diff)."""

    kind: str
    model: str
    pipeline: str
    values: Scores
    reason: str = ""
    run_dir: str = ""
    sd: Scores = field(default_factory=dict)  # ours rows: sample sd over seeds (None for one seed)
    intervals: dict[str, PairedDelta | None] = field(default_factory=dict)  # delta rows: paired 95% interval
    seeds: list[int] = field(default_factory=list)


PAPER_COLUMNS = ["model", "pipeline", *COLUMNS]  # the paper table's header (`experiments/README.md`)


def load_paper_table(path: str | Path = DEFAULT_PAPER_TABLE) -> dict[tuple[str, str], Scores]:
    """The paper's reported numbers by (model, pipeline); blank cells are None (not reported).

    An absent file is a table without paper rows (a warning). A file that is not such a CSV (a column of
    `PAPER_COLUMNS` missing, a cell that is not a number, not UTF-8 text) raises `TableInputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        log.warning("%s not found: the table has no paper rows", path)
        return {}
    table: dict[tuple[str, str], Scores] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise TableInputError(f"{path}: not the paper table's CSV: the file is empty")
            missing = [c for c in PAPER_COLUMNS if c not in reader.fieldnames]
            if missing == PAPER_COLUMNS:
                raise TableInputError(f"{path}: not the paper table's CSV: no header {','.join(PAPER_COLUMNS)}")
            if missing:
                raise TableInputError(f"{path}: not the paper table's CSV: the header lacks {', '.join(missing)}")
            for r in reader:
                table[(r["model"], r["pipeline"])] = {c: _paper_cell(path, reader.line_num, c, r[c]) for c in COLUMNS}
    except UnicodeDecodeError as e:
        raise TableInputError(f"{path}: not the paper table's CSV: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise TableInputError(f"{path}: not the paper table's CSV: {e}") from None
    return table


def _paper_cell(path: Path, line: int, column: str, cell: str | None) -> float | None:
    """One number of the paper table; blank (or absent in a short line) = not reported."""
    if not cell or not cell.strip():
        return None
    try:
        return float(cell)
    except ValueError:
        raise TableInputError(f"{path}, line {line}: {column} is '{cell}', not a number") from None


def _diff(a: Scores, b: Scores) -> Scores:
    return {c: a[c] - b[c] if a.get(c) is not None and b.get(c) is not None else None for c in COLUMNS}


def _task_units(r: RunRecord, col: str) -> dict[str, float]:
    """Task -> score of the tasks behind one column (all tasks for Avg): the units a Δ interval resamples."""
    return {t: v for t, (c, v) in r.tasks.items() if col == "Avg" or c == col}


# seed × task pairs below which a Δ shows no interval (2 seeds × 1 task "resampled" is only their two differences)
MIN_PAIRS = 5


def paired_delta(a: list[RunRecord], b: list[RunRecord], col: str) -> PairedDelta | None:
    """a − b on one column, paired over the seeds both have and the tasks both evaluated; None = no pair.

    One seed and one task leave nothing to resample: then the point value only (interval None upstream)."""
    by_a, by_b = {r.seed: r for r in a}, {r.seed: r for r in b}
    ua, ub = {}, {}
    for seed in set(by_a) & set(by_b):
        ta, tb = _task_units(by_a[seed], col), _task_units(by_b[seed], col)
        common = sorted(set(ta) & set(tb))
        if common:
            ua[seed], ub[seed] = [ta[t] for t in common], [tb[t] for t in common]
    return paired_bootstrap(ua, ub) if ua else None


def _mean_diff(pairs: list[tuple[RunRecord, RunRecord]], col: str) -> float | None:
    diffs = [
        a.scores[col] - b.scores[col]
        for a, b in pairs
        if a.scores.get(col) is not None and b.scores.get(col) is not None
    ]
    return sum(diffs) / len(diffs) if diffs else None


def _seed_note(ok: list[RunRecord], others: list[RunRecord], expected: list[int]) -> str:
    """Which seeds the row averages, and which expected seeds it lacks (and why)."""
    seeds = sorted(r.seed for r in ok if r.seed is not None)
    note = f"one seed ({seeds[0]})" if len(seeds) == 1 else f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"
    lacking = [s for s in expected if s not in seeds]
    if lacking:
        status = {r.seed: r.status for r in others}
        note += "; missing seeds " + ", ".join(f"{s} ({status.get(s, 'no run')})" for s in lacking)
    reasons = sorted({r.reason for r in ok if r.reason})
    return "; ".join([note, *reasons])


def build_rows(runs: list[RunRecord], paper: dict[tuple[str, str], Scores]) -> list[Row]:
    """The table, in the paper's order: per (model, pipeline) its seeds' mean ± sd, its paper row and
    difference, and its Δ against the baseline (paired interval)."""
    runs = select_runs(runs)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.model, r.pipeline), []).append(r)
    expected = {
        m: sorted({r.seed for r in runs if r.model == m and r.seed is not None}) for m in {r.model for r in runs}
    }
    ok_by_key = {k: [r for r in g if r.status == "ok"] for k, g in groups.items()}
    rows: list[Row] = []
    for (model, pipeline), group in groups.items():
        ok = ok_by_key[(model, pipeline)]
        if ok:
            stats = {c: spread([r.scores.get(c) for r in ok if r.scores.get(c) is not None]) for c in COLUMNS}
            values = {c: None if st is None else st.mean for c, st in stats.items()}
            sd = {c: None if st is None else st.sd for c, st in stats.items()}
            paths = ";".join(str(r.path) for r in ok if r.path)
            note = _seed_note(ok, [r for r in group if r.status != "ok"], expected[model])
            seeds = sorted(r.seed for r in ok if r.seed is not None)
            rows.append(Row("ours", model, pipeline, values, note, paths, sd, seeds=seeds))
        else:
            best = group[0]
            seeds = f" (seed {best.seed})" if best.seed is not None and len(group) == 1 else ""
            rows.append(Row(best.status, model, pipeline, {}, best.reason + seeds, str(best.path or "")))
            values = {}
        if (model, pipeline) in paper:
            ref = paper[(model, pipeline)]
            rows.append(Row("paper", model, pipeline, ref))
            if ok:
                rows.append(Row("ours_minus_paper", model, pipeline, _diff(values, ref)))
        base = ok_by_key.get((model, "baseline"))
        if pipeline != "baseline" and ok and base:
            common = sorted({r.seed for r in ok} & {r.seed for r in base} - {None})
            pairs = [(a, b) for a in ok for b in base if a.seed == b.seed]
            # the point is the difference of the row means over the common seeds; the interval resamples their
            # seeds and the column's tasks; from fewer than MIN_PAIRS seed × task pairs a percentile bootstrap is
            # only the range of those few differences, so no interval is shown
            delta = {c: _mean_diff(pairs, c) for c in COLUMNS}
            intervals = {c: paired_delta(ok, base, c) for c in COLUMNS}
            intervals = {
                c: d if d is not None and d.seeds * d.units >= MIN_PAIRS else None for c, d in intervals.items()
            }
            label = f"Δ {pipeline} − baseline"
            note = f"paired over {len(common)} seed{'s' if len(common) != 1 else ''} and the tasks"
            rows.append(Row("delta", model, label, delta, note, intervals=intervals, seeds=common))
    return rows
