"""Pipelines compared over seeds: the demo's table (`bireco-report RUNS_ROOT`).

Each run folder holds `results.json` (pipeline, seed, per-stage records) and, from the retrieval probe after its
last stage, `probe_queries.json` (every held-out query's hit@1 and reciprocal rank). Per pipeline the table shows
mean ± sd over seeds (with n); each Δ against bireco is paired — same seeds, same queries — with a two-level
bootstrap interval (`bireco.results.stats`), marked when it includes 0. So is the reconstruction gap after Stage I
(F1 from the true embedding − F1 from another pair's), paired by seed and held-out pair, where the stage's
`reconstruction.json` kept its rows' scores.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bireco.results.stats import PairedDelta, Spread, paired_bootstrap, spread
from bireco.runs import (
    PER_ROW_KEY,
    PROBE_QUERIES_FILE,
    RECONSTRUCTION_FILE,
    RESULTS_FILE,
    Run,
    RunError,
    find_runs,
    read_json,
)

PIPELINE_ORDER = ("bireco", "baseline", "baseline_budget", "anchor_control", "only_q2d", "only_d2q", "stage1_only")
METRICS = ("hit@1", "mrr@10")


@dataclass
class SeedRun:
    """One finished run: what the comparison reads from its folder."""

    pipeline: str
    seed: int
    path: Path
    probe: dict[str, float] = field(default_factory=dict)  # final probe means
    per_query: dict[str, list[float]] | None = None  # final probe, per query (the paired units)
    query_ids: list[str] | None = None
    anchor_gain: float | None = None  # Stage I, held-out pairs (val/anchor_gain)
    stage1_hit: float | None = None  # probe hit@1 after Stage I, before any contrastive step
    f1: dict[str, tuple[float, float]] = field(default_factory=dict)  # direction -> (true, shuffled) after Stage I
    f1_rows: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # the same, per held-out pair
    mteb: float | None = None  # bireco-eval average on <run>/eval, when present
    steps: dict[str, int] = field(default_factory=dict)


def read_seed_run(run_dir: Path) -> SeedRun:
    folder = Run(run_dir)
    r = folder.results()
    if r is None:
        raise RunError(f"{run_dir}: no {RESULTS_FILE} (the run did not finish)")
    run = SeedRun(r["pipeline"], int(r["seed"]), run_dir, probe=dict(r.get("probe") or {}))
    stages = folder.stages()
    for rec in r.get("stage_results") or []:
        run.steps[rec["stage"]] = int(rec.get("steps", 0))
        if rec["stage"] == "reconstruction":
            run.anchor_gain = (rec.get("metrics") or {}).get("val/anchor_gain")
            run.stage1_hit = (rec.get("probe") or {}).get("hit@1")
            score = rec.get("reconstruction") or {}
            run.f1 = {d: (score[d]["f1"], score[d]["f1_shuffled"]) for d in ("q2d", "d2q") if d in score}
    for stage in stages:
        if stage.name == "reconstruction" and (score := read_json(stage.file(RECONSTRUCTION_FILE))) is not None:
            rows = score.get(PER_ROW_KEY) or {}
            run.f1_rows = {d: (r["f1"], r["f1_shuffled"]) for d, r in rows.items()}
    per = read_json(stages[-1].file(PROBE_QUERIES_FILE)) if stages else None
    if per is not None:
        run.query_ids = per.pop("query_ids")
        per.pop("step", None)
        run.per_query = per
    if (summary := folder.eval_summary()) is not None:
        run.mteb = summary.get("average")
    return run


def collect(root: str | Path) -> dict[str, dict[int, SeedRun]]:
    """pipeline -> seed -> run, for every finished run folder under `root`."""
    out: dict[str, dict[int, SeedRun]] = {}
    for folder in find_runs(root):
        if folder.results() is None:
            continue
        run = read_seed_run(folder.path)
        out.setdefault(run.pipeline, {})[run.seed] = run
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _order(pipeline: str) -> tuple[int, str]:
    return (PIPELINE_ORDER.index(pipeline) if pipeline in PIPELINE_ORDER else len(PIPELINE_ORDER), pipeline)


def _cell(s: Spread | None, digits: int = 3) -> str:
    if s is None:
        return "—"
    return f"{s.mean:.{digits}f}" + ("" if s.sd is None else f" ± {s.sd:.{digits}f}")


def paired(runs: dict[str, dict[int, SeedRun]], a: str, b: str, metric: str) -> PairedDelta | None:
    """a − b on `metric`, paired over the seeds both ran and their (identical) held-out queries."""

    def units(p: str) -> dict[int, list[float]]:
        return {s: r.per_query[metric] for s, r in runs.get(p, {}).items() if r.per_query and metric in r.per_query}

    ua, ub = units(a), units(b)
    for s in set(ua) & set(ub):
        if runs[a][s].query_ids != runs[b][s].query_ids:
            raise ValueError(f"seed {s}: {a} and {b} were probed on different queries; they cannot be paired")
    return paired_bootstrap(ua, ub)


def summary_rows(runs: dict[str, dict[int, SeedRun]]) -> list[dict[str, Any]]:
    """Per pipeline: seeds, missing seeds, and mean ± sd of every reported number."""
    all_seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    rows = []
    for pipeline, by_seed in runs.items():
        rs = list(by_seed.values())
        row: dict[str, Any] = {
            "pipeline": pipeline,
            "seeds": sorted(by_seed),
            "missing_seeds": [s for s in all_seeds if s not in by_seed],
            "anchor_gain": spread([r.anchor_gain for r in rs if r.anchor_gain is not None]),
            # what Stage I alone makes of the EOS embedding: the anchor control's stays at chance
            "stage1_hit@1": spread([r.stage1_hit for r in rs if r.stage1_hit is not None]),
            # Stage I's length: max_steps, or fewer where its anchor-gain stop ended it
            "stage1_steps": spread([r.steps["reconstruction"] for r in rs if "reconstruction" in r.steps]),
            "mteb": spread([r.mteb for r in rs if r.mteb is not None]),
        }
        for m in METRICS:
            row[m] = spread([r.probe.get(m) for r in rs if r.probe.get(m) is not None])
        for d in ("q2d", "d2q"):
            row[f"f1_{d}"] = spread([r.f1[d][0] for r in rs if d in r.f1])
            row[f"f1_{d}_shuffled"] = spread([r.f1[d][1] for r in rs if d in r.f1])
            # per seed, not on the means: does the true embedding beat its shuffled control on every seed?
            scored = [r.f1[d] for r in rs if d in r.f1]
            row[f"f1_{d}_wins"] = (sum(true > shuffled for true, shuffled in scored), len(scored))
            true = {s: r.f1_rows[d][0] for s, r in by_seed.items() if d in r.f1_rows}
            shuffled = {s: r.f1_rows[d][1] for s, r in by_seed.items() if d in r.f1_rows}
            row[f"f1_{d}_gap"] = paired_bootstrap(true, shuffled)
            row[f"f1_{d}_gap_by_seed"] = {s: _mean_gap(true[s], shuffled[s]) for s in sorted(true)}
        rows.append(row)
    return rows


def _mean_gap(a: list[float], b: list[float]) -> float:
    return sum(x - y for x, y in zip(a, b, strict=True)) / len(a)


def render(runs: dict[str, dict[int, SeedRun]], reference: str = "bireco") -> str:
    """The markdown the demo prints: summary, paired differences, the verdict."""
    rows = summary_rows(runs)
    lines = [
        "| pipeline | seeds | hit@1 | MRR@10 | Stage I steps | hit@1 after Stage I | Stage I anchor gain (nats/token) "
        "| F1 q2d: true / shuffled | seeds with F1 true > shuffled | mteb avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        n = len(row["seeds"])
        seeds = f"{n} ({', '.join(map(str, row['seeds']))})" + (" — one seed" if n == 1 else "")
        if row["missing_seeds"]:
            seeds += f"; missing {row['missing_seeds']}"
        f1 = "—" if row["f1_q2d"] is None else f"{_cell(row['f1_q2d'])} / {_cell(row['f1_q2d_shuffled'])}"
        wins = ", ".join(
            f"{d} {won} of {scored}" for d in ("q2d", "d2q") for won, scored in [row[f"f1_{d}_wins"]] if scored
        )
        lines.append(
            f"| {row['pipeline']} | {seeds} | {_cell(row['hit@1'])} | {_cell(row['mrr@10'])} | "
            f"{_cell(row['stage1_steps'], 0)} | {_cell(row['stage1_hit@1'])} | {_cell(row['anchor_gain'], 4)} | "
            f"{f1} | {wins or '—'} | {_cell(row['mteb'], 2)} |"
        )
    lines += [
        "",
        "mean ± sd over seeds (sd omitted for one seed); held-out retrieval probe after the last stage, and after "
        "Stage I alone (before any contrastive step).",
        "",
    ]
    deltas = [(p, paired(runs, reference, p, "mrr@10"), paired(runs, reference, p, "hit@1")) for p in runs]
    deltas = [d for d in deltas if d[0] != reference and d[1] is not None]
    if deltas:
        lines += [f"| {reference} − | seeds × queries | Δ MRR@10 [95% CI] | Δ hit@1 [95% CI] |", "|---|---|---|---|"]
        for p, mrr, hit in deltas:
            lines.append(f"| {p} | {mrr.seeds} × {mrr.units} | {mrr.text()} | {hit.text()} |")
        lines += ["", "Paired by seed and query; two-level bootstrap (seeds, then queries), 2,000 resamples.", ""]
    lines.append(verdict(runs, reference))
    lines += reconstruction_gap_lines(rows)
    return "\n".join(lines) + "\n"


def reconstruction_gap_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The table of F1 true − shuffled after Stage I, for the pipelines whose runs kept per-row scores.

    Why an interval and not "seeds where true > shuffled": greedy F1 on a few hundred rows moves by ~0.015
    between runs whose embeddings carry nothing (the anchor control), so a win on one seed is not evidence.
    """
    shown = [r for r in rows if r["f1_q2d_gap"] is not None or r["f1_d2q_gap"] is not None]
    if not shown:
        return []
    lines = [
        "",
        "Reconstruction after Stage I, F1 from the true embedding − F1 from another pair's:",
        "",
        "| pipeline | seeds × pairs | q2d Δ F1 [95% CI] | d2q Δ F1 [95% CI] | per seed (q2d / d2q) |",
        "|---|---|---|---|---|",
    ]
    for row in shown:
        q, d = row["f1_q2d_gap"], row["f1_d2q_gap"]
        size = next(f"{g.seeds} × {g.units}" for g in (q, d) if g is not None)
        by_seed = "; ".join(
            f"{s}: {row['f1_q2d_gap_by_seed'].get(s, float('nan')):+.3f} / "
            f"{row['f1_d2q_gap_by_seed'].get(s, float('nan')):+.3f}"
            for s in sorted(set(row["f1_q2d_gap_by_seed"]) | set(row["f1_d2q_gap_by_seed"]))
        )
        lines.append(
            f"| {row['pipeline']} | {size} | {q.text() if q else '—'} | {d.text() if d else '—'} | {by_seed} |"
        )
    lines += ["", "Paired by seed and held-out pair; two-level bootstrap (seeds, then pairs), 2,000 resamples."]
    return lines


def verdict(runs: dict[str, dict[int, SeedRun]], reference: str = "bireco", against: str = "baseline") -> str:
    """One sentence: the sign of reference − against on MRR@10, with its interval, or that none is shown."""
    d = paired(runs, reference, against, "mrr@10")
    if d is None:
        return f"Verdict: no {reference} and {against} runs on common seeds — nothing to compare."
    seeds = f"{d.seeds} seed{'s' if d.seeds > 1 else ''} × {d.units} held-out queries"
    if d.includes_zero:
        return f"Verdict: {reference} vs {against}, Δ MRR@10 = {d.text()} over {seeds}: no difference shown."
    better = "better" if d.delta > 0 else "worse"
    return f"Verdict: {reference} is {better} than {against}: Δ MRR@10 = {d.text()} over {seeds}."


def machine() -> str:
    """The machine the numbers come from (they differ between CPUs; the verdict must not)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{platform.system()} {platform.machine()}"
    )
