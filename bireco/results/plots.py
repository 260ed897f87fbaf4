"""The plots next to the table: Δ per category, training curves, convergence, score vs width, reconstruction F1.

Figures are built on matplotlib's Agg canvas (no pyplot state: safe in headless jobs) and written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from bireco.results.compare import SeedRun
from bireco.results.reconstruction import reconstruction_scores
from bireco.results.records import COLUMNS, RunRecord, Scores
from bireco.results.table import Row, _diff
from bireco.runs import SUMMARY_FILE, Run
from bireco.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


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
            gains = ("train/anchor_gain", "val/anchor_gain")  # training batches (the stop reads it), held-out pairs
            panels.append((f"{stage}: anchor gain", {k: m[k] for k in gains if k in m}))
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


def plot_seed_curves(runs: dict[str, dict[int, SeedRun]], out: Path) -> Path | None:
    """The demo's curves over seeds, one line per run and one colour per pipeline: Stage I's anchor gain on the
    training batches (where its stop reads it; held-out `val/anchor_gain` when not logged) and the last stage's
    retrieval probe (MRR@10).

    Args:
        runs: pipeline -> seed -> `bireco.results.compare.SeedRun` (`compare.collect`).
        out: the PNG to write.

    Returns:
        `out`, or None when no run logged either curve (nothing is written).
    """
    gains, probes = {}, {}  # (pipeline, seed) -> [(step, value)]
    for pipeline, by_seed in runs.items():
        for seed, run in by_seed.items():
            stages = Run(run.path).stages()
            stage1 = next((st.file("logs/metrics.csv") for st in stages if st.name == "reconstruction"), None)
            if stage1 is not None and stage1.is_file():
                m = read_metrics_csv(stage1)
                if pts := m.get("train/anchor_gain") or m.get("val/anchor_gain"):
                    gains[pipeline, seed] = pts
            probe = stages[-1].file("probe.jsonl") if stages else None
            if probe is not None and probe.is_file():
                probes[pipeline, seed] = [(r["step"], r["mrr@10"]) for r in read_probe(probe) if "mrr@10" in r]
    panels = [
        (t, s) for t, s in (("Stage I: anchor gain (nats/token)", gains), ("last stage: probe MRR@10", probes)) if s
    ]
    if not panels:
        return None
    colour = {p: f"C{i}" for i, p in enumerate(runs)}
    fig, axes = _figure(len(panels), width=5.0)
    for ax, (title, series) in zip(axes, panels, strict=True):
        labelled = set()
        for (pipeline, _seed), pts in sorted(series.items()):
            label = None if pipeline in labelled else pipeline
            labelled.add(pipeline)
            ax.plot(*zip(*pts, strict=True), color=colour[pipeline], alpha=0.8, linewidth=1.2, label=label)
        ax.set(title=title, xlabel="step (within stage)")
        ax.legend(fontsize="small")
    fig.suptitle("one line per seed")
    _save(fig, out)
    return out
