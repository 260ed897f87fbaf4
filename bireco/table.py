"""`bireco-table`: the paper's results table (MTEB category means) from run and sweep directories, plus plots.

    bireco-table runs/multirun runs/llama3.2-1b --out runs/table --expect llama3.1-8b:bireco

Every run directory found becomes a row; a run that failed or has no mteb summary yet is a row with the reason, so
a table never looks complete when it is not. Rows that the paper reports get the paper's numbers underneath
(`experiments/paper_table.csv`) and the difference.
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

from bireco.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# mteb task type (summary.json's categories) -> the paper's column
_TYPES = ["Retrieval", "Reranking", "Clustering", "PairClassification", "Classification", "STS", "Summarization"]
CATEGORIES = dict(zip(_TYPES, ["Retr", "Rerank", "Clust", "PairCls", "Class", "STS", "Summ"], strict=True))
COLUMNS = [*CATEGORIES.values(), "Avg"]
MODEL_ORDER = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]
PIPELINE_ORDER = ["baseline", "bireco", "only_q2d", "only_d2q", "stage1_only"]
RUN_MARKERS = ("config.yaml", "results.json", "failed.json")
DEFAULT_PAPER_TABLE = Path(__file__).resolve().parents[1] / "experiments" / "paper_table.csv"
LABELS = {"paper": "↳ paper", "ours_minus_paper": "↳ ours − paper", "delta": "Δ bireco − baseline"}
TEX_LABELS = {"paper": "paper", "ours_minus_paper": "ours $-$ paper", "delta": r"$\Delta$ bireco $-$ baseline"}

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


@dataclass
class Row:
    """One table line; `kind` says whether it is a run (ours/missing/failed) or derived (delta/paper/diff)."""

    kind: str
    model: str
    pipeline: str
    values: Scores
    reason: str = ""
    run_dir: str = ""


def find_run_dirs(root: Path, max_depth: int = 3) -> list[Path]:
    """Folders holding a run marker, `root` included; never descends into a run (its `eval/`, `.hydra/` ...)."""
    if any((root / m).is_file() for m in RUN_MARKERS):
        return [root]
    if max_depth == 0 or not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += find_run_dirs(child, max_depth - 1)
    return found


def _names(run_dir: Path) -> tuple[str, str, list[str]]:
    """(model, pipeline, stages) from results.json, else config.yaml; the folder name when neither says."""
    if (run_dir / "results.json").is_file():
        r = json.loads((run_dir / "results.json").read_text())
        return r["model"], r["pipeline"], list(r.get("stages") or [])
    if (run_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        model, pipe = cfg.get("model") or {}, cfg.get("pipeline") or {}
        return model.get("name", "?"), pipe.get("name", run_dir.name), list(pipe.get("stages") or [])
    return "?", run_dir.name, []


def read_run(run_dir: Path, eval_subdir: str = "eval") -> RunRecord:
    """Status and scores of one run folder; the newer of a summary and a failure marker decides."""
    model, pipeline, stages = _names(run_dir)
    summary, failed = run_dir / eval_subdir / "summary.json", run_dir / "failed.json"
    if failed.is_file() and not (summary.is_file() and summary.stat().st_mtime >= failed.stat().st_mtime):
        f = json.loads(failed.read_text())
        where = f" (stage {f['stage']})" if f.get("stage") else ""
        return RunRecord(model, pipeline, "failed", f"{f.get('error', 'no error message')}{where}", run_dir)
    if summary.is_file():
        s = json.loads(summary.read_text())
        scores: Scores = {col: s.get("categories", {}).get(cat) for cat, col in CATEGORIES.items()}
        scores["Avg"] = s.get("average")
        return RunRecord(model, pipeline, "ok", "", run_dir, scores)
    if (run_dir / "results.json").is_file():
        return RunRecord(model, pipeline, "missing", f"no {eval_subdir}/summary.json (training finished)", run_dir)
    done = sum(1 for p in (run_dir / "stages").glob("*/stage_done.json"))
    progress = f"; {done}/{len(stages)} stages done" if stages else ""
    return RunRecord(model, pipeline, "missing", f"no results.json (training did not finish{progress})", run_dir)


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
            log.warning("%s: no run directory found (looked for %s up to 3 levels down)", p, ", ".join(RUN_MARKERS))
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
    """One record per (model, pipeline), in table order: the newest ok run, else newest failed, else missing."""
    rank = {"ok": 0, "failed": 1, "missing": 2}
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.model, r.pipeline), []).append(r)
    chosen = []
    for (model, pipeline), group in groups.items():
        group.sort(key=lambda r: (rank[r.status], -(r.path.stat().st_mtime if r.path else 0.0)))
        best = group[0]
        if len(group) > 1:
            others = ", ".join(f"{o.status} {o.path}" for o in group[1:])
            log.warning("%s:%s has %d runs; using %s (others: %s)", model, pipeline, len(group), best.path, others)
            note = f"newest {best.status} of {len(group)} runs"
            best = replace(best, reason=f"{best.reason}; {note}" if best.reason else note)
        chosen.append(best)
    return sorted(chosen, key=lambda r: _order(r.model, r.pipeline))


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


def build_rows(runs: list[RunRecord], paper: dict[tuple[str, str], Scores]) -> list[Row]:
    """The table, in the paper's order: each run, its paper row and difference, then Δ bireco − baseline."""
    runs = select_runs(runs)
    by_key = {(r.model, r.pipeline): r for r in runs}
    rows: list[Row] = []
    for r in runs:
        kind = "ours" if r.status == "ok" else r.status
        values = {c: r.scores.get(c) for c in COLUMNS}
        rows.append(Row(kind, r.model, r.pipeline, values, r.reason, str(r.path or "")))
        if (r.model, r.pipeline) in paper:
            ref = paper[(r.model, r.pipeline)]
            rows.append(Row("paper", r.model, r.pipeline, ref))
            if r.status == "ok":
                rows.append(Row("ours_minus_paper", r.model, r.pipeline, _diff(values, ref)))
        base = by_key.get((r.model, "baseline"))
        if r.pipeline == "bireco" and r.status == "ok" and base is not None and base.status == "ok":
            rows.append(Row("delta", r.model, "bireco-baseline", _diff(r.scores, base.scores)))
    return rows


