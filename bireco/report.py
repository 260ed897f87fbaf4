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


def main(argv: list[str] | None = None) -> None:
    dirs = (argv if argv is not None else sys.argv[1:]) or []
    if not dirs:
        raise SystemExit("usage: python -m bireco.report RUN_DIR [RUN_DIR ...]")
    results = [load_result(d) for d in dirs]
    sys.stdout.write(comparison_table(results) + "\n")


if __name__ == "__main__":
    main()
