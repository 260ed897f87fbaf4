"""Experiment-tracker housekeeping."""

from __future__ import annotations

import sys


def finish_wandb() -> None:
    """Close the active wandb run, if wandb was ever imported (never imports it otherwise)."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
