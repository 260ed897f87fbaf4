"""Runs `cfg.pipeline.stages` in order, each stage starting from the previous stage's artifact.

Stage sequencing is data: `pipeline=bireco` is `[reconstruction, contrastive]`, `pipeline=baseline` is
`[contrastive]`, and nothing else differs. Every stage writes `stages/<i>-<name>/` with its artifact, logs,
checkpoints and a `stage_done.json` written last; a rerun skips finished stages and resumes an interrupted one
from its `last.ckpt`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from bireco.config import eval_dims, validate_config
from bireco.data.formats import DataFormatError, iter_rows, list_row_files
from bireco.data.prepare import PreparedData, prepare_data
from bireco.distributed import full_state_dict, is_global_zero, launched_as_many_processes
from bireco.errors import ConfigError, UserError
from bireco.factory import build_trainer_and_module
from bireco.lit.anchor_gain import AnchorGainMonitor
from bireco.lit.compute import ComputeReport
from bireco.lit.fault_tolerance import Interrupted, Preempted, PreemptionCheckpoint
from bireco.lit.reconstruction_score import ReconstructionScore
from bireco.models.backbone import save_artifact
from bireco.models.prompts import training_prompts
from bireco.models.settings import local_or_hub_name
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from bireco.runs import (
    ARTIFACT_DIR,
    ARTIFACT_FILE,
    CONFIG_FILE,
    DONE_FILE,
    RESULTS_FILE,
    STAGES_DIR,
    Run,
    stage_folder,
)
from bireco.utils.io import atomic_write_json, atomic_write_text, sha256_files, sha256_text
from bireco.utils.locking import file_lock
from bireco.utils.tracking import finish_wandb

log = logging.getLogger(__name__)


class RunFolderTaken(UserError):
    """The run folder holds another run (another config, pipeline or seed): nothing is written into it."""


def check_run_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse a folder that holds another run before anything is written there (a rerun of the same config
    resumes or skips; a seed or setting that differs must get its own folder)."""
    stages = [stage_folder(i, name) for i, name in enumerate(cfg.pipeline.stages)]
    r = Run(run_dir).results()
    if r is not None:
        mine = {"pipeline": cfg.pipeline.name, "seed": cfg.seed, "stages": list(cfg.pipeline.stages)}
        theirs = {k: r.get(k) for k in mine}
        if theirs != mine:
            raise RunFolderTaken(
                f"{run_dir} holds a finished run {theirs}, not {mine}; nothing was written there: " + FOLDER_HINT
            )
    found = {s.folder for s in Run(run_dir).stages()}
    other = sorted(found - set(stages))
    if other:
        raise RunFolderTaken(
            f"{run_dir} holds stage folders {other} that pipeline={cfg.pipeline.name} does not run ({stages}); "
            "nothing was written there: " + FOLDER_HINT
        )
    for folder, name in zip(stages, cfg.pipeline.stages, strict=True):
        marker = run_dir / STAGES_DIR / folder / DONE_FILE
        if marker.is_file():
            done = json.loads(marker.read_text()).get("config_hash")
            if done != stage_config_hash(cfg, name):
                raise RunFolderTaken(
                    f"{run_dir / 'stages' / folder} was finished with another configuration (config hash {done} != "
                    f"{stage_config_hash(cfg, name)}); nothing was written there: " + FOLDER_HINT
                )


FOLDER_HINT = (
    "give this run its own folder (hydra.run.dir=...; in a sweep, put what differs — e.g. the seed — in "
    "hydra.sweep.subdir, as the experiment configs do)"
)


