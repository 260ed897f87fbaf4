"""Shared helpers for the integration tests: compose the real config, shrink it to a few CPU steps."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from bireco.conf import CONF_DIR
from bireco.models.tiny import TinyLlamaSpec
from bireco.utils.resolvers import register

register()

# a few optimizer steps of everything, small batches, a small probe: seconds per pipeline on 2 cores
FAST = [
    "stages.warmup.max_steps=4",
    "stages.warmup.batch_size=8",
    "stages.warmup.val_check_interval=4",
    "stages.reconstruction.max_steps=3",
    "stages.reconstruction.batch_size=4",
    "stages.reconstruction.accumulate_grad_batches=1",
    "stages.reconstruction.val_check_interval=3",
    "stages.reconstruction.scheduler.warmup_steps=1",
    "stages.contrastive.max_steps=3",
    "stages.contrastive.batch_size=4",
    "stages.contrastive.accumulate_grad_batches=1",
    "stages.contrastive.val_check_interval=3",
    "stages.contrastive.scheduler.warmup_steps=1",
    "probe.max_queries=16",
    "probe.every_n_steps=2",
    "probe.reconstruction.n_rows=4",
    "probe.reconstruction.max_new_tokens=8",
    "data.world.n_train_entities=60",
    "data.world.n_heldout_entities=20",
    "data.world.n_heldout_queries=24",
    "data.world.n_distractor_entities=5",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def stage_module(encoder: Any, stage: str, **settings: Any) -> Any:
    """The stage's module as `bireco-train` builds it from the composed config, around `encoder`; `settings` set
    keys of the stage's config (dotted, relative to `stages.<stage>`: `**{"loss.alpha": 0.5}`)."""
    from bireco.factory import build_module

    cfg = compose_cfg([])
    for key, value in settings.items():
        OmegaConf.update(cfg, f"stages.{stage}.{key}", value, merge=False)
    return build_module(stage, cfg.stages[stage], encoder)


def compose_cfg(overrides: list[str], fast: bool = True, return_hydra_config: bool = False) -> DictConfig:
    """The composed training config, as `bireco-train` would see it."""
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        extra = list(FAST) if fast else []
        # synthetic-world shrinking keys only exist with data=synthetic
        if any(o.startswith("data=") and o != "data=synthetic" for o in overrides):
            extra = [o for o in extra if not o.startswith("data.world")]
        return compose("train", overrides=extra + list(overrides), return_hydra_config=return_hydra_config)


# the smallest Llama the unit tests build directly (2 layers, 32 wide, GQA 2:1); tests override the vocabulary
MICRO_SPEC = TinyLlamaSpec(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=128,
    seed=3,
)


def logged_train_losses(stage_dir: Path) -> dict[int, float]:
    """step -> train loss from a stage's metrics.csv; a resumed run re-logs the steps after its checkpoint, the
    last row wins."""
    out = {}
    with open(stage_dir / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def artifact_weights(stage_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a stage's artifact (full weights or adapter)."""
    return {k: v for f in sorted((stage_dir / "artifact").glob("*.safetensors")) for k, v in load_file(f).items()}
