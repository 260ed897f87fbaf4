"""`bireco-table`: the paper's results table (MTEB category means) from run and sweep directories, plus plots.

    bireco-table runs/multirun runs/llama3.2-1b --out runs/table --expect llama3.1-8b:bireco

Runs of the same (model, pipeline) with different seeds make one row: mean ± sd over the seeds that finished, with
n; seeds another pipeline of that model has but this one lacks are listed, never dropped silently, and one seed is
labelled as one seed. A (model, pipeline) with no finished seed is a row with the reason (failed / missing), so a
table never looks complete when it is not. Each pipeline gets a Δ against the baseline with a paired 95% interval
(seeds and the category's tasks resampled; † marks an interval that includes 0). Rows that the paper reports get
the paper's numbers underneath (`bireco/results/paper_table.csv`) and the difference.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from bireco.results.stats import PairedDelta, paired_bootstrap, spread
from bireco.runs import CONFIG_FILE, FAILED_FILE, RESULTS_FILE, SUMMARY_FILE, Run, find_runs
from bireco.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# mteb task type (summary.json's categories) -> the paper's column
_TYPES = ["Retrieval", "Reranking", "Clustering", "PairClassification", "Classification", "STS", "Summarization"]
CATEGORIES = dict(zip(_TYPES, ["Retr", "Rerank", "Clust", "PairCls", "Class", "STS", "Summ"], strict=True))
COLUMNS = [*CATEGORIES.values(), "Avg"]
MODEL_ORDER = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]
PIPELINE_ORDER = ["baseline", "bireco", "baseline_budget", "anchor_control", "only_q2d", "only_d2q", "stage1_only"]
DEFAULT_PAPER_TABLE = Path(__file__).resolve().parent / "results" / "paper_table.csv"  # package data: wheels too
LABELS = {"paper": "↳ paper", "ours_minus_paper": "↳ ours − paper"}
TEX_LABELS = {"paper": "paper", "ours_minus_paper": "ours $-$ paper"}
INCLUDES_ZERO = "†"

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
        return RunRecord(model, pipeline, "missing", reason, run_dir, seed=seed)
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
            raise FileNotFoundError(f"{p}: no such run or sweep directory")
        found = find_run_dirs(Path(p))
        if not found:
            log.warning("%s: no run directory found (looked for run folders up to 3 levels down)", p)
        dirs.update({d.resolve(): None for d in found})
    runs = [_read_run_safely(d, eval_subdir) for d in dirs]
    have = {(r.model, r.pipeline) for r in runs}
    for spec in expect:
        model, sep, pipeline = spec.partition(":")
        if not sep or not model or not pipeline:
            raise ValueError(f"--expect takes MODEL:PIPELINE, got '{spec}'")
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


def load_paper_table(path: str | Path = DEFAULT_PAPER_TABLE) -> dict[tuple[str, str], Scores]:
    """The paper's reported numbers by (model, pipeline); blank cells are None (not reported)."""
    path = Path(path)
    if not path.is_file():
        log.warning("%s not found: the table has no paper rows", path)
        return {}
    with path.open(newline="") as f:
        return {
            (r["model"], r["pipeline"]): {c: float(r[c]) if r.get(c) else None for c in COLUMNS}
            for r in csv.DictReader(f)
        }


def _order(model: str, pipeline: str) -> tuple:
    m = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    p = PIPELINE_ORDER.index(pipeline) if pipeline in PIPELINE_ORDER else len(PIPELINE_ORDER)
    return m, model, p, pipeline


def _diff(a: Scores, b: Scores) -> Scores:
    return {c: a[c] - b[c] if a.get(c) is not None and b.get(c) is not None else None for c in COLUMNS}


