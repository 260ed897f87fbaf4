"""Reject contradictory or unknown settings before any model is loaded (clear message, valid choices listed)."""

from __future__ import annotations

from omegaconf import DictConfig

KNOWN_STAGES = ("reconstruction", "contrastive")


class ConfigError(ValueError):
    """The composed configuration is invalid."""


def validate_config(cfg: DictConfig) -> None:
    stages = list(cfg.pipeline.stages)
    unknown = [s for s in stages if s not in KNOWN_STAGES]
    if unknown:
        raise ConfigError(f"pipeline.stages: unknown stage(s) {unknown}; choose from {list(KNOWN_STAGES)}")
    for name in stages:
        if name not in cfg.stages:
            raise ConfigError(f"pipeline stage '{name}' has no config under stages.{name}")
    alpha = cfg.stages.reconstruction.alpha
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"stages.reconstruction.alpha must be in [0, 1], got {alpha}")
    if cfg.model.tiny is None and not cfg.model.pretrained:
        raise ConfigError(f"model '{cfg.model.name}': set model.pretrained (hub name or folder) or model.tiny")
    for name in stages:
        st = cfg.stages[name]
        if st.max_steps is None or st.max_steps <= 0:
            raise ConfigError(f"stages.{name}.max_steps must be a positive number of optimizer steps")
        if st.peft.enabled and not st.peft.get("target_modules"):
            raise ConfigError(f"stages.{name}.peft: LoRA needs target_modules (model.lora_target_modules)")
