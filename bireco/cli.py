"""Console entry points (thin: compose the config, call the library)."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from bireco.conf import CONF_DIR
from bireco.console import console_environment, exit_on_user_error
from bireco.utils.io import atomic_write_json
from bireco.utils.resolvers import register as register_resolvers
from bireco.utils.tracking import finish_wandb, log_final_metrics

log = logging.getLogger("bireco")

register_resolvers()

FAILED_FILE = "failed.json"


def train() -> None:
    """`bireco-train` console entry point (see `_train`)."""
    console_environment()
    _train()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    """`bireco-train`: run the configured pipeline (and its evaluation) into the Hydra run directory.

    In a multirun sweep a failing job writes `failed.json` (shown as failed in the table) and the sweep goes on;
    a single run fails loudly.
    """
    from hydra.types import RunMode

    from bireco.distributed import is_global_zero, release_process_group
    from bireco.pipeline import RunFolderTaken, check_run_folder, run_pipeline

    # Lightning prints its own INFO lines; without this Hydra's root handler would print each twice
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun and cfg.get("run_group") is None:
        with open_dict(cfg):
            cfg.run_group = Path(hc.sweep.dir).name
    try:
        check_run_folder(cfg, out)  # before anything is written: a refused job leaves the other run as it was
    except RunFolderTaken as e:
        if not multirun:
            exit_on_user_error(e, "bireco-train")
        log.error("job refused, nothing written (the sweep goes on): %s", e)
        return None
    (out / FAILED_FILE).unlink(missing_ok=True)
    try:
        results = run_pipeline(cfg, out)
        if not is_global_zero():  # under DDP the other ranks are done: rank 0 evaluates on its own device
            return None
        if cfg.eval.kind != "none":
            from bireco.eval.runner import evaluate_run

            results["eval"] = evaluate_run(cfg, out)
        log_final_metrics(cfg, out, results)
    except Exception as e:
        atomic_write_json(
            out / FAILED_FILE,
            {
                "error": f"{type(e).__name__}: {e}".splitlines()[0][:500],
                "stage": getattr(e, "stage", None),
                "traceback": traceback.format_exc(),
            },
        )
        if not multirun:
            exit_on_user_error(e, "bireco-train")
            raise
        log.exception("job failed (recorded in %s); the sweep goes on", out / FAILED_FILE)
        return None
    finally:
        finish_wandb()  # one failed sweep job must not leave a dangling run that breaks the next
        if not multirun:
            release_process_group()
    probe = results.get("probe") or {}
    log.info("final probe: %s", probe)
    return probe.get("mrr@10")  # the sweep objective (e.g. for optuna sweepers)


def _eval_argv(argv: list[str]) -> list[str]:
    """Let `bireco-eval model=<hub name or folder>` work next to `model=<preset>`.

    A value that is not a preset becomes `artifact=` (a bireco stage artifact: it records its template) or
    `model.pretrained=` (a plain model, whose chat template must then be named: guessing it from the name is how
    peer code ended up using the Llama-3 template for every model).
    """
    from bireco.runs import read_artifact_meta

    presets = {p.stem for p in Path(CONF_DIR, "model").glob("*.yaml")}
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key != "model" or value in presets:
            out.append(arg)
        elif Path(value).is_dir() and read_artifact_meta(value) is not None:
            out.append(f"artifact={value}")
        else:
            if not any(a.startswith("template=") for a in argv):
                raise SystemExit(
                    f"bireco-eval: '{value}' is not a model preset ({', '.join(sorted(presets))}); to evaluate it "
                    "directly, also name its template: template=llama3|qwen2|mistral|plain"
                )
            out.append(f"model.pretrained={value}")
    return out


def evaluate() -> None:
    """`bireco-eval` console entry point (see `_evaluate`)."""
    console_environment()
    sys.argv = [sys.argv[0], *_eval_argv(sys.argv[1:])]
    _evaluate()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _evaluate(cfg: DictConfig) -> float | None:
    """`bireco-eval`: mteb evaluation of a run / artifact / base model into the Hydra run directory."""
    from bireco.eval.runner import run_eval

    try:
        summary = run_eval(cfg, HydraConfig.get().runtime.output_dir)
    except Exception as e:
        exit_on_user_error(e, "bireco-eval")
        raise
    average = summary["average"]
    log.info("average over %d tasks: %s", len(summary["tasks"]), "—" if average is None else f"{average:.2f}")
    for category, score in summary["categories"].items():
        log.info("  %-20s %.2f", category, score)
    return summary["average"]
