"""The results commands: `bireco-table` (the paper's table, plots, optionally to wandb) and `bireco-report`
(the demo's comparison over seeds).

    bireco-table runs/multirun runs/llama3.2-1b --out runs/table --expect llama3.1-8b:bireco
    bireco-report runs/demo [--out FILE]      # every run under the folder (<pipeline>/seed-<s>/)
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bireco.console import fail
from bireco.results import plots
from bireco.results.compare import SeedRun, collect, machine, render
from bireco.results.reconstruction import reconstruction_scores, reconstruction_table
from bireco.results.records import TableInputError, collect_runs, find_run_dirs, select_runs
from bireco.results.render import render_csv, render_latex, render_markdown
from bireco.results.table import DEFAULT_PAPER_TABLE, build_rows, load_paper_table
from bireco.runs import RunError
from bireco.utils.io import atomic_write_text

log = logging.getLogger(__name__)

TABLE_DESCRIPTION = "the paper's results table (MTEB category means) from run and sweep directories, plus plots"


def write_table(
    paths: Sequence[str | Path],
    out: str | Path,
    expect: Sequence[str] = (),
    title: str | None = None,
    paper_table: str | Path = DEFAULT_PAPER_TABLE,
    eval_subdir: str = "eval",
) -> str:
    """Collect, build, write table.{md,tex,csv} and plots/ into `out`; returns the Markdown.

    Refused before anything is written (ValueError / FileNotFoundError, naming the file): no run directory at all
    under `paths`, an absent path, a paper table that is not its CSV (an absent one only has no paper rows)."""
    out = Path(out)
    paths = list(paths)
    if all(Path(p).exists() for p in paths) and not any(find_run_dirs(Path(p)) for p in paths):
        # an absent path is collect_runs' error; one empty folder among others is its warning
        where = ", ".join(map(str, paths))
        raise TableInputError(f"no run directory under {where} (looked for run folders up to 3 levels down)")
    paper = load_paper_table(paper_table)
    runs = select_runs(collect_runs(paths, expect, eval_subdir))
    rows = build_rows(runs, paper)
    md = render_markdown(rows, title)
    atomic_write_text(out / "table.md", md)
    atomic_write_text(out / "table.tex", render_latex(rows, title))
    atomic_write_text(out / "table.csv", render_csv(rows))
    plot_dir = out / "plots"
    plots.plot_delta(rows, paper, plot_dir)
    for r in runs:
        plots.plot_curves(r, plot_dir)
    plots.plot_convergence(runs, plot_dir)
    plots.plot_dims(runs, plot_dir, eval_subdir)
    if plots.plot_reconstruction(runs, plot_dir):
        recon = [(f"{r.model} / {r.pipeline}", reconstruction_scores(r.path)) for r in runs if r.path]
        atomic_write_text(out / "reconstruction.md", reconstruction_table(recon) + "\n")
    return md


def table_main(argv: list[str] | None = None) -> None:
    """`bireco-table RUNS... --out DIR [--expect MODEL:PIPELINE ...] [--title ...]`."""
    ap = argparse.ArgumentParser(prog="bireco-table", description=TABLE_DESCRIPTION)
    ap.add_argument("runs", nargs="+", help="run directories and/or sweep directories (searched 3 levels deep)")
    ap.add_argument("--out", required=True, help="folder for table.md, table.tex, table.csv and plots/")
    ap.add_argument("--expect", action="append", default=[], metavar="MODEL:PIPELINE", help="row that must appear")
    ap.add_argument("--title", default=None)
    ap.add_argument(
        "--paper-table",
        default=None,
        help=f"the paper's numbers (CSV; default: the packaged {DEFAULT_PAPER_TABLE.name})",
    )
    ap.add_argument("--eval-subdir", default="eval", help="where a run's mteb summary.json is, inside the run")
    ap.add_argument("--wandb-project", default=None, help="also log the table and plots to wandb (artifact)")
    ap.add_argument("--wandb-group", default=None, help="wandb group (the sweep's), default: the --out name")
    args = ap.parse_args(argv)
    _refuse_unwritable_out("bireco-table", args.out, folder=True)
    if args.paper_table is not None and not Path(args.paper_table).is_file():  # the packaged one may be absent
        why = "is not a file" if Path(args.paper_table).exists() else "no such file"
        fail("bireco-table", f"--paper-table {args.paper_table}: {why}")
    paper_table = DEFAULT_PAPER_TABLE if args.paper_table is None else args.paper_table
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = write_table(args.runs, args.out, args.expect, args.title, paper_table, args.eval_subdir)
    except (TableInputError, RunError) as e:  # anything else is a bug and keeps its traceback
        fail("bireco-table", str(e))
    if args.wandb_project:
        log_table_to_wandb(Path(args.out), args.wandb_project, args.wandb_group or Path(args.out).name)
    print(md, end="")


def _refuse_unwritable_out(program: str, out: str, folder: bool) -> None:
    """Refuse (one line, exit 2) an `--out` that cannot be written, before anything is: for a `folder`, an
    existing non-folder; for a file, an existing folder; for both, a path under an existing non-folder."""
    path = Path(out)
    if folder and path.exists() and not path.is_dir():
        fail(program, f"--out {out}: exists and is not a folder")
    if not folder and path.is_dir():
        fail(program, f"--out {out}: is a folder (the report is a file: name it, e.g. {path / 'report.md'})")
    parent = next((p for p in path.parents if p.exists()), None)  # the nearest existing one
    if parent is not None and not parent.is_dir():
        fail(program, f"--out {out}: {parent} exists and is not a folder")


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


def report(root: str | Path) -> str:
    """The whole printed report of the runs under `root`: TableInputError when there is no finished run, RunError
    when a run's record cannot be read."""
    return _report_text(root, collect(root))


def _report_text(root: str | Path, runs: dict[str, dict[int, SeedRun]]) -> str:
    """The report of `runs` (pipeline -> seed -> run) collected under `root`."""
    if not runs:
        raise TableInputError(f"no finished run (results.json) under {root}")
    text = f"Machine: {machine()}\n\n" + render(runs)
    recon = [
        (f"{p} seed {s}", reconstruction_scores(r.path)) for p, by_seed in runs.items() for s, r in by_seed.items()
    ]
    if any(scores for _, scores in recon):
        text += "\nReconstruction from the embedding (held-out pairs; shuffled = another pair's vector):\n\n"
        text += reconstruction_table([x for x in recon if x[1]]) + "\n"
    return text


def report_main(argv: list[str] | None = None) -> None:
    """`bireco-report RUNS_DIR [--out FILE]`."""
    ap = argparse.ArgumentParser(prog="bireco-report", description="the demo's comparison of pipelines over seeds")
    ap.add_argument("runs", help="a folder of runs (<pipeline>/seed-<s>/, searched for results.json)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    if not Path(args.runs).is_dir():
        fail("bireco-report", f"{args.runs}: no such folder")
    if args.out:  # before anything is written: the curves go next to it
        _refuse_unwritable_out("bireco-report", args.out, folder=False)
    try:
        runs = collect(args.runs)
        text = _report_text(args.runs, runs)
    except (TableInputError, RunError) as e:  # anything else is a bug and keeps its traceback
        fail("bireco-report", str(e))
    if args.out:
        # the curves next to the table: anchor gain and probe per seed
        plot = plots.plot_seed_curves(runs, Path(args.out).with_name("curves.png"))
        text += f"\nCurves (one line per seed): {plot}\n" if plot else ""
        atomic_write_text(Path(args.out), text)
    sys.stdout.write(text)
