"""Reject contradictory or unknown settings before any model is loaded (clear message, valid choices listed).

This module holds the rules that span settings (the stage list vs the stage configs, precision vs full
fine-tuning, the candidate pool vs accumulation and ranks, GradCache vs sharding); each setting's own check lives
with its owner and is called from here: a loss's in its constructor, a stage's loop settings in their schema and
LoRA settings in `bireco.stage_settings`, the model's in `bireco.models.settings`, the data's in
`bireco.data.prepare`.

`validate_config` reads the composed config (and, for a local `model.pretrained`, whether that folder exists and
its config.json's context): it runs before any weights, tokenizer or data are touched, so a typo costs seconds,
not a model load. Unknown *config group options* (`model=`, `template=`, `pooling=`,
`pipeline=`, ...) never get here: Hydra refuses them while composing and lists the available options.

How the config says things, so "contradictory" has one meaning:
- full fine-tuning vs LoRA is the stage's `peft` group: `peft@stages.<stage>.peft=none` (full: `enabled: false`
  and no LoRA keys) or `=lora` (`enabled: true`, `r`, `alpha`, `dropout`, `target_modules`). A LoRA setting on a
  full fine-tuning stage (e.g. `+stages.reconstruction.peft.r=8`, or `stages.contrastive.peft.enabled=false`
  while the LoRA settings are still there) is rejected rather than silently ignored.
- stages chain by order: each stage of `pipeline.stages` starts from the previous stage's artifact, the first
  from the base model. A stage may say where it expects to start (`stages.<stage>.init_from`: a stage name, or
  `base`); that must be what the stage list gives it, so an experiment written for `pipeline=bireco` (Stage II
  from Stage I) cannot silently run under `pipeline=baseline` (Stage II from the base model).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bireco.data.prepare import check_data_settings
from bireco.errors import ConfigError
from bireco.models.settings import check_model_settings, check_pooling
from bireco.stage_settings import (
    build_objective,
    check_candidate_pool,
    check_optimizer,
    check_peft,
    check_stage_loop,
    stage_max_steps,
    stage_strategy,
)

METHOD_ORDER = ("reconstruction", "contrastive")  # the method's stages, in the order they run
WARMUP = "warmup"  # the tiny preset's warm-up: runs before the pipeline, never in it
BASE = "base"


# Lightning precisions that cast the module's parameters themselves: full fine-tuning would step bf16/fp16 weights
LOW_PRECISION_WEIGHTS = ("bf16-true", "16-true", "bf16", "16", "half", "transformer-engine")


def _check_pipeline(cfg: DictConfig) -> list[str]:
    """Stages are the configs under `stages.` (a new one: `+stage@stages.<name>=<file>`); the method's own run
    in its order; each runs once."""
    stages = cfg.pipeline.stages
    available = [k for k in cfg.stages if k != WARMUP]
    if not isinstance(stages, ListConfig) or not stages:
        raise ConfigError(f"pipeline.stages must be a non-empty list of stages from {available}, got {stages}")
    stages = list(stages)
    unknown = [s for s in stages if s not in available]
    if unknown:
        raise ConfigError(
            f"pipeline.stages: unknown stage(s) {unknown}; choose from {available} (or add one: "
            "+stage@stages.<name>=<config>)"
        )
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise ConfigError(f"pipeline.stages={stages}: stage(s) {repeated} listed twice; each stage runs once")
    method = [s for s in stages if s in METHOD_ORDER]
    if method != sorted(method, key=METHOD_ORDER.index):
        raise ConfigError(
            f"pipeline.stages={stages}: stages run in the method's order {list(METHOD_ORDER)} "
            "(Stage II starts from Stage I's weights)"
        )
    for i, name in enumerate(stages):
        expected = stages[i - 1] if i else BASE
        declared = cfg.stages[name].get("init_from")
        if declared is not None and declared != expected:
            raise ConfigError(
                f"stages.{name}.init_from='{declared}', but pipeline.stages={stages} (pipeline={cfg.pipeline.name}) "
                f"starts '{name}' from {'the base model' if expected == BASE else repr(expected)}: each stage starts "
                f"from the previous stage's artifact, the first from '{BASE}'; choose a pipeline that runs "
                f"'{declared}' right before '{name}', or drop stages.{name}.init_from"
            )
    return stages


def _check_stage(name: str, st: DictConfig) -> None:
    loop = check_stage_loop(name, st)
    check_peft(name, st.get("peft"))
    objective = build_objective(name, st)
    if loop.anchor_gain is not None and not hasattr(objective, "anchor_gain"):
        raise ConfigError(
            f"stages.{name}.anchor_gain: the stage's loss ({type(objective).__name__}) has no anchor gain; it is "
            f"Stage I's (BidirectionalReconstruction) — set stages.{name}.anchor_gain=null"
        )
    check_optimizer(name, st)


def eval_dims(ecfg: DictConfig) -> list[int]:
    """`eval.dims`: the Matryoshka widths to score again, whole numbers (checked before anything is evaluated)."""
    raw = ecfg.get("dims")
    dims = [raw] if isinstance(raw, int) else list(raw or [])  # eval.dims=64: one width
    bad = [d for d in dims if isinstance(d, bool) or not isinstance(d, int)]
    if bad:
        raise ConfigError(f"eval.dims: {', '.join(map(repr, bad))} not a whole number of dimensions, in {dims}")
    return dims


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first unknown or contradictory setting; reads the config only (nothing loaded)."""
    stages = _check_pipeline(cfg)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):  # seed=null failed inside the sampler
        raise ConfigError(f"seed={cfg.seed}: must be a whole number (it seeds data order, init and dropout)")
    check_model_settings(cfg.model)
    check_pooling(cfg.pooling.name)
    check_data_settings(cfg.data)
    for name in ([WARMUP] if cfg.model.tiny is not None else []) + stages:
        _check_stage(name, cfg.stages[name])
        stage_max_steps(cfg, name)
        precision = str(cfg.trainer.get("precision"))
        if not cfg.stages[name].peft.enabled and precision in LOW_PRECISION_WEIGHTS:
            raise ConfigError(
                f"trainer.precision={precision} casts the weights themselves, so stage '{name}' (full fine-tuning) "
                "would step low-precision weights and lose most updates; use precision=bf16-mixed (fp32 master "
                "weights, bf16 compute)"
            )
    probe = cfg.probe
    if bool(probe.get("mteb_data_root")) != bool(probe.get("mteb_every_n_steps")):
        raise ConfigError(
            f"probe.mteb_data_root={probe.get('mteb_data_root')!r} and probe.mteb_every_n_steps="
            f"{probe.get('mteb_every_n_steps')!r}: set both to run the in-training mteb probe, or neither"
        )
    scored = OmegaConf.select(cfg, "probe.reconstruction.stages")
    if scored is not None and (
        not isinstance(scored, ListConfig) or any(not isinstance(s, str) or s not in cfg.stages for s in scored)
    ):
        raise ConfigError(
            f"probe.reconstruction.stages={scored!r}: a list of stage names ({', '.join(cfg.stages)}), or null "
            "for every stage"
        )
    _check_scale_out(cfg, stages)


