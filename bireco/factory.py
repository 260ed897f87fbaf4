"""Build a stage's pieces from the composed config: backbone (+LoRA), encoder, module, data, callbacks, Trainer.

This is the one place that maps config to objects, so the modules themselves stay config-free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from bireco.data.collate import PairCollator
from bireco.data.datamodule import PairDataModule
from bireco.data.prepare import PreparedData
from bireco.distributed import build_strategy, strategy_name
from bireco.errors import ConfigError
from bireco.lit.anchor_gain import AnchorGainMonitor
from bireco.lit.callbacks import MtebProbe, ParamCounts, RetrievalProbe
from bireco.lit.compute import ComputeReport
from bireco.lit.fault_tolerance import AtomicCheckpointIO, FaultInjection, FiniteGuard, PreemptionCheckpoint, RngState
from bireco.lit.module import StageModule
from bireco.lit.progress import StageProgressBar
from bireco.lit.reconstruction_score import ReconstructionScore
from bireco.lit.schedules import warmup_note
from bireco.models.backbone import BackboneSpec, load_backbone
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.reconstruct.generate import DecodeConfig
from bireco.stage_settings import (
    build_objective,
    check_candidate_pool,
    check_stage_loop,
    stage_max_steps,
    stage_strategy,
)
from bireco.utils.tracking import wandb_mode

log = logging.getLogger(__name__)


def build_template(cfg: DictConfig) -> Template:
    return Template(**OmegaConf.to_container(cfg.template, resolve=True))


def load_dtype(cfg: DictConfig, stage: DictConfig) -> str:
    """The dtype a stage's weights are loaded in.

    Full fine-tuning keeps fp32 master weights: AdamW stepping bf16 weights rounds most updates away at the
    paper's lr 4e-5 (measured in tests/lit/test_master_weights.py), and `precision: bf16-mixed` only autocasts
    the compute. `model.dtype` (bf16 for the real presets) is for frozen weights: LoRA stages' base (peft keeps
    the adapters in fp32) and evaluation.
    """
    return cfg.model.dtype if stage.peft.enabled else cfg.model.master_dtype


def build_encoder(cfg: DictConfig, stage: DictConfig, init_from: str) -> TextEncoder:
    """Load weights from `init_from` (hub name, folder or stage artifact), add LoRA if the stage asks for it."""
    m = cfg.model
    model, tokenizer = load_backbone(
        BackboneSpec(
            init_from, m.revision if init_from == m.pretrained else None, load_dtype(cfg, stage), m.attn_implementation
        )
    )
    model.train()  # from_pretrained returns eval mode, which would silently switch off (LoRA) dropout
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if stage.peft.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=stage.peft.r,
            lora_alpha=stage.peft.alpha,
            lora_dropout=stage.peft.dropout,
            target_modules=list(stage.peft.target_modules),
            bias="none",
        )
        model = get_peft_model(model, lora)
        if m.gradient_checkpointing:
            model.enable_input_require_grads()
    attention = m.get("attention", "causal")
    return TextEncoder(model, tokenizer, build_template(cfg), cfg.pooling.name, m.max_length, attention=attention)


def build_module(name: str, stage: DictConfig, encoder: TextEncoder) -> StageModule:
    """The stage's loss (`stages.<name>.loss`, wrapped in GradCache when `grad_cache` sets a size), optimizer and
    schedule, instantiated from its config, around `encoder`."""
    objective = build_objective(name, stage)
    try:
        objective.check(encoder)
    except ValueError as e:
        raise ConfigError(f"stages.{name}.loss: {e}") from e
    scheduler = instantiate(stage.scheduler) if stage.get("scheduler") is not None else None
    return StageModule(encoder, objective, instantiate(stage.optimizer), scheduler, name)


def build_loggers(cfg: DictConfig, stage_dir: Path, run_name: str, stage: str) -> list[Any]:
    """Instantiate `cfg.logger.*` for this stage (CSV under the stage folder; one wandb run per stage)."""
    loggers = []
    for lcfg in (cfg.logger or {}).values():
        kwargs = OmegaConf.to_container(lcfg, resolve=True)
        target = kwargs.pop("_target_")
        cls = get_class(target)
        if target.endswith("CSVLogger"):
            kwargs.update(save_dir=str(stage_dir), name="", version="logs")
        elif target.endswith("WandbLogger"):
            kwargs.update(
                save_dir=str(stage_dir),
                name=f"{run_name}/{stage}",
                group=kwargs.get("group") or cfg.get("run_group") or run_name,
                tags=[cfg.model.name, cfg.pipeline.name, stage],
                mode=wandb_mode(kwargs.get("mode")),
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        else:
            kwargs.setdefault("save_dir", str(stage_dir))
        loggers.append(cls(**kwargs))
    return loggers


def build_trainer_and_module(
    cfg: DictConfig, name: str, init_from: str, stage_dir: Path, data: PreparedData, run_name: str
) -> tuple[L.Trainer, StageModule, PairDataModule, RetrievalProbe | None]:
    """Everything `Trainer.fit` needs for one stage."""
    stage = cfg.stages[name]
    encoder = build_encoder(cfg, stage, init_from)
    module = build_module(name, stage, encoder)
    collator = PairCollator(
        encoder.bound,
        {},
        encoder.pad_id,
        cfg.model.max_length,
        with_negatives=stage.with_negatives,
        duplicate_key=module.objective.duplicate_key,
    )
    datamodule = PairDataModule(
        data.train_path,
        collator,
        batch_size=stage.batch_size,
        sources_cfg=OmegaConf.to_container(cfg.data.sources, resolve=True),
        default_instruction=cfg.data.default_instruction,
        val_path=data.val_path,
        val_rows=cfg.data.val_rows,
        seed=cfg.seed,
        on_bad_row=cfg.data.on_bad_row,
        max_rows_per_source=cfg.data.max_rows_per_source,
        length_grouping=cfg.data.get("length_grouping", 0),
        accumulate=stage.accumulate_grad_batches,
    )
    last_ckpt = stage_dir / "checkpoints" / "last.ckpt"
    fault = FaultInjection.from_env(name)
    callbacks: list[L.Callback] = [
        *([fault] if fault else []),
        RngState(),
        PreemptionCheckpoint(last_ckpt),
        FiniteGuard(name, last_ckpt),
        ModelCheckpoint(
            dirpath=last_ckpt.parent,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=stage.checkpoint_every_n_steps,
        ),
        ParamCounts(),
        ComputeReport(every_n_steps=int(cfg.trainer.get("log_every_n_steps") or 50)),
    ]
    gain = check_stage_loop(name, stage).anchor_gain
    if gain is not None:  # refused under FSDP (bireco.config)
        callbacks.append(AnchorGainMonitor(gain))
    loggers = build_loggers(cfg, stage_dir, run_name, name)
    if loggers:  # reports only through loggers (tokens/s, FLOPs and memory: ComputeReport, above)
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    # the probes encode on rank 0 alone; under FSDP every forward is a collective (blocks are all-gathered), so
    # a rank-0-only forward would wait forever for the other ranks
    sharded = strategy_name(stage_strategy(cfg, name)).startswith("fsdp")
    if sharded:
        log.warning("stage '%s': training probes are off under FSDP (they run on rank 0 alone); use bireco-eval", name)
    probe = None
    if data.probe_dir is not None and stage.probe and not sharded:
        probe = RetrievalProbe(
            data.probe_dir,
            data.probe_instruction,
            cfg.probe.every_n_steps,
            stage_dir / "probe.jsonl",
            max_queries=cfg.probe.max_queries,
        )
        callbacks.append(probe)
    mteb_dir = cfg.probe.get("mteb_data_root")
    if mteb_dir and stage.probe and cfg.probe.get("mteb_every_n_steps") and not sharded:
        callbacks.append(
            MtebProbe(
                mteb_dir,
                dict(OmegaConf.to_container(cfg.probe.mteb_instructions, resolve=True) or {}),
                cfg.probe.mteb_every_n_steps,
                stage_dir / "mteb_probe.jsonl",
            )
        )
    rcfg = cfg.probe.get("reconstruction")
    scored = rcfg is not None and rcfg.enabled and (rcfg.get("stages") is None or name in rcfg.stages)
    if scored and not sharded:
        # scored on Stage I's targets where the run has a Stage I config; else ReconstructionScore's default
        segments = OmegaConf.select(cfg, "stages.reconstruction.loss.target_segments")
        targets = {} if segments is None else {"target_segments": tuple(segments)}
        callbacks.append(
            ReconstructionScore(
                stage_dir / "reconstruction.json",
                n_rows=rcfg.n_rows,
                decode=DecodeConfig(max_new_tokens=rcfg.max_new_tokens),
                **targets,
                batch_size=rcfg.batch_size,
            )
        )
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_kwargs.get("enable_progress_bar", True):
        callbacks.append(StageProgressBar(name))
    trainer_kwargs["strategy"] = build_strategy(stage_strategy(cfg, name), encoder.model)
    # single-device / DDP checkpoints are replaced atomically; FSDP and DeepSpeed write their sharded layouts
    plugins = (
        [AtomicCheckpointIO()] if not isinstance(trainer_kwargs["strategy"], L.pytorch.strategies.Strategy) else []
    )
    try:
        trainer = L.Trainer(
            **trainer_kwargs,
            plugins=plugins,
            max_steps=stage_max_steps(cfg, name),
            max_epochs=-1,
            accumulate_grad_batches=stage.accumulate_grad_batches,
            val_check_interval=stage.val_check_interval,
            check_val_every_n_epoch=None,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(stage_dir),
            use_distributed_sampler=False,  # our batch sampler shards the homogeneous global batch itself
        )
    except MisconfigurationException as e:  # e.g. trainer=gpu where there is no GPU: Lightning's words, one line
        raise ConfigError(f"trainer settings (accelerator={trainer_kwargs.get('accelerator')}): {e}") from e
    # every rank checks (a refusal stops them all); rank 0 logs, with the world size the trainer found
    pool_note = check_candidate_pool(stage, trainer.num_devices * trainer.num_nodes, name) if "pool" in stage else None
    if pool_note and trainer.is_global_zero:
        log.warning(pool_note)
    warmup = OmegaConf.select(stage, "scheduler.warmup_steps")
    if isinstance(warmup, int) and trainer.is_global_zero and (note := warmup_note(warmup, trainer.max_steps)):
        log.warning("stage '%s': %s", name, note)
    return trainer, module, datamodule, probe