class StageError(RuntimeError):
    """A stage failed; carries the stage's name so failure records and tables can say where."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage}: {type(cause).__name__}: {cause}")
        self.stage = stage


def stage_config_hash(cfg: DictConfig, name: str) -> str:
    """Hash of everything that determines a stage's result, to refuse resuming a run with another config."""
    relevant = {
        "stage": OmegaConf.to_container(cfg.stages[name], resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "pooling": OmegaConf.to_container(cfg.pooling, resolve=True),
        "seed": cfg.seed,
    }
    return sha256_text(json.dumps(relevant, sort_keys=True, default=str))


def data_files_stamp(cfg: DictConfig) -> str | None:
    """Names, sizes and modification times of the training (and validation) files a `data.path` names, hashed;
    None for generated data (its content is in the tiny cache's key). Files edited in place under the same path
    leave the config hash as it was, so a finished stage would be reused without a word: this tells them apart."""
    paths = [cfg.data.get(k) for k in ("path", "val_path")]
    try:
        files = [f for p in paths if p and Path(str(p)).exists() for f in list_row_files(str(p))]
    except DataFormatError:  # prepare_data has said so already; a stamp is no reason to fail
        return None
    if not files:
        return None
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]  # names: the data may move
    return sha256_text(json.dumps(stats))


