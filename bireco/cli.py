"""Every console script of bireco (`[project.scripts]`), each a thin function over the library.

One Hydra helper (`hydra_app`: compose `conf/<name>.yaml`, run the job, a user error ends in one line, exit 2),
one environment policy (`bireco.console.console_environment`), and no renaming of arguments: what to load has
its own key — `run_dir=` / `artifact=` / `model.pretrained=` (bireco-eval), `model_dir=` (bireco-encode),
`stage_name=` (bireco-reconstruct) — so it never collides with a config group (`model`, `stage`). The one thing
done to the command line is quoting bireco-reconstruct's free texts (`text=`, `reference=`, `instruction=`) so a
sentence with commas or `${` arrives verbatim instead of being parsed as a list or an interpolation.
Importing this module has no side effects.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from bireco.app_help import app_help, wants_help
from bireco.conf import CONF_DIR
from bireco.console import console_environment, exit_on_user_error, fail, one_line, user_error_line
from bireco.override_types import check_override_types
from bireco.runs import CONFIG_FILE, FAILED_FILE

log = logging.getLogger("bireco")


_invoked_at = float("inf")  # when this process's console entry point began (unset: nothing is ever discarded)
_folders_before: set[Path] = set()  # a hydra.run.dir= of the command line that existed before it: never removed
_sweep_jobs: list[bool] = []  # this process's sweep jobs (the basic launcher runs them here): finished or not


def hydra_app(
    config_name: str,
    job: Callable[[DictConfig], Any],
    program: str,
    hints: dict[str, str] | None = None,
    sweeps: bool = False,
) -> Callable[[], Any]:
    """A console entry point for `conf/<config_name>.yaml` that runs `job(cfg)`; a user error raised by the job
    is one line naming `program` (exit 2), anything else keeps its traceback. `hints`: key -> what to add to the
    line when a command line naming that key does not compose (where Hydra's own suggestion misleads). `sweeps`:
    the program is meant for `-m` sweeps (its `--help` offers them and the launcher group)."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)
    def _main(cfg: DictConfig) -> Any:
        from bireco.utils.resolvers import register

        register()  # also in a launcher's job process (submitit), which runs this function unpickled
        try:
            hc = HydraConfig.get()
            if hc.mode == RunMode.RUN or config_name != "train":  # a training sweep's jobs check in the job
                check_override_types(config_name, hc.overrides.task, hc.overrides.hydra)
            return job(cfg)
        except Exception as e:
            if user_error_line(e) is not None:
                discard_untouched_run_folder()
            exit_on_user_error(e, program)
            raise

    def entry() -> Any:
        from bireco.utils.resolvers import register

        global _invoked_at  # read by discard_untouched_run_folder: what is older was not written by this command
        _invoked_at = time.time()  # before Hydra writes the run folder
        _folders_before.clear()  # this invocation's only (a process may call several entry points)
        _folders_before.update(given_run_folders(sys.argv[1:]))
        _sweep_jobs.clear()
        console_environment()
        register()
        if wants_help(sys.argv[1:]):
            return print_help(config_name, program, sys.argv[1:], sweeps)
        check_composes(config_name, program, sys.argv[1:], hints or {})
        out = _main()
        exit_if_every_job_failed(program)
        return out

    entry.__doc__ = f"`{program}` (conf/{config_name}.yaml)."
    return entry


def exit_if_every_job_failed(program: str) -> None:
    """A sweep whose jobs all failed or were refused ends with exit status 1 and one line (each job's failure is
    its own failed.json and log line); one with any finished job exits 0, its table shows the failures. Jobs a
    launcher runs in other processes (submitit, SLURM) are not counted here: their own exit statuses are theirs."""
    if _sweep_jobs and not any(_sweep_jobs):
        line = f"{program}: error: every job of the sweep failed or was refused ({len(_sweep_jobs)}; see their logs)"
        print(line, file=sys.stderr)
        raise SystemExit(1)


def print_help(config_name: str, program: str, args: list[str], sweeps: bool) -> None:
    """`--help` / `-h`: this program's usage, groups and config (`bireco.app_help`), the overrides applied."""
    from hydra.errors import HydraException

    try:
        sys.stdout.write(app_help(config_name, program, args, sweeps))
    except HydraException as e:
        fail(program, one_line(str(e)))


def check_composes(config_name: str, program: str, args: list[str], hints: dict[str, str]) -> None:
    """A command line that does not compose (an unknown key or group option, `seed=1,2` without `-m`) ends in one
    line, exit 2, before Hydra writes anything — Hydra's own report is several lines with exit 1. Only plain
    `key=value` command lines are checked (flags such as `-m`, `--cfg` are Hydra's to handle; `--help` is
    `print_help`'s)."""
    if not args or any(a.startswith("-") for a in args):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            compose(config_name, overrides=args)
    except HydraException as e:
        named = {a.lstrip("+~").partition("=")[0] for a in args}
        fail(program, "; ".join([one_line(str(e)), *(hint for key, hint in hints.items() if key in named)]))
    except Exception:  # anything else is for Hydra's run (and its report) to meet
        return


def given_run_folders(args: list[str]) -> list[Path]:
    """The existing folder a command line names as its run folder (`hydra.run.dir=DIR`), resolved."""
    given = [a.partition("=")[2] for a in args if a.startswith("hydra.run.dir=")]
    return [Path(d).resolve() for d in given if d and Path(d).is_dir()]


def discard_untouched_run_folder() -> None:
    """Remove this invocation's run folder when it holds only what was written for it (`.hydra/`, the job log,
    the config bireco-train records first).

    Hydra creates the folder before the job runs, so a command refused with one line (a typo, a run that is not
    finished) would otherwise leave an empty-looking run behind in `runs/` for every try. Never touched: a folder
    holding anything else or files older than this invocation, the working folder itself, a sweep's folders, and
    the (possibly empty) folders above it — whether Hydra or the user made those cannot be told apart —, and a
    folder that existed before the command (`hydra.run.dir=` an empty folder): only what was written into it goes.
    Best effort: a file-system error leaves the folder as it is (the user's error line still comes)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.RUN or not hc.output_subdir:
        return
    out = Path(hc.runtime.output_dir)
    try:
        if out.resolve() == Path(hc.runtime.cwd).resolve():
            return
        hydra_record = out / hc.output_subdir
        ours = {hydra_record.name, f"{hc.job.name}.log", CONFIG_FILE}  # config.yaml: bireco-train's record
        entries = list(out.iterdir()) if out.is_dir() else []
        if not entries or any(p.name not in ours for p in entries):
            return
        if any(p.stat().st_mtime < _invoked_at - 1 for p in [*entries, *hydra_record.glob("*")]):
            return  # written by an earlier invocation (1 s for coarse file-system clocks)
        if out.resolve() not in _folders_before:
            shutil.rmtree(out)
            return
        for p in entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    except OSError:
        return


# --- bireco-train -------------------------------------------------------------------------------------------


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """model, pipeline and seed of a job's config, each None where it cannot be read (what made the job fail may
    be that very setting: a bad interpolation)."""
    from omegaconf import OmegaConf

    keys = {"model": "model.name", "pipeline": "pipeline.name", "seed": "seed"}
    return {f: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False) for f, k in keys.items()}


def train_job(cfg: DictConfig) -> float | None:
    """`bireco-train`: run the configured pipeline (and its evaluation) into the Hydra run directory.

    In a multirun sweep a failing or refused job writes nothing of another run's, records `failed.json` (shown
    as failed in the table) and the sweep goes on; a single run fails loudly. Returns the sweep objective.
    """
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if not multirun:  # a typo is one line in ~2 s, before Lightning and transformers are imported (~5 s more)
        from bireco.config import validate_config

        validate_config(cfg)

    from bireco.distributed import is_global_zero, release_process_group
    from bireco.pipeline import RunFolderTaken, check_run_folder, run_pipeline
    from bireco.utils.io import atomic_write_json
    from bireco.utils.tracking import finish_wandb, log_final_metrics

    # Lightning prints its own INFO lines; without this Hydra's root handler would print each twice
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    if multirun and cfg.get("run_group") is None:
        with open_dict(cfg):
            cfg.run_group = Path(hc.sweep.dir).name
    try:
        check_run_folder(cfg, out)  # before anything is written: a refused job leaves the other run as it was
    except RunFolderTaken as e:
        if not multirun:
            raise
        log.error("job refused, nothing written (the sweep goes on): %s", e)
        _sweep_jobs.append(False)
        return None
    (out / FAILED_FILE).unlink(missing_ok=True)
    try:
        if multirun:
            check_override_types("train", hc.overrides.task, hc.overrides.hydra)
        results = run_pipeline(cfg, out)
        if not is_global_zero():  # under DDP the other ranks are done: rank 0 evaluates on its own device
            _sweep_jobs.append(True)
            return None
        if cfg.eval.kind != "none":
            from bireco.eval.runner import evaluate_run

            results["eval"] = evaluate_run(cfg, out)
        log_final_metrics(cfg, out, results)
    except Exception as e:
        if not multirun and user_error_line(e) is not None and not (out / "stages").exists():
            raise  # refused before any stage ran: the line says it all, and the try's folder is removed
        atomic_write_json(
            out / FAILED_FILE,
            {
                "error": f"{type(e).__name__}: {e}".splitlines()[0][:500],
                "stage": getattr(e, "stage", None),
                "traceback": traceback.format_exc(),
                **run_identity(cfg),  # a job refused before config.yaml was written still has its table row
            },
        )
        if not multirun:
            raise
        line = user_error_line(e)
        if line is None:
            log.exception("job failed (recorded in %s); the sweep goes on", out / FAILED_FILE)
        else:  # the user's to fix: the line, not a traceback
            log.error("job refused: %s (recorded in %s); the sweep goes on", line, out / FAILED_FILE)
        _sweep_jobs.append(False)
        return None
    finally:
        finish_wandb()  # one failed sweep job must not leave a dangling run that breaks the next
        if not multirun:
            release_process_group()
    if multirun:
        _sweep_jobs.append(True)
    probe = results.get("probe") or {}
    log.info("final probe: %s", probe)
    return probe.get("mrr@10")  # the sweep objective (e.g. for optuna sweepers)


train = hydra_app("train", train_job, "bireco-train", sweeps=True)


# --- bireco-eval --------------------------------------------------------------------------------------------


def eval_job(cfg: DictConfig) -> float | None:
    """`bireco-eval`: mteb evaluation of a run / artifact / base model into the Hydra run directory.

    A model that is not a preset is named as what it is: `artifact=DIR` (a bireco stage artifact, which records
    its template) or `model.pretrained=NAME_OR_DIR template=...` (a plain model: its chat template must be
    named — guessing it from the name is how peer code used the Llama-3 template for every model).
    """
    from bireco.errors import UserError
    from bireco.eval.runner import run_eval

    hc = HydraConfig.get()
    keys = {o.lstrip("+~").partition("=")[0] for o in hc.overrides.task}
    if "model.pretrained" in keys and not keys & {"model", "template"}:
        raise UserError(
            "model.pretrained= names a plain model: also name its chat template, template=llama3|qwen2|mistral|plain, "
            "or the preset it is a copy of (model=llama3.2-1b); a bireco stage artifact records its own: artifact=DIR"
        )
    summary = run_eval(cfg, hc.runtime.output_dir)
    average = summary["average"]
    log.info("average over %d tasks: %s", len(summary["tasks"]), "—" if average is None else f"{average:.2f}")
    for category, score in summary["categories"].items():
        log.info("  %-20s %.2f", category, score)
    out = Path(hc.runtime.output_dir)
    log.info("summary: %s", out / "summary.json")
    hint = table_hint(Path(cfg.run_dir), out) if cfg.run_dir else None
    if hint:
        log.info("%s", hint)
    return summary["average"]


def table_hint(run: Path, out: Path) -> str | None:
    """How `bireco-table` finds an evaluation of `run` written into `out`; None where it reads by default
    (`<run>/eval/`)."""
    run_r, out_r = run.resolve(), out.resolve()
    if not out_r.is_relative_to(run_r):
        return f"bireco-table {run} reads {run}/eval/summary.json: hydra.run.dir={run}/eval writes it there"
    sub = out_r.relative_to(run_r)
    return None if sub == Path("eval") else f"bireco-table {run} --eval-subdir {sub} reads this evaluation"


evaluate = hydra_app("eval", eval_job, "bireco-eval", sweeps=True)


# --- bireco-export / bireco-encode / bireco-audit -----------------------------------------------------------


def export_job(cfg: DictConfig) -> str:
    """`bireco-export`: a finished run as a sentence-transformers folder (+ HF formats, model card)."""
    from bireco.export.cli import run_export

    return run_export(cfg)


def encode_job(cfg: DictConfig) -> Path:
    """`bireco-encode`: a .jsonl(.gz) of texts -> a .npy of embeddings, streamed."""
    from bireco.encode import run_encode

    return run_encode(cfg)


def audit_job(cfg: DictConfig) -> None:
    """`bireco-audit`: audit, write audit.json, print the table."""
    from bireco.audit.cli import print_table, run_audit

    hc = HydraConfig.get()
    path, audit = run_audit(cfg, hc.runtime.output_dir, list(hc.overrides.task))
    if not path.resolve().is_relative_to(Path(hc.runtime.output_dir).resolve()):
        discard_untouched_run_folder()  # audit.json went into the run folder (run_dir=): Hydra's folder is unused
    print_table(audit, path)


export = hydra_app("export", export_job, "bireco-export")
# Hydra answers `model=DIR` with "use +model=DIR": the folder to encode with is `model_dir=`
encode = hydra_app(
    "encode", encode_job, "bireco-encode", {"model": "bireco-encode names its model folder with model_dir=DIR"}
)
audit = hydra_app("audit", audit_job, "bireco-audit")


# --- bireco-reconstruct -------------------------------------------------------------------------------------


def reconstruct_job(cfg: DictConfig) -> None:
    """`bireco-reconstruct`: decode one text's (or a file's) embedding back into text; prints the result."""
    import json

    from bireco.errors import UserError
    from bireco.reconstruct.cli import run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        out = run(cfg)
    except FileNotFoundError as e:  # a missing run, stage or input file: the user's to fix
        raise UserError(str(e)) from e
    if cfg.text is not None:
        sys.stdout.write(out["generated"] + "\n")
        if "f1" in out:
            sys.stdout.write(f"f1={out['f1']:.4f} loss={out['loss']:.4f}\n")
    else:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")


_reconstruct = hydra_app("reconstruct", reconstruct_job, "bireco-reconstruct")


def reconstruct() -> None:
    """`bireco-reconstruct` (conf/reconstruct.yaml); free texts are quoted verbatim (see the module doc)."""
    from bireco.reconstruct.cli import quote_free_texts

    sys.argv = [sys.argv[0], *quote_free_texts(sys.argv[1:])]
    _reconstruct()


# --- argparse tools: results, sweep plan, checkpoint consolidation --------------------------------------------


def table(argv: list[str] | None = None) -> None:
    """`bireco-table`: the comparison table (md / tex / csv) and plots of a runs folder."""
    from bireco.results.cli import table_main

    console_environment()
    table_main(argv)


def report(argv: list[str] | None = None) -> None:
    """`bireco-report`: the demo's comparison of pipelines over seeds (a folder of runs)."""
    from bireco.results.cli import report_main

    console_environment()
    report_main(argv)


def sweep_plan(argv: list[str] | None = None) -> None:
    """`bireco-sweep-plan`: compose and validate every job of a sweep, print settings and resources."""
    from bireco.sweep_plan import main

    console_environment()
    main(argv)


def consolidate(argv: list[str] | None = None) -> None:
    """`bireco-consolidate CHECKPOINT OUT`: a sharded (FSDP / DeepSpeed) checkpoint -> one .ckpt file."""
    from bireco.distributed import main

    console_environment()
    main(["consolidate", *(sys.argv[1:] if argv is None else argv)])
