"""`bireco-eval`: evaluate a run, a stage artifact or a base model with mteb; write summary.json.

Every metric is mteb's (its task classes and evaluators). What this module adds is what makes a number
trustworthy: the weights' content hash as mteb's model revision (a new checkpoint never gets an old score),
per-task skip only when the cached result is for the same data revision, and a summary that records every
setting that can change a number.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from statistics import mean
from typing import Any

import mteb
from mteb.cache import ResultCache
from omegaconf import DictConfig, OmegaConf

from bireco.config import eval_dims
from bireco.errors import ConfigError, HubUnreachable, hub_access
from bireco.eval.contamination import contamination_by_task
from bireco.eval.local_tasks import discover_tasks, task_category
from bireco.eval.matryoshka import TruncatedEncoder
from bireco.eval.models import load_encoder, resolve_model, weights_hash
from bireco.eval.mteb_wrapper import MtebEncoder
from bireco.eval.prompt_check import check_prompts
from bireco.runs import Run, read_artifact_meta
from bireco.utils.io import atomic_write_json, sha256_text

log = logging.getLogger(__name__)


class EvalDataError(HubUnreachable):
    """A task's data could not be fetched from the hub (nor found in the datasets cache)."""


def resolve_tasks(ecfg: DictConfig, run_cfg_data_root: Path | None = None) -> tuple[list, dict[str, str]]:
    """Task objects and task name -> category."""
    if ecfg.kind == "local":
        root = Path(ecfg.data_root) if ecfg.data_root else run_cfg_data_root
        if root is None:
            raise ConfigError("eval=local needs eval.data_root=DIR (a folder of task folders)")
        # clustering views are declared per folder name; a declared folder absent under this root is not an error
        clustering = [c for c in (ecfg.clustering or []) if (root / c).is_dir()]
        tasks = discover_tasks(root, clustering=clustering)
        if not tasks:
            raise ConfigError(f"eval.data_root={root}: no task folders found (the layout: docs/evaluation.md)")
        return tasks, {t.metadata.name: task_category(t) for t in tasks}
    if ecfg.kind == "mteb":
        tasks, categories = [], {}
        for category, entries in ecfg.categories.items():
            for name, entry in entries.items():
                kwargs = {"eval_splits": [entry.split]} if entry.get("split") else {}
                if entry.get("hf_subsets"):
                    kwargs["hf_subsets"] = list(entry.hf_subsets)
                tasks.append(mteb.get_task(name, **kwargs))
                categories[name] = category
        return tasks, categories
    raise ValueError(f"unknown eval.kind '{ecfg.kind}'; choose 'local' or 'mteb'")


def instructions_of(ecfg: DictConfig, task_names: list[str]) -> dict[str, str | None]:
    if ecfg.kind == "mteb":
        return {n: e.get("instruction") for entries in ecfg.categories.values() for n, e in entries.items()}
    table = OmegaConf.to_container(ecfg.instructions or {}, resolve=True)
    default = ecfg.get("default_instruction")
    out = {}
    for name in task_names:
        base = name[: -len("Clustering")] if name.endswith("Clustering") and name not in table else name
        out[name] = table.get(name, table.get(base, default))
    return out


def evaluation_prompts(wrapper: MtebEncoder, task) -> dict[str, dict[str, Any]]:
    """Side -> the prompt record (strings, ids, hash) the task's texts are encoded with."""
    sides = wrapper.sides(task.metadata.name, task.metadata.type)
    return {side: wrapper.prompt(instruction) for side, instruction in sides.items()}


def _load_data(task) -> None:
    where = task.metadata.dataset.get("path")
    try:  # the hub message alone rarely says which task needed it
        with hub_access(f"the data of task {task.metadata.name} ({where}; eval=local reads local task folders)"):
            task.load_data()
    except HubUnreachable as e:
        raise EvalDataError(f"task {task.metadata.name}: its data could not be reached: {e}") from e


INPUTS_FILE = "bireco_inputs.json"  # per model and task: the key of the inputs its cached result was scored on


def inputs_key(wrapper: MtebEncoder, prompts: dict[str, dict[str, Any]]) -> str:
    """What decides a task's embeddings besides the weights: each side's prompt hash (template, instruction,
    separator, tokenizer), the length cap, pooling and attention mode."""
    enc = wrapper.encoder
    sides = sorted(f"{side}={rec['sha256']}" for side, rec in prompts.items())
    return sha256_text("|".join([*sides, str(enc.max_length), enc.pooling_name, enc.attention]))