def finished(stage_dir: Path, config_hash: str) -> bool:
    """A stage counts as done only if its marker (written last) and its artifact are both there."""
    marker = stage_dir / DONE_FILE
    if not marker.is_file():
        return False
    done = json.loads(marker.read_text())
    if done.get("config_hash") != config_hash:
        raise RuntimeError(
            f"{stage_dir} was finished with a different configuration (config hash {done.get('config_hash')} != "
            f"{config_hash}); use another run directory (hydra.run.dir=...) instead of mixing two experiments"
        )
    return (stage_dir / ARTIFACT_DIR / ARTIFACT_FILE).is_file()


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest of `checkpoints/last.ckpt` (periodic and SIGTERM saves) and Lightning's SLURM requeue
    checkpoints (`hpc_ckpt_*.ckpt`, written on SIGUSR1 under SLURM auto-requeue)."""
    found = [p for p in (stage_dir / "checkpoints" / "last.ckpt", *stage_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def run_stage(
    cfg: DictConfig,
    name: str,
    init_from: str,
    stage_dir: Path,
    data: PreparedData,
    run_name: str,
    config_hash: str | None = None,
) -> dict[str, Any]:
    """Train one stage from `init_from` into `stage_dir`; returns the record stored in its done marker."""
    config_hash = config_hash or stage_config_hash(cfg, name)
    stamp = data_files_stamp(cfg)
    if finished(stage_dir, config_hash):
        log.info("stage '%s' already finished in %s: skipping", name, stage_dir)
        done = json.loads((stage_dir / DONE_FILE).read_text())
        if done.get("data_files") and stamp and done["data_files"] != stamp:
            log.warning(
                "stage '%s' in %s was trained before the data files under data.path changed (size or time): its "
                "result is the old data's; train on the new data in another run folder (hydra.run.dir=...)",
                name,
                stage_dir,
            )
        return done
    L.seed_everything(cfg.seed, workers=True)
    trainer, module, datamodule, probe = build_trainer_and_module(cfg, name, init_from, stage_dir, data, run_name)
    resume = latest_checkpoint(stage_dir)
    if resume is not None:
        log.info("stage '%s': resuming from %s", name, resume)
    on_ctrl_c = signal.getsignal(signal.SIGINT)  # Lightning sets it to "ignore" when it meets a Ctrl-C
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        # validation of the final weights: the stage's reported metrics never depend on where the last
        # val_check_interval fell, or on whether a killed run had already validated before its checkpoint
        if datamodule.val_set is not None:
            for result in trainer.validate(module, datamodule=datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in result.items()})
    except SIGTERMException as e:
        stop = Preempted(name, stage_dir / "checkpoints" / "last.ckpt")
        log.warning(stop.message)
        raise stop from e
    except SystemExit as e:
        if not isinstance(e.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) after a Ctrl-C only
            raise
        stop = Interrupted(name, latest_checkpoint(stage_dir))
        with contextlib.suppress(ValueError, TypeError):  # the handler from before (a notebook or test goes on)
            signal.signal(signal.SIGINT, on_ctrl_c)
        log.warning(stop.message)
        raise stop from e
    finally:
        finish_wandb()  # one wandb run per stage; also closed when the stage fails
    if trainer.interrupted:
        raise RuntimeError(f"stage '{name}' was interrupted; rerun the same command to resume")
    weights = full_state_dict(trainer)  # every rank: under FSDP this gathers the shards onto rank 0
    record, failure = None, None
    if trainer.is_global_zero:  # one writer per job; the others get its record below
        try:
            prompts = training_prompts(datamodule.collator.template, datamodule.collator.instructions)
            artifact = module.save_artifact(stage_dir / ARTIFACT_DIR, init_from, weights, prompts)
            record = {
                "stage": name,
                "config_hash": config_hash,
                "data_files": stamp,  # sizes and times of data.path's files: an in-place edit is warned on reuse
                "init_from": init_from,
                "artifact": str(artifact),
                "steps": trainer.global_step,
                "metrics": metrics,
                "probe": probe.history[-1] if probe is not None and probe.history else None,
                "reconstruction": next(
                    (c.result for c in trainer.callbacks if isinstance(c, ReconstructionScore)), None
                ),
                "compute": next((c.result for c in trainer.callbacks if isinstance(c, ComputeReport)), None),
                # Stage I's anchor-gain monitor: whether the stop ended the stage (stopped_at) or max_steps did
                "anchor_stop": next(
                    (c.summary() for c in trainer.callbacks if isinstance(c, AnchorGainMonitor)), None
                ),
            }
            atomic_write_json(stage_dir / DONE_FILE, record)  # written last: the stage counts as done from here on
        except Exception as e:
            failure = e
    # a broadcast, not a re-read of the file: it is also how the other ranks learn that rank 0 failed (they would
    # otherwise wait in the next collective until the process-group timeout)
    record, message = trainer.strategy.broadcast((record, None if failure is None else repr(failure)), src=0)
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"stage '{name}': rank 0 failed writing the stage's artifact or record: {message}")
    preemption = next(c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint))
    # SIGTERM during the stage's last step or its final validation: the stage finished, but the job must stop
    # (decided by all ranks together, so none of them goes on into the next stage alone)
    if trainer.strategy.reduce_boolean_decision(preemption.requested or trainer.received_sigterm, all=False):
        stop = Preempted(name, stage_dir / DONE_FILE)
        log.warning(stop.message)
        raise stop
    return record


def ensure_tiny_base(cfg: DictConfig, data: PreparedData) -> Path:
    """The tiny preset's base LLM: tokenizer + random init + causal-LM warm-up, cached by content.

    The cache key is the hash of the training files' bytes, the tiny spec and the warm-up stage config, so every
    pipeline of a sweep (bireco, baseline, ablations) starts from the *same* warmed-up weights, built once.
    """
    files = list_row_files(data.train_path)
    key = {
        "data": sha256_files(files),
        "tiny": OmegaConf.to_container(cfg.model.tiny, resolve=True),
        "warmup": OmegaConf.to_container(cfg.stages.warmup, resolve=True),
        "template": OmegaConf.to_container(cfg.template, resolve=True),
        "max_length": cfg.model.max_length,
    }
    root = Path(cfg.paths.cache_dir) / "tiny" / sha256_text(json.dumps(key, sort_keys=True))[:16]
    warm_dir = root / "warmup"
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):  # sweep jobs racing for the same base wait for one builder
        if (warm_dir / DONE_FILE).is_file():
            return warm_dir / ARTIFACT_DIR
        if launched_as_many_processes():
            # the warm-up would be a DDP fit inside this lock, which the other ranks are waiting on
            raise RuntimeError(
                f"the tiny base model is not built yet ({warm_dir}); build it once in a single process (the same "
                "command with trainer=cpu, or any single-process run of this data and model config), then relaunch"
            )
        init = root / "init"
        if not (init / ARTIFACT_FILE).is_file():
            texts = (t for r in iter_rows(files) for t in (r["query"], r["positive"], r["negative"]) if t)
            spec = TinyLlamaSpec(**OmegaConf.to_container(cfg.model.tiny, resolve=True))
            tokenizer = train_tokenizer(texts, spec.vocab_size, root / "tokenizer")
            model = build_tiny_model(spec, tokenizer)
            save_artifact(model, tokenizer, init, {"stage": "init", "tiny": key["tiny"]})
        atomic_write_json(root / "key.json", key)
        log.info("warming up the tiny base model in %s", warm_dir)
        # in this process only: under `trainer.devices=N` Lightning would spawn ranks that wait on this lock
        one = cfg.copy()
        with open_dict(one):
            one.trainer.merge_with({"devices": 1, "num_nodes": 1, "strategy": "auto"})
            one.model.attention = "causal"  # the warm-up trains an LM; the cached base serves either mode
        rec = run_stage(one, "warmup", str(init), warm_dir, data, f"{cfg.model.name}-warmup", config_hash=root.name)
        return Path(rec["artifact"])


def embedding_width(cfg: DictConfig, init_from: str | Path) -> int | None:
    """The base model's hidden size (the embedding's width), from its config alone; None if it cannot be read
    here (the first stage then says why the model does not load)."""
    if cfg.model.tiny is not None:
        return int(cfg.model.tiny.hidden_size)
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(str(init_from), revision=cfg.model.get("revision")).hidden_size)
    except Exception:  # the hub, a missing folder: the stage's own load reports it with the hub's reason
        return None


def check_embedding_widths(cfg: DictConfig, init_from: str | Path) -> None:
    """Matryoshka widths wider than the embedding are refused before the first stage: the loss and the
    evaluation found them only after Stage I (hours on a real model) or after training."""
    wanted = {  # the loss's lists are validated already (ascending whole numbers): the last is the widest
        f"stages.{n}.loss.matryoshka_dims": list(OmegaConf.select(cfg, f"stages.{n}.loss.matryoshka_dims") or [])
        for n in cfg.pipeline.stages
    }
    if cfg.eval.kind != "none":
        wanted["eval.dims"] = eval_dims(cfg.eval)
    wanted = {k: v for k, v in wanted.items() if v}
    width = embedding_width(cfg, init_from) if wanted else None
    for key, dims in wanted.items():
        if width is not None and max(dims) > width:
            raise ConfigError(f"{key}={dims}: the embedding has {width} dimensions")


def run_pipeline(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run every stage of `cfg.pipeline.stages` into `run_dir`; write and return `results.json`."""
    validate_config(cfg)
    run_dir = Path(run_dir)
    check_run_folder(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_global_zero():
        atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    data = prepare_data(cfg)
    tiny = cfg.model.tiny is not None
    init_from = ensure_tiny_base(cfg, data) if tiny else local_or_hub_name(str(cfg.model.pretrained))
    check_embedding_widths(cfg, init_from)
    base = init_from
    run_name = cfg.get("run_name") or f"{cfg.model.name}-{cfg.pipeline.name}"
    records = []
    for i, name in enumerate(cfg.pipeline.stages):
        try:
            rec = run_stage(cfg, name, str(init_from), Run(run_dir).stage(i, name).path, data, run_name)
        except Exception as e:
            raise StageError(name, e) from e
        records.append(rec)
        # this run's own folder, not the record's path: a copied or moved run continues from its own stages
        init_from = str(Run(run_dir).stage(i, name).artifact.absolute())
    results = {
        "model": cfg.model.name,
        "pipeline": cfg.pipeline.name,
        "stages": list(cfg.pipeline.stages),
        "base": str(base),
        "final_artifact": str(init_from),
        "seed": cfg.seed,
        # where the data was: tools find the held-out folder here instead of preparing the data again
        "data": {k: None if v is None else str(v) for k, v in vars(data).items() if k != "probe_instruction"},
        "stage_results": records,
        "probe": records[-1]["probe"] if records else None,
    }
    if is_global_zero():
        atomic_write_json(run_dir / RESULTS_FILE, results)
    return results