def _check_scale_out(cfg: DictConfig, stages: list[str]) -> None:
    """Strategies, the candidate pool, where GradCache and the anchor-gain monitor work (they depend on the
    strategy and the trainer's settings, which `_check_stage` does not see)."""
    from bireco.distributed import strategy_name

    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    known = isinstance(devices, int) and devices > 0 and isinstance(nodes, int)  # else known only at fit start
    for stage in stages:
        st = cfg.stages[stage]
        _check_strategy(stage_strategy(cfg, stage))
        if "pool" in st:
            check_candidate_pool(st, devices * nodes if known else None, stage)
        gc = st.get("grad_cache") or {}
        chunk, budget = gc.get("chunk_size"), gc.get("max_tokens")
        name = strategy_name(stage_strategy(cfg, stage))
        gain = st.get("anchor_gain")
        if gain is not None and name.startswith("fsdp"):
            raise ConfigError(
                f"stages.{stage}.anchor_gain with trainer.strategy={name}: the monitor runs the encoder outside "
                f"the FSDP wrapper (its blocks are sharded); set stages.{stage}.anchor_gain=null"
            )
        at_least = [k for k in ("min_steps", "min_epochs") if cfg.trainer.get(k)]
        if gain is not None and gain.get("stop_at") is not None and at_least:
            raise ConfigError(
                f"stages.{stage}.anchor_gain.stop_at with trainer.{at_least[0]}: Lightning trains on past the stop "
                f"until {at_least[0]} is met, so the stage would not end where the record says; unset one of them"
            )
        if (chunk or budget) is not None and (name.startswith("fsdp") or name.startswith("deepspeed")):
            what = f"chunk_size={chunk}" if chunk is not None else f"max_tokens={budget}"
            raise ConfigError(
                f"stages.{stage}.grad_cache.{what} with trainer.strategy={name}: GradCache needs whole "
                "(unsharded) parameters; use it with trainer=ddp (or one device), or shard with gradient checkpointing"
            )


def _check_strategy(strategy: Any) -> None:
    """Strategy mapping (FSDP / DeepSpeed), no ZeRO-3, DeepSpeed installed."""
    from bireco.distributed import deepspeed_available, strategy_name

    name = strategy_name(strategy)
    if isinstance(strategy, dict) and name not in ("fsdp", "deepspeed"):
        raise ConfigError(f"trainer.strategy.name='{name}': choose fsdp or deepspeed (or a Lightning strategy name)")
    zero3 = name.startswith("deepspeed_stage_3") or (
        name == "deepspeed" and isinstance(strategy, dict) and int(strategy.get("stage", 2)) == 3
    )
    if zero3:
        raise ConfigError(
            f"trainer.strategy={name} (DeepSpeed ZeRO-3): parameters stay partitioned across ranks, and bireco "
            "writes each stage's artifact (what the next stage starts from) from whole weights, which it gathers "
            "for FSDP but not for ZeRO-3. Use trainer=fsdp (shards parameters, gradients and optimizer state too) "
            "or trainer=deepspeed_zero2"
        )
    if name.startswith("deepspeed") and not deepspeed_available():
        raise ConfigError(
            f"trainer.strategy={name}: DeepSpeed is not installed (it is not a bireco dependency: it needs a CUDA "
            "toolchain). `pip install deepspeed` on the cluster, or use trainer=fsdp / trainer=ddp"
        )
