"""Run folders as the pipeline writes them, with chosen numbers: for the results tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_run(
    root: Path,
    pipeline: str,
    seed: int,
    mrr: list[float],
    hit: list[float] | None = None,
    gain: float | None = None,
    mteb: float | None = None,
    stage1_hit: float | None = None,
    stage1_steps: int = 10,
    f1: dict[str, tuple[float, float]] | None = None,
    f1_rows: dict[str, tuple[list[float], list[float]]] | None = None,
) -> Path:
    """`<root>/<pipeline>/seed-<seed>/` with results.json and the last stage's probe_queries.json.

    `f1_rows` (direction -> each held-out pair's F1, true and shuffled) also writes Stage I's reconstruction.json
    with those rows (`per_row`) and their means."""
    run = root / pipeline / f"seed-{seed}"
    stages = ["reconstruction", "contrastive"] if gain is not None else ["contrastive"]
    hit = hit if hit is not None else [float(x == 1.0) for x in mrr]
    if f1_rows:
        f1 = {d: (sum(t) / len(t), sum(sh) / len(sh)) for d, (t, sh) in f1_rows.items()}
    f1 = f1 or {"q2d": (0.5, 0.2), "d2q": (0.4, 0.1)}  # direction -> (true, shuffled) after Stage I
    records = []
    for i, stage in enumerate(stages):
        (run / "stages" / f"{i}-{stage}").mkdir(parents=True)
        metrics = {"val/anchor_gain": gain} if stage == "reconstruction" else {}
        recon = {d: {"f1": true, "f1_shuffled": shuffled} for d, (true, shuffled) in f1.items()}
        steps = stage1_steps if stage == "reconstruction" else 10
        record = {"stage": stage, "steps": steps, "metrics": metrics, "reconstruction": recon if gain else None}
        if stage == "reconstruction" and stage1_hit is not None:
            record["probe"] = {"hit@1": stage1_hit, "mrr@10": stage1_hit, "stage": stage, "step": 10}
        records.append(record)
        if stage == "reconstruction" and f1_rows:
            per_row = {d: {"f1": t, "f1_shuffled": sh} for d, (t, sh) in f1_rows.items()}
            score = {**recon, "stage": stage, "step": steps, "per_row": per_row}
            (run / "stages" / f"{i}-{stage}" / "reconstruction.json").write_text(json.dumps(score))
    last = run / "stages" / f"{len(stages) - 1}-{stages[-1]}"
    ids = [f"q{i}" for i in range(len(mrr))]
    (last / "probe_queries.json").write_text(json.dumps({"step": 10, "query_ids": ids, "hit@1": hit, "mrr@10": mrr}))
    probe = {"hit@1": sum(hit) / len(hit), "mrr@10": sum(mrr) / len(mrr)}
    results = {"model": "tiny", "pipeline": pipeline, "seed": seed, "stages": stages, "stage_results": records}
    (run / "results.json").write_text(json.dumps({**results, "probe": probe}))
    (run / "config.yaml").write_text(f"seed: {seed}\npipeline: {{name: {pipeline}}}\nmodel: {{name: tiny}}\n")
    if mteb is not None:
        (run / "eval").mkdir()
        (run / "eval" / "summary.json").write_text(json.dumps({"average": mteb, "categories": {}, "tasks": {}}))
    return run