def _task_units(r: RunRecord, col: str) -> dict[str, float]:
    """Task -> score of the tasks behind one column (all tasks for Avg): the units a Δ interval resamples."""
    return {t: v for t, (c, v) in r.tasks.items() if col == "Avg" or c == col}


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
            # seeds and the column's tasks (one seed and one task leave nothing to resample: no interval)
            delta = {c: _mean_diff(pairs, c) for c in COLUMNS}
            intervals = {c: paired_delta(ok, base, c) for c in COLUMNS}
            intervals = {c: d if d is not None and d.seeds * d.units > 1 else None for c, d in intervals.items()}
            label = f"Δ {pipeline} − baseline"
            note = f"paired over {len(common)} seed{'s' if len(common) != 1 else ''} and the tasks"
            rows.append(Row("delta", model, label, delta, note, intervals=intervals, seeds=common))
    return rows


def _num(v: float | None, signed: bool, minus: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = round(v, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not signed or v == 0:
        return f"{v:.2f}"
    return f"{v:+.2f}".replace("-", minus)


def _cells(row: Row, minus: str = "-", pm: str = "±", dagger: str = INCLUDES_ZERO) -> list[str]:
    """Numbers of one row: mean ± sd for our rows, Δ [interval] (dagger: includes 0) for deltas."""
    out = []
    for c in COLUMNS:
        v = row.values.get(c)
        cell = _num(v, row.kind in ("delta", "ours_minus_paper"), minus)
        if row.kind == "ours" and row.sd.get(c) is not None:
            cell += f" {pm} {_num(row.sd[c], False)}"
        d = row.intervals.get(c)
        if row.kind == "delta" and d is not None:
            cell += f" [{_num(d.low, True, minus)}, {_num(d.high, True, minus)}]" + (dagger if d.includes_zero else "")
        out.append(cell)
    return out


LEGEND = (
    "mean ± sd over seeds; Δ = pipeline − baseline with a paired 95% bootstrap interval (seeds, then the column's "
    f"tasks, resampled); {INCLUDES_ZERO} the interval includes 0."
)


def _note(row: Row) -> str:
    return f"{row.kind}: {row.reason}" if row.kind in ("missing", "failed") else row.reason


def _head(row: Row, labels: dict[str, str], esc: Callable[[str], str]) -> list[str]:
    """Model and pipeline cells; derived rows leave the model blank and name themselves in the pipeline cell."""
    if row.kind == "delta":
        return ["", esc(row.pipeline)]
    return ["", labels[row.kind]] if row.kind in labels else [esc(row.model), esc(row.pipeline)]


def _md_escape(s: str) -> str:
    return " ".join(s.split()).replace("|", r"\|")


def render_markdown(rows: list[Row], title: str | None = None) -> str:
    """GitHub Markdown: the table to paste into the README / issue, derived rows labelled in the pipeline cell."""
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| model | pipeline | " + " | ".join(COLUMNS) + " | note |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for row in rows:
        cells = [*_head(row, LABELS, _md_escape), *_cells(row), _md_escape(_note(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", LEGEND]) + "\n"


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters in free text (model names, reasons)."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
    table |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--"}
    table |= {"−": "$-$", "Δ": r"$\Delta$", "↳": "", "±": r"$\pm$", "†": r"$^\dagger$"}
    return "".join(table.get(ch, ch) for ch in s)


def render_latex(rows: list[Row], title: str | None = None) -> str:
    """booktabs tabular (needs \\usepackage{booktabs}); a rule between models."""
    lines = [f"% {latex_escape(title)}"] if title else []
    lines += [r"\begin{tabular}{ll" + "r" * len(COLUMNS) + "l}", r"\toprule"]
    lines.append(" & ".join(["Model", "Pipeline", *COLUMNS, "Note"]) + r" \\")
    lines.append(r"\midrule")
    prev = None
    for row in rows:
        if prev is not None and row.model != prev:
            lines.append(r"\midrule")
        prev = row.model
        cells = [latex_escape(c) for c in _cells(row, minus="−", pm="±", dagger="†")]
        note = latex_escape(" ".join(_note(row).split()))
        lines.append(" & ".join([*_head(row, TEX_LABELS, latex_escape), *cells, note]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    """One line per row (derived rows included); numbers with 2 decimals, blank where there is none."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")

    def num(v: float | None) -> str:
        return "" if v is None else f"{round(v, 2) + 0.0:.2f}"

    w.writerow(
        [
            "kind",
            "model",
            "pipeline",
            "n_seeds",
            "seeds",
            *COLUMNS,
            *(f"{c}_sd" for c in COLUMNS),
            *(f"{c}_lo" for c in COLUMNS),
            *(f"{c}_hi" for c in COLUMNS),
            "reason",
            "run_dir",
        ]
    )
    for row in rows:
        ivs = [row.intervals.get(c) for c in COLUMNS]
        w.writerow(
            [
                row.kind,
                row.model,
                row.pipeline,
                len(row.seeds) if row.seeds else "",
                " ".join(map(str, row.seeds)),
                *(num(row.values.get(c)) for c in COLUMNS),
                *(num(row.sd.get(c)) for c in COLUMNS),
                *(num(d.low if d else None) for d in ivs),
                *(num(d.high if d else None) for d in ivs),
                " ".join(row.reason.split()),
                row.run_dir,
            ]
        )
    return buf.getvalue()


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning CSVLogger file -> metric -> [(step, value)], skipping the empty cells of its sparse rows.

    A stage resumed after a kill logs the steps after its checkpoint again: the last row of a step wins.
    """
    series: dict[str, dict[float, float]] = {}
    with path.open(newline="") as f:
        for rec in csv.DictReader(f):
            if not rec.get("step"):
                continue
            for k, v in rec.items():
                if k not in ("step", "epoch") and v not in (None, ""):
                    series.setdefault(k, {})[float(rec["step"])] = float(v)
    return {k: sorted(v.items()) for k, v in series.items()}


def read_probe(path: Path) -> list[dict]:
    """probe.jsonl records (the convergence curve), in step order; the last record of a step wins (resumes)."""
    by_step = {r["step"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}
    return [by_step[s] for s in sorted(by_step)]


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    log.info("wrote %s", path)


def _figure(n_panels: int, width: float = 5.0):
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in headless jobs

    fig = Figure(figsize=(width * n_panels, 3.6), layout="constrained")
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def plot_delta(rows: list[Row], paper: dict[tuple[str, str], Scores], out: Path) -> Path | None:
    """Grouped bars of Δ bireco − baseline per category, one group per model; crosses mark the paper's Δ."""
    deltas = [r for r in rows if r.kind == "delta"]
    if not deltas:
        log.info("no model has both a baseline and a bireco result: skipping delta_by_category.png")
        return None
    fig, (ax,) = _figure(1, width=max(6.0, 2.2 * len(deltas)))
    width, ref_pts = 0.8 / len(COLUMNS), []
    for j, col in enumerate(COLUMNS):
        xs = [i + (j - (len(COLUMNS) - 1) / 2) * width for i in range(len(deltas))]
        ax.bar(xs, [r.values[col] or 0.0 for r in deltas], width, label=col, color=f"C{j}")
        refs = [_diff(paper.get((r.model, "bireco"), {}), paper.get((r.model, "baseline"), {}))[col] for r in deltas]
        ref_pts += [(x, v) for x, v in zip(xs, refs, strict=True) if v is not None]
    if ref_pts:
        ax.plot(*zip(*ref_pts, strict=True), "kx", markersize=5, linestyle="none", label="paper")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(deltas)), [r.model for r in deltas])
    ax.set_ylabel("Δ score (bireco − baseline)")
    ax.set_title("Stage I gain per MTEB category")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = out / "delta_by_category.png"
    _save(fig, path)
    return path


def _stage_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    """(stage name, folder) in pipeline order."""
    return [(s.name, s.path) for s in Run(run_dir).stages()]


def plot_curves(run: RunRecord, out: Path) -> Path | None:
    """Training curves of one run: Stage I loss terms and anchor gain, then each other stage's loss."""
    panels = []  # (title, {label: series})
    for stage, d in _stage_dirs(run.path) if run.path else []:
        f = d / "logs" / "metrics.csv"
        if not f.is_file():
            continue
        m = read_metrics_csv(f)
        if stage == "reconstruction":
            panels.append((f"{stage}: loss", {k: m[k] for k in ("train/loss_q2d", "train/loss_d2q") if k in m}))
            panels.append((f"{stage}: anchor gain", {k: m[k] for k in ("val/anchor_gain",) if k in m}))
        else:
            panels.append((f"{stage}: loss", {k: m[k] for k in ("train/loss", "val/loss") if k in m}))
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    fig, axes = _figure(len(panels), width=4.5)
    for ax, (title, series) in zip(axes, panels, strict=True):
        for label, pts in series.items():
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 30 else None, label=label)
        ax.set(title=title, xlabel="step (within stage)")
        ax.legend(fontsize="small")
    fig.suptitle(f"{run.model} / {run.pipeline}")
    path = out / f"curves_{run.model}_{run.pipeline}.png"
    _save(fig, path)
    return path


def plot_convergence(runs: list[RunRecord], out: Path) -> Path | None:
    """Probe recall@1 and MRR@10 vs Stage II step, one line per run: does Stage I make Stage II converge faster?"""
    lines = []
    for r in runs:
        stages = [d for name, d in _stage_dirs(r.path) if name == "contrastive"] if r.path else []
        if stages and (stages[-1] / "probe.jsonl").is_file() and (recs := read_probe(stages[-1] / "probe.jsonl")):
            lines.append((f"{r.model} / {r.pipeline}", recs))
    if not lines:
        log.info("no contrastive-stage probe.jsonl found: skipping convergence.png")
        return None
    fig, axes = _figure(2)
    for ax, metric in zip(axes, ("recall@1", "mrr@10"), strict=True):
        for label, recs in lines:
            pts = [(x["step"], x[metric]) for x in recs if metric in x]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=label)
        ax.set(title=f"probe {metric}", xlabel="Stage II step")
        ax.legend(fontsize="small")
    path = out / "convergence.png"
    _save(fig, path)
    return path


def plot_dims(runs: list[RunRecord], out: Path, eval_subdir: str = "eval") -> Path | None:
    """Average score vs embedding width (Matryoshka: `eval.dims`), one line per run that evaluated widths."""
    lines = []
    for r in runs:
        summary = r.path / eval_subdir / SUMMARY_FILE if r.path else None
        if summary is None or not summary.is_file():
            continue
        dims = json.loads(summary.read_text()).get("dims") or {}
        pts = sorted((int(d), s["average"]) for d, s in dims.items() if s.get("average") is not None)
        if pts:
            lines.append((f"{r.model} / {r.pipeline}" + (f" / seed {r.seed}" if r.seed is not None else ""), pts))
    if not lines:
        return None
    fig, (ax,) = _figure(1)
    for label, pts in lines:
        ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set(title="score vs embedding width", xlabel="dimensions (leading, re-normalised)", ylabel="average")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize="small")
    path = out / "score_by_dims.png"
    _save(fig, path)
    return path


def plot_reconstruction(runs: list[RunRecord], out: Path) -> Path | None:
    """Reconstruction F1 after each stage (solid) and its shuffled-embedding control (dashed), per direction."""
    from bireco.report import reconstruction_scores

    found = [(f"{r.model} / {r.pipeline}", sc) for r in runs if r.path and (sc := reconstruction_scores(r.path))]
    if not found:
        return None
    order = ["warmup", "reconstruction", "contrastive"]  # a shared x axis: baseline runs skip Stage I
    order += sorted({stage for _, sc in found for stage, _ in sc} - set(order))
    fig, axes = _figure(2)
    for ax, direction in zip(axes, ("q2d", "d2q"), strict=True):
        for j, (label, scores) in enumerate(found):
            xs = [order.index(stage) for stage, _ in scores]
            ax.plot(xs, [s[direction]["f1"] for _, s in scores], marker="o", color=f"C{j}", label=label)
            ax.plot(xs, [s[direction]["f1_shuffled"] for _, s in scores], linestyle="--", color=f"C{j}")
        ax.set_xticks(range(len(order)), order)
        ax.set(title=f"{direction} reconstruction F1 (dashed: shuffled)", xlabel="after stage", ylim=(0, 1))
        ax.legend(fontsize="small")
    path = out / "reconstruction.png"
    _save(fig, path)
    return path


def write_table(
    paths: Sequence[str | Path],
    out: str | Path,
    expect: Sequence[str] = (),
    title: str | None = None,
    paper_table: str | Path = DEFAULT_PAPER_TABLE,
    eval_subdir: str = "eval",
) -> str:
    """Collect, build, write table.{md,tex,csv} and plots/ into `out`; returns the Markdown."""
    out = Path(out)
    runs = select_runs(collect_runs(paths, expect, eval_subdir))
    paper = load_paper_table(paper_table)
    rows = build_rows(runs, paper)
    md = render_markdown(rows, title)
    atomic_write_text(out / "table.md", md)
    atomic_write_text(out / "table.tex", render_latex(rows, title))
    atomic_write_text(out / "table.csv", render_csv(rows))
    plots = out / "plots"
    plot_delta(rows, paper, plots)
    for r in runs:
        plot_curves(r, plots)
    plot_convergence(runs, plots)
    plot_dims(runs, plots, eval_subdir)
    if plot_reconstruction(runs, plots):
        from bireco.report import reconstruction_scores, reconstruction_table

        recon = [(f"{r.model} / {r.pipeline}", reconstruction_scores(r.path)) for r in runs if r.path]
        atomic_write_text(out / "reconstruction.md", reconstruction_table(recon) + "\n")
    return md


def main(argv: list[str] | None = None) -> None:
    """`bireco-table RUNS... --out DIR [--expect MODEL:PIPELINE ...] [--title ...]`."""
    ap = argparse.ArgumentParser(prog="bireco-table", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories and/or sweep directories (searched 3 levels deep)")
    ap.add_argument("--out", required=True, help="folder for table.md, table.tex, table.csv and plots/")
    ap.add_argument("--expect", action="append", default=[], metavar="MODEL:PIPELINE", help="row that must appear")
    ap.add_argument("--title", default=None)
    ap.add_argument("--paper-table", default=str(DEFAULT_PAPER_TABLE), help="the paper's numbers (CSV)")
    ap.add_argument("--eval-subdir", default="eval", help="where a run's mteb summary.json is, inside the run")
    ap.add_argument("--wandb-project", default=None, help="also log the table and plots to wandb (artifact)")
    ap.add_argument("--wandb-group", default=None, help="wandb group (the sweep's), default: the --out name")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = write_table(args.runs, args.out, args.expect, args.title, args.paper_table, args.eval_subdir)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"bireco-table: {e}") from e
    if args.wandb_project:
        log_table_to_wandb(Path(args.out), args.wandb_project, args.wandb_group or Path(args.out).name)
    print(md, end="")


def log_table_to_wandb(out: Path, project: str, group: str) -> None:
    """The table (as a wandb Table and files) and the plots, as one artifact of a `table` run in the group."""
    import wandb

    from bireco.utils.tracking import wandb_mode

    run = wandb.init(
        project=project, group=group, name=f"{group}/table", job_type="table", dir=str(out), mode=wandb_mode(None)
    )
    with open(out / "table.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    run.log({"table": wandb.Table(columns=rows[0], data=rows[1:])})
    run.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted((out / "plots").glob("*.png"))})
    artifact = wandb.Artifact(f"{group}-table", type="results-table")
    for name in ("table.md", "table.tex", "table.csv"):
        artifact.add_file(str(out / name))
    if (out / "plots").is_dir():
        artifact.add_dir(str(out / "plots"), name="plots")
    run.log_artifact(artifact)
    run.finish()


if __name__ == "__main__":
    main()