def evaluate_tasks(
    model: MtebEncoder,
    tasks: list,
    results_dir: Path,
    batch_size: int,
    input_keys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run mteb task by task; a task already evaluated for these weights, this data revision *and* (given
    `input_keys`, task -> `inputs_key`) these inputs is skipped: another separator or instruction re-scores it."""
    cache = ResultCache(cache_path=results_dir)
    meta = model.mteb_model_meta
    ledger_path, who = results_dir / INPUTS_FILE, f"{meta.name}@{meta.revision}"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    seen = ledger.setdefault(who, {})
    out = {}
    for task in tasks:
        name = task.metadata.name
        data_revision = task.metadata.dataset.get("revision")
        key = (input_keys or {}).get(name)
        cached = cache.load_task_result(name, meta)
        if cached is not None and cached.dataset_revision == data_revision and seen.get(name) == key:
            log.info("%s: finished earlier for these weights, inputs and data, skipping", name)
            out[name] = cached
            continue
        _load_data(task)
        with _sklearn_single_thread():
            result = mteb.evaluate(
                model, [task], cache=cache, overwrite_strategy="always", encode_kwargs={"batch_size": batch_size}
            )
        if result.exceptions:
            raise RuntimeError(f"task {name} failed in mteb: {result.exceptions}")
        out[name] = result.task_results[0]
        seen[name] = key
        atomic_write_json(ledger_path, ledger)
    return out


def _sklearn_single_thread():
    """scikit-learn's own libgomp competes with torch's on small machines (k-means on 16 points took seconds)."""
    from contextlib import nullcontext

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return nullcontext()
    ctl = ThreadpoolController()
    sk = ctl.select(user_api="openmp")
    libs = [lib for lib in sk.lib_controllers if "scikit_learn" in lib.filepath]
    if not libs:
        return nullcontext()
    return ctl.select(filepath=libs[0].filepath).limit(limits=1)


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def summarize(
    results: dict[str, Any], categories: dict[str, str], settings: dict[str, Any], metrics: dict[str, str]
) -> dict[str, Any]:
    """summary.json: per-task main scores (×100, as the paper's table), category means, overall mean.

    Args:
        metrics: task name -> the main score's name (from the task's metadata).
    """
    tasks = {}
    for name, res in results.items():
        tasks[name] = {
            "category": categories[name],
            "main_score": 100.0 * res.get_score(),
            "metric": metrics[name],
        }
    by_cat: dict[str, list[float]] = {}
    for t in tasks.values():
        by_cat.setdefault(t["category"], []).append(t["main_score"])
    return {
        "tasks": tasks,
        "categories": {c: mean(v) for c, v in sorted(by_cat.items())},
        "average": mean(t["main_score"] for t in tasks.values()) if tasks else None,
        "settings": settings,
    }


def _prepared_heldout(run: Run) -> Path:
    from bireco.data.prepare import prepare_data

    return prepare_data(OmegaConf.create(run.config())).probe_dir.parent


def run_eval(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    out = Path(out_dir)
    for key in ("batch_size", "max_tokens"):  # before the model loads (was a DataLoader traceback after it)
        value = cfg.get(key)
        if (value is not None or key == "batch_size") and (not isinstance(value, int) or value < 1):
            raise ConfigError(
                f"{key}={value}: must be a whole number >= 1" + (" (or null)" if key != "batch_size" else "")
            )
    em = resolve_model(cfg)
    run_root = None
    if cfg.run_dir and cfg.eval.kind == "local" and not cfg.eval.data_root:
        run = Run(cfg.run_dir)
        if run.config()["data"]["kind"] == "synthetic":
            # the held-out split, written as task folders, where the run recorded it (older runs: regenerate)
            run_root = run.heldout_dir() or _prepared_heldout(run)
    tasks, categories = resolve_tasks(cfg.eval, run_root)
    revision = weights_hash(em.path, cfg.model.revision if not cfg.run_dir and not cfg.artifact else None)
    encoder = load_encoder(em, cfg.model.revision if not cfg.run_dir and not cfg.artifact else None)
    names = [t.metadata.name for t in tasks]
    instructions = instructions_of(cfg.eval, names)
    wrapper = MtebEncoder(
        encoder,
        name=f"bireco/{Path(em.path).name or 'model'}",
        revision=revision[:16],
        instructions=instructions,
        instruction_separator=cfg.eval.instruction_separator,
        batch_size=cfg.batch_size,
        cache_dir=Path(cfg.paths.cache_dir) / "embeddings" if cfg.embedding_cache else None,
        max_tokens=cfg.get("max_tokens"),
        padding_free=bool(cfg.get("padding_free", False)),
    )
    artifact = read_artifact_meta(em.path) if Path(em.path).is_dir() else None
    prompts = {t.metadata.name: evaluation_prompts(wrapper, t) for t in tasks}
    training_prompts = (artifact or {}).get("prompts")
    # before any task runs: under eval.strict_prompts a mismatch costs nothing
    prompt_check = check_prompts(training_prompts, prompts, strict=bool(cfg.eval.get("strict_prompts", False)))
    keys = {name: inputs_key(wrapper, sides) for name, sides in prompts.items()}
    audit = Run(cfg.run_dir).audit() if cfg.run_dir else None
    declared = ((audit or {}).get("training_datasets") or {}).get("declared")
    if declared is not None:  # mteb's own declaration: which of its tasks the training data covers
        wrapper.mteb_model_meta = wrapper.mteb_model_meta.model_copy(update={"training_datasets": set(declared)})
    truncated = [TruncatedEncoder(wrapper, d) for d in eval_dims(cfg.eval)]  # refused before any task runs
    results = evaluate_tasks(wrapper, tasks, out / "mteb", cfg.batch_size, keys)
    by_dims = {t.dims: evaluate_tasks(t, tasks, out / "mteb", cfg.batch_size, keys) for t in truncated}
    dims = list(by_dims)
    settings = {
        "model": em.path,
        "weights_sha256": revision,
        "provenance": em.provenance,
        "artifact": artifact,
        "template": em.template,
        "pooling": em.pooling,
        "max_length": em.max_length,
        "attention": encoder.attention,
        "dtype": em.dtype,
        "autocast": "bf16 on CUDA" if next(encoder.model.parameters()).is_cuda else "none (CPU, fp32)",
        "batch_size": cfg.batch_size,
        "max_tokens": cfg.get("max_tokens"),
        "padding_free": bool(cfg.get("padding_free", False)),
        "dims": dims or None,
        "instructions": {n: instructions.get(n) for n in names},
        "instruction_separator": cfg.eval.instruction_separator,
        "prompts": prompts,
        "training_prompts": training_prompts,
        "training_datasets": declared,  # from the run's audit.json; None = no audit (unknown, not empty)
        "eval": cfg.eval.name,
        "data_revisions": {t.metadata.name: t.metadata.dataset.get("revision") for t in tasks},
        "mteb_version": mteb.__version__,
        "git_commit": git_commit(),
    }
    metrics = {t.metadata.name: t.metadata.main_score for t in tasks}
    summary = summarize(results, categories, settings, metrics)
    summary["prompt_check"] = prompt_check
    summary["contamination_audit"] = audit is not None  # bireco-audit run_dir=RUN writes RUN/audit.json
    for name, counts in contamination_by_task(audit or {}).items():
        if name in summary["tasks"]:
            summary["tasks"][name]["contamination"] = counts
    if by_dims:  # every task at each truncated width (Matryoshka), next to the full width
        summary["dims"] = {str(d): summarize(r, categories, {}, metrics) for d, r in by_dims.items()}
        for entry in summary["dims"].values():
            entry.pop("settings", None)
    atomic_write_json(out / "summary.json", summary)
    return summary


def evaluate_run(train_cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Evaluate a just-finished pipeline run with its training config's `eval` settings, into <run>/eval."""
    cfg = OmegaConf.create(
        {
            "run_dir": str(run_dir),
            "artifact": None,
            "model": OmegaConf.to_container(train_cfg.model, resolve=True),
            "template": OmegaConf.to_container(train_cfg.template, resolve=True),
            "pooling": OmegaConf.to_container(train_cfg.pooling, resolve=True),
            "eval": OmegaConf.to_container(train_cfg.eval, resolve=True),
            "batch_size": train_cfg.eval_batch_size,
            "max_tokens": train_cfg.get("eval_max_tokens"),
            "padding_free": train_cfg.get("eval_padding_free", False),
            "embedding_cache": True,
            "paths": OmegaConf.to_container(train_cfg.paths, resolve=True),
        }
    )
    return run_eval(cfg, Path(run_dir) / "eval")
