"""Print a small comparison table of pipeline runs (the demo's output): probe retrieval quality per run.

python -m bireco.report runs/demo/bireco runs/demo/baseline
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load_result(run_dir: str | Path) -> dict:
    """results.json of a run, plus the mteb summary of `bireco-eval` when it was written to <run>/eval/."""
    f = Path(run_dir) / "results.json"
    if not f.is_file():
        return {"pipeline": Path(run_dir).name, "missing": f"no results.json in {run_dir}"}
    result = json.loads(f.read_text())
    summary = Path(run_dir) / "eval" / "summary.json"
    if summary.is_file():
        result["mteb"] = json.loads(summary.read_text())
    return result


def comparison_table(results: list[dict]) -> str:
    """Markdown table: one row per run; metrics from the held-out retrieval probe after the last stage."""
    with_mteb = any("mteb" in r for r in results)
    head = "| pipeline | stages | recall@1 | MRR@10 | Stage I anchor gain | Stage II steps |"
    lines = [head + (" mteb average |" if with_mteb else ""), "|---" * (7 if with_mteb else 6) + "|"]
    for r in results:
        if "missing" in r:
            lines.append(f"| {r['pipeline']} | missing: {r['missing']} | | | | |" + (" |" if with_mteb else ""))
            continue
        probe = r.get("probe") or {}
        by_stage = {s["stage"]: s for s in r["stage_results"]}
        gain = by_stage.get("reconstruction", {}).get("metrics", {}).get("val/anchor_gain")
        steps = by_stage.get("contrastive", {}).get("steps", "—")
        row = (
            f"| {r['pipeline']} | {' → '.join(r['stages'])} | {probe.get('recall@1', float('nan')):.4f} | "
            f"{probe.get('mrr@10', float('nan')):.4f} | {'—' if gain is None else f'{gain:.4f}'} | {steps} |"
        )
        if with_mteb:
            avg = (r.get("mteb") or {}).get("average")
            row += f" {avg:.2f} |" if avg is not None else " — |"
        lines.append(row)
    return "\n".join(lines)


def reconstruction_scores(run_dir: str | Path) -> list[tuple[str, dict]]:
    """(stage, reconstruction.json) in run order, the warmed-up base first when its score is still in the cache.

    The base is found through the first stage's `init_from` (for the tiny preset: `<cache>/tiny/<hash>/warmup/`).
    """
    stages = sorted((Path(run_dir) / "stages").glob("*-*"), key=lambda d: int(d.name.split("-", 1)[0]))
    out = []
    done = stages[0] / "stage_done.json" if stages else None
    init_from = json.loads(done.read_text()).get("init_from") if done is not None and done.is_file() else None
    if init_from:
        base = Path(init_from).parent / "reconstruction.json"
        if base.is_file():
            out.append(("warmup", json.loads(base.read_text())))
    for d in stages:
        if (d / "reconstruction.json").is_file():
            out.append((d.name.split("-", 1)[1], json.loads((d / "reconstruction.json").read_text())))
    return out


def reconstruction_table(runs: list[tuple[str, list[tuple[str, dict]]]]) -> str:
    """Markdown: reconstruction F1 after each stage, each direction next to its shuffled-embedding control."""
    lines = [
        "| run | after | q2d F1 | q2d F1 shuffled | d2q F1 | d2q F1 shuffled | q2d loss | d2q loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, scores in runs:
        for stage, s in scores:
            q, d = s["q2d"], s["d2q"]
            lines.append(
                f"| {name} | {stage} | {q['f1']:.4f} | {q['f1_shuffled']:.4f} | {d['f1']:.4f} | "
                f"{d['f1_shuffled']:.4f} | {q['loss']:.4f} | {d['loss']:.4f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    dirs = (argv if argv is not None else sys.argv[1:]) or []
    if not dirs:
        raise SystemExit("usage: python -m bireco.report RUN_DIR [RUN_DIR ...]")
    results = [load_result(d) for d in dirs]
    sys.stdout.write(comparison_table(results) + "\n")
    recon = [(r["pipeline"], reconstruction_scores(d)) for r, d in zip(results, dirs, strict=True)]
    if any(scores for _, scores in recon):
        sys.stdout.write("\nReconstruction from the embedding (held-out pairs; shuffled = another pair's vector):\n\n")
        sys.stdout.write(reconstruction_table(recon) + "\n")


if __name__ == "__main__":
    main()
