"""Dry run of a sweep: compose every job exactly as `bireco-train -m` would, validate it, print what it would run.

    bireco-sweep-plan experiment=paper_table data.path=/datasets/echo-e5 --models llama3.2-1b qwen2.5-1.5b
    bireco-sweep-plan experiment=reproduce_tiny pipeline=bireco,baseline seed=1,2   # command-line sweeps too

Nothing is trained or launched; an invalid job fails here instead of hours later on the cluster. The jobs are the
product of the config's `hydra.sweeper.params` and the command line's sweep overrides (a command-line value, swept
or plain, replaces the config's axis for the same key), as Hydra's basic sweeper forms them; a bad override or
setting is one line (exit 2).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from bireco.conf import CONF_DIR
from bireco.config import validate_config
from bireco.console import exit_on_user_error, fail, one_line
from bireco.errors import UserError
from bireco.override_types import check_override_types

PROGRAM = "bireco-sweep-plan"


def sweep_params(cfg: DictConfig) -> dict[str, list[str]]:
    """The config's sweep axes (`hydra.sweeper.params`): key -> its values."""
    params = cfg.hydra.sweeper.get("params") or {}
    return {k: [v.strip() for v in str(vals).split(",")] for k, vals in params.items()}


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(plain overrides, sweep axes) of a command line: `seed=1,2` is an axis, as under `bireco-train -m`."""
    fixed: list[str] = []
    axes: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            axes[o.get_key_element()] = list(o.sweep_string_iterator())
        else:
            fixed.append(o.input_line)
    return fixed, axes


def _peft(p: DictConfig) -> str:
    return f"LoRA r={p.r} alpha={p.alpha} dropout={p.dropout}" if p.enabled else "full"


def describe(job: DictConfig) -> dict[str, Any]:
    """The settings that decide a job's result and cost, resolved."""
    out: dict[str, Any] = {"model": job.model.name, "pretrained": job.model.pretrained, "pipeline": job.pipeline.name}
    for name in job.pipeline.stages:
        st = job.stages[name]
        entry = {
            "steps": st.max_steps,
            "lr": st.optimizer.lr,
            "warmup": st.scheduler.warmup_steps if st.get("scheduler") else None,
            "batch": f"{st.batch_size}x{st.accumulate_grad_batches} accum per device",
            "peft": f"LoRA r={st.peft.r} alpha={st.peft.alpha} dropout={st.peft.dropout}"
            if st.peft.enabled
            else "full",
        }
        entry.update({k: st.loss[k] for k in ("alpha", "scale", "anchor") if k in st.loss})
        if st.get("strategy") is not None:  # a stage's own strategy (7B/8B Stage I: FSDP) over trainer's
            strategy = st.strategy
            entry["strategy"] = (
                strategy if isinstance(strategy, str) else OmegaConf.to_container(strategy, resolve=True)
            )
        cache = st.get("grad_cache") or {}
        if cache.get("chunk_size") or cache.get("max_tokens"):
            entry["grad_cache"] = {k: v for k, v in cache.items() if k in ("chunk_size", "max_tokens") and v}
        out[name] = entry
    out["data"] = f"{job.data.name} ({job.data.get('path', 'generated')})"
    out["eval"] = job.eval.name
    out["trainer"] = f"{job.trainer.strategy} precision={job.trainer.precision}"
    launcher = OmegaConf.to_container(job.hydra.launcher, resolve=True)
    keys = ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "timeout_min", "partition")
    out["resources"] = {k: launcher[k] for k in keys if k in launcher}
    HydraConfig.instance().set_config(job)  # the run folder interpolates hydra:job.override_dirname
    out["dir"] = f"{job.hydra.sweep.dir}/{job.hydra.sweep.subdir}"
    return out


class SweepPlanError(UserError, ValueError):
    """A sweep that would be refused when launched."""


def required_unset(cfg: DictConfig) -> list[str]:
    """The job's `???` settings (Hydra's own `hydra.*` aside), read without resolving interpolations."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif node == "???":
            found.append(path)

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}, "")
    return found


def plan(overrides: list[str], models: list[str] | None = None) -> list[dict[str, Any]]:
    """Every job of the sweep(s): one sweep per model when `models` is given (per-model SLURM resources)."""
    jobs = []
    fixed, axes = split_overrides(overrides)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for model in models or [None]:
            base_overrides = fixed + ([f"model={model}"] if model else [])
            base = compose("train", overrides=base_overrides, return_hydra_config=True)
            # as Hydra's basic sweeper: a command-line key, swept or not, replaces the config's axis for that key
            given = {o.get_key_element() for o in OverridesParser.create().parse_overrides(base_overrides)}
            params = {**{k: v for k, v in sweep_params(base).items() if k not in given}, **axes}
            for combo in itertools.product(*params.values()):
                job_overrides = base_overrides + [f"{k}={v}" for k, v in zip(params, combo, strict=True)]
                check_override_types("train", job_overrides)
                job = compose("train", overrides=job_overrides, return_hydra_config=True)
                unset = required_unset(job)
                if unset:  # `bireco-train` refuses these where it first reads them: say so before launching
                    raise SweepPlanError(f"{' '.join(k + '=' for k in unset)} required (the config has no default)")
                validate_config(job)
                jobs.append(describe(job))
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=paper_table")
    parser.add_argument("--models", nargs="*", default=None, help="one sweep per model preset")
    args = parser.parse_args(argv)
    from bireco.utils.resolvers import register

    register()
    try:
        jobs = plan(args.overrides, args.models)
    except HydraException as e:  # an unknown group option, a bad override: Hydra's message, on one line
        fail(PROGRAM, one_line(str(e)))
    except Exception as e:
        exit_on_user_error(e, PROGRAM)
        raise
    for i, job in enumerate(jobs, 1):
        sys.stdout.write(f"job {i}/{len(jobs)}: {job['model']} / {job['pipeline']}  ->  {job['dir']}\n")
        for key, value in job.items():
            if key not in ("model", "pipeline", "dir"):
                sys.stdout.write(f"    {key}: {value}\n")
    sys.stdout.write(f"{len(jobs)} jobs composed and validated; nothing launched (dry run)\n")


if __name__ == "__main__":
    main()
