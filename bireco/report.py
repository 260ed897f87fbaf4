"""The demo's report: pipelines compared over seeds (`bireco.results.compare`), per-stage reconstruction.

python -m bireco.report runs/demo          # every run under the folder (<pipeline>/seed-<s>/)
"""

from __future__ import annotations

import sys
from pathlib import Path

from bireco.results.compare import collect, machine, render
from bireco.runs import RECONSTRUCTION_FILE, Run, read_json
from bireco.utils.io import atomic_write_text


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


def report(root: str | Path) -> str:
    """The whole printed report of the runs under `root`."""
    runs = collect(root)
    if not runs:
        raise SystemExit(f"bireco.report: no finished run (results.json) under {root}")
    text = f"Machine: {machine()}\n\n" + render(runs)
    recon = [
        (f"{p} seed {s}", reconstruction_scores(r.path)) for p, by_seed in runs.items() for s, r in by_seed.items()
    ]
    if any(scores for _, scores in recon):
        text += "\nReconstruction from the embedding (held-out pairs; shuffled = another pair's vector):\n\n"
        text += reconstruction_table([x for x in recon if x[1]]) + "\n"
    return text


def main(argv: list[str] | None = None) -> None:
    """`python -m bireco.report RUNS_DIR [--out FILE]`."""
    args = list(argv if argv is not None else sys.argv[1:])
    out = None
    if "--out" in args:
        i = args.index("--out")
        out, args = args[i + 1], args[:i] + args[i + 2 :]
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: python -m bireco.report RUNS_DIR [--out FILE]   (a folder of <pipeline>/seed-<s>/)")
    text = report(args[0])
    if out:
        atomic_write_text(Path(out), text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