def _num(v: float | None, signed: bool, minus: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = round(v, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not signed or v == 0:
        return f"{v:.2f}"
    return f"{v:+.2f}".replace("-", minus)


def _cells(row: Row, minus: str = "-") -> list[str]:
    return [_num(row.values.get(c), row.kind in ("delta", "ours_minus_paper"), minus) for c in COLUMNS]


def _note(row: Row) -> str:
    return f"{row.kind}: {row.reason}" if row.kind in ("missing", "failed") else row.reason


def _head(row: Row, labels: dict[str, str], esc: Callable[[str], str]) -> list[str]:
    """Model and pipeline cells; derived rows leave the model blank and name themselves in the pipeline cell."""
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
    return "\n".join(lines) + "\n"


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters in free text (model names, reasons)."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
    table |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--"}
    table |= {"−": "$-$", "Δ": r"$\Delta$", "↳": ""}
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
        cells = [latex_escape(c) for c in _cells(row, minus="−")]
        note = latex_escape(" ".join(_note(row).split()))
        lines.append(" & ".join([*_head(row, TEX_LABELS, latex_escape), *cells, note]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    """One line per row (derived rows included); numbers with 2 decimals, blank where there is none."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "model", "pipeline", *COLUMNS, "reason", "run_dir"])
    for row in rows:
        nums = ["" if row.values.get(c) is None else f"{round(row.values[c], 2) + 0.0:.2f}" for c in COLUMNS]
        w.writerow([row.kind, row.model, row.pipeline, *nums, " ".join(row.reason.split()), row.run_dir])
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
    """(stage name, folder) in pipeline order, from `stages/<i>-<name>`."""
    dirs = [d for d in (run_dir / "stages").glob("*-*") if d.is_dir() and d.name.split("-", 1)[0].isdigit()]
    return [(d.name.split("-", 1)[1], d) for d in sorted(dirs, key=lambda d: int(d.name.split("-", 1)[0]))]


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
