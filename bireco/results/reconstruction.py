"""Reconstruction F1 per stage (the probe's `reconstruction.json` files), as rows and a Markdown table."""

from __future__ import annotations

from pathlib import Path

from bireco.runs import RECONSTRUCTION_FILE, Run, read_json


def reconstruction_scores(run_dir: str | Path) -> list[tuple[str, dict]]:
    """(stage, reconstruction.json) in run order, the warmed-up base first when its score is still in the cache.

    The base is found through the first stage's `init_from` (for the tiny preset: `<cache>/tiny/<hash>/warmup/`).
    """
    run = Run(run_dir)
    out = []
    stages = run.stages()
    init_from = (stages[0].done or {}).get("init_from") if stages else None
    if init_from and (base := read_json(Path(init_from).parent / RECONSTRUCTION_FILE)) is not None:
        out.append(("warmup", base))
    for s in stages:
        if (score := read_json(s.file(RECONSTRUCTION_FILE))) is not None:
            out.append((s.name, score))
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
