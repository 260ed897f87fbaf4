"""What `bireco-eval` evaluates: a run's final artifact, a stage artifact or a base model, resolved to weights +
template + pooling + length, and the weights' content hash that keys mteb's results (a new checkpoint never
gets an old score)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bireco.errors import UserError
from bireco.models.encoder import TextEncoder
from bireco.runs import Run, RunError, read_artifact_meta
from bireco.utils.io import sha256_files, sha256_text


class EvalModelError(UserError, FileNotFoundError):
    """Nothing to evaluate was named, or `run_dir=` is not a finished run: one line, not a traceback."""


@dataclass
class EvalModel:
    """What is evaluated, and where it came from."""

    path: str  # weights: hub name, folder or stage artifact
    template: dict[str, Any]
    pooling: str
    max_length: int
    dtype: str = "float32"
    provenance: dict[str, Any] = field(default_factory=dict)
    attention: str | None = None  # None = what the artifact records (`causal` when it records none)


def weights_hash(path: str, revision: str | None = None) -> str:
    """Content hash of the weights an artifact stands for (adapter + its base, recursively); hub names hash as
    name@revision (pin a commit to make that exact)."""
    p = Path(path)
    if not p.is_dir():
        return sha256_text(f"{path}@{revision or 'main'}")
    files = [f for f in p.iterdir() if f.suffix in (".safetensors", ".bin")]
    own = sha256_files(files)
    meta = read_artifact_meta(p)
    if meta and meta.get("kind") == "adapter":
        return sha256_text(own + weights_hash(meta["base"], meta.get("base_revision")))
    return own


def resolve_model(cfg: DictConfig) -> EvalModel:
    """`run_dir=` (a pipeline output), `artifact=` (a stage artifact) or the `model` preset (a base model)."""
    if cfg.run_dir:
        run = Run(cfg.run_dir)
        try:
            results, run_cfg = run.finished_results(), run.config()
        except RunError as e:
            raise EvalModelError(str(e)) from None
        return EvalModel(
            str(run.final_artifact()),
            run_cfg["template"],
            run_cfg["pooling"]["name"],
            int(run_cfg["model"]["max_length"]),
            cfg.model.dtype,
            {k: results[k] for k in ("pipeline", "stages", "seed")} | {"run_dir": str(run.path)},
            attention=run_cfg["model"].get("attention"),
        )
    if cfg.artifact and not Path(cfg.artifact).is_dir():  # else it would be looked up on the hub as a model name
        raise EvalModelError(
            f"artifact={cfg.artifact}: no such folder (a stage artifact: RUN/stages/<i>-<stage>/artifact)"
        )
    path = cfg.artifact or cfg.model.pretrained
    if not path:
        raise EvalModelError(
            "say what to evaluate: run_dir=<pipeline output>, artifact=<stage artifact> or a model "
            "preset with model.pretrained set"
        )
    meta = read_artifact_meta(path) if cfg.artifact else None
    if meta and isinstance(meta.get("template"), dict):
        # an artifact is evaluated with the template, pooling and length it was trained with
        return EvalModel(
            str(path),
            meta["template"],
            meta["pooling"],
            int(meta["max_length"]),
            cfg.model.dtype,
            {"artifact_stage": meta.get("stage")},
        )
    return EvalModel(
        str(path),
        OmegaConf.to_container(cfg.template, resolve=True),
        cfg.pooling.name,
        int(cfg.model.max_length),
        cfg.model.dtype,
        {"model_preset": cfg.model.name},
        attention=cfg.model.get("attention", "causal"),
    )


def load_encoder(m: EvalModel, revision: str | None = None) -> TextEncoder:
    """The encoder `m` describes, with its template, pooling, length and attention mode."""
    return TextEncoder.from_artifact(
        m.path, m.template, m.pooling, m.max_length, m.dtype, revision, attention=m.attention
    )
