"""Experiment-tracker housekeeping: closing runs, and the final numbers of a run in its wandb group."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def finish_wandb() -> None:
    """Close the active wandb run, if wandb was ever imported (never imports it otherwise)."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def wandb_mode(configured: str | None) -> str:
    """Online with an API key, offline otherwise (`wandb sync` uploads later)."""
    return configured or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def log_final_metrics(cfg: Any, run_dir: Path, results: dict[str, Any]) -> None:
    """Put a run's final probe and mteb scores in the summary of a `<run>/final` wandb run of its group.

    Per-stage runs carry the curves; this one carries what the dashboard table compares across a sweep.
    """
    wcfg = (cfg.get("logger") or {}).get("wandb")
    if wcfg is None:
        return
    import wandb

    run_name = cfg.get("run_name") or f"{cfg.model.name}-{cfg.pipeline.name}"
    run = wandb.init(
        project=wcfg.get("project"),
        entity=wcfg.get("entity"),
        group=wcfg.get("group") or cfg.get("run_group") or run_name,
        name=f"{run_name}/final",
        job_type="final",
        tags=[cfg.model.name, cfg.pipeline.name, "final"],
        dir=str(run_dir),
        mode=wandb_mode(wcfg.get("mode")),
    )
    summary: dict[str, Any] = {f"probe/{k}": v for k, v in (results.get("probe") or {}).items() if k != "stage"}
    ev = results.get("eval") or {}
    summary.update({f"mteb/{t}": v["main_score"] for t, v in (ev.get("tasks") or {}).items()})
    summary.update({f"mteb_category/{c}": v for c, v in (ev.get("categories") or {}).items()})
    if ev.get("average") is not None:
        summary["mteb/average"] = ev["average"]
    run.summary.update(summary)
    run.finish()
