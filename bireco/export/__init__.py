"""`bireco-export`: a finished run -> sentence-transformers folder + Hugging Face forms + model card.

Layout of the export folder (written to a temp folder next to it, renamed into place when complete):

    DIR/                  sentence-transformers (modules.json, weights, template-applying tokenizer, prompts)
    DIR/README.md         model card
    DIR/bireco_export.json what was exported: run, template, pooling, max length, prompts, adapter base
    DIR/hf/merged/        merged causal LM + original tokenizer (also a bireco artifact)
    DIR/hf/adapter/       the last stage's LoRA adapter, when it has one;  DIR/hf/base/ its base if local
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bireco.errors import UserError
from bireco.export.sentence_transformers import Prompt
from bireco.runs import CONFIG_FILE, RESULTS_FILE, Run, read_artifact_meta

log = logging.getLogger(__name__)

EXPORT_FILE = "bireco_export.json"
# the authors' evaluation joins "{instruction}: {query}" (conf/eval/*.yaml); used when no eval config is given
EVAL_SEPARATOR = ": "


class ExportError(UserError, RuntimeError):
    """The run cannot be exported (unfinished, missing files, target exists)."""


def _symmetric_task_types() -> tuple[str, ...]:
    """Task types whose both sides get the instruction in bireco-eval (one source of truth: the mteb wrapper)."""
    from bireco.eval.mteb_wrapper import MtebEncoder

    return tuple(inspect.signature(MtebEncoder.__init__).parameters["symmetric_tasks"].default)


def run_prompts(
    run_cfg: Mapping[str, Any],
    eval_cfg: Mapping[str, Any] | None,
    query_instruction: str | None = None,
) -> dict[str, Prompt]:
    """Named query instructions of a run, as sentence-transformers / mteb prompt names.

    - `query`: the default query instruction (`query_instruction`, else the probe's, else the data's default),
      with the evaluation separator; `encode_query` and mteb's query side use it.
    - each training source by name, with the template's separator (exactly as the model saw them in training).
    - each task of `eval_cfg` with its separator: mteb keys (`<task>-query` for retrieval-like tasks, `<task>`
      where bireco-eval gives both sides the instruction), so mteb's sentence-transformers path picks them.
    """
    template_sep = (run_cfg.get("template") or {}).get("instruction_separator", "; ")
    eval_sep = (eval_cfg or {}).get("instruction_separator") or EVAL_SEPARATOR
    prompts: dict[str, Prompt] = {}
    for name, source in ((run_cfg.get("data") or {}).get("sources") or {}).items():
        if source and source.get("instruction"):
            prompts[str(name)] = Prompt(source["instruction"], template_sep)
    if eval_cfg and eval_cfg.get("kind") == "mteb":
        symmetric = _symmetric_task_types()
        for category, entries in (eval_cfg.get("categories") or {}).items():
            for task, entry in entries.items():
                if entry and entry.get("instruction"):
                    key = task if category in symmetric else f"{task}-query"
                    prompts[key] = Prompt(entry["instruction"], eval_sep)
    elif eval_cfg and eval_cfg.get("kind") == "local":
        for task, instruction in (eval_cfg.get("instructions") or {}).items():
            if instruction:
                prompts[str(task)] = Prompt(instruction, eval_sep)
    default = (
        query_instruction
        or (run_cfg.get("probe") or {}).get("instruction")
        or (run_cfg.get("data") or {}).get("default_instruction")
    )
    if default:
        prompts["query"] = Prompt(default, eval_sep)
    return prompts


def finished_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(results.json, config.yaml as a dict, final artifact) of a finished run, or an error naming the path."""
    run = Run(run_dir)
    for name in (RESULTS_FILE, CONFIG_FILE):
        if not (run.path / name).is_file():
            raise ExportError(f"{run.path}: not a finished pipeline run ({run.path / name} is missing)")
    results = run.finished_results()
    final = run.final_artifact() if results.get("final_artifact") else Path("")
    if read_artifact_meta(final) is None:
        raise ExportError(
            f"{run.path}: its final artifact {final} has no artifact.json (the last stage did not finish)"
        )
    return results, run.config(), final


def check_out_apart(out: Path, sources: Mapping[str, Path]) -> None:
    """Refuse an export folder that is, holds or sits inside what it is exported from: replacing it (overwrite=true)
    would delete the run's weights and records."""
    for what, source in sources.items():
        if _within(out, source) or _within(source, out):
            raise ExportError(f"out={out}: overlaps {what} ({source}); export to a folder outside it")


def _within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or inside it: by resolved names, and by identity of the existing ancestors (a
    case-insensitive file system or a bind mount names one folder two ways)."""
    if path.resolve().is_relative_to(folder.resolve()):
        return True
    if not folder.exists():
        return False
    return any(p.exists() and os.path.samefile(p, folder) for p in (path, *path.resolve().parents))


def export_run(
    run_dir: str | Path,
    out: str | Path,
    eval_cfg: DictConfig | Mapping[str, Any] | None = None,
    query_instruction: str | None = None,
    summary: str | Path | None = None,
    overwrite: bool = False,
    hf_merged: bool = True,
    hf_adapter: bool = True,
) -> Path:
    """Export a finished run (see the module docstring). Returns the export folder.

    Args:
        eval_cfg: an `eval` config (`conf/eval/*.yaml`) whose task instructions become prompts.
        summary: an eval summary.json for the model card; None = `<run>/eval/summary.json` when present.
        overwrite: replace an existing export folder (otherwise that is an error).
    """
    import torch

    from bireco.export.huggingface import write_adapter, write_merged
    from bireco.export.model_card import render_model_card
    from bireco.export.sentence_transformers import write_sentence_transformers
    from bireco.models.encoder import TextEncoder
    from bireco.utils.io import atomic_write_json, atomic_write_text

    if not isinstance(overwrite, bool):  # a library caller's "no" would be truthy (the CLI refuses it earlier)
        raise ExportError(f"overwrite={overwrite}: must be true or false")
    results, run_cfg, final = finished_run(run_dir)
    out = Path(out)
    sources = {"the run": Path(run_dir), "its final artifact": final}
    base = (read_artifact_meta(final) or {}).get("base")  # an adapter's base model, read for hf/base
    if base and Path(base).is_dir():
        sources["the adapter's base model"] = Path(base)
    check_out_apart(out, sources)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; choose another out= or pass overwrite=true")
    ecfg = OmegaConf.to_container(eval_cfg, resolve=True) if isinstance(eval_cfg, DictConfig) else eval_cfg
    template_dict = run_cfg["template"]
    pooling, max_length = run_cfg["pooling"]["name"], int(run_cfg["model"]["max_length"])
    attention = run_cfg["model"].get("attention", "causal")
    prompts = run_prompts(run_cfg, ecfg, query_instruction)
    summary_file = Path(summary) if summary else Path(run_dir) / "eval" / "summary.json"
    if summary and not summary_file.is_file():
        raise ExportError(f"summary={summary_file}: no such file")

    tmp = out.parent / f".{out.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        encoder = TextEncoder.from_artifact(
            final, template_dict, pooling, max_length, device="cpu", attention=attention
        )
        model, tokenizer, bound = encoder.model, encoder.tokenizer, encoder.bound
        with torch.no_grad():
            write_sentence_transformers(
                model, tokenizer, bound, pooling, max_length, prompts, tmp, tmp / ".work", attention
            )
        shutil.rmtree(tmp / ".work")
        provenance = {"run_dir": str(Path(run_dir).resolve()), "pipeline": results.get("pipeline")}
        if hf_merged:
            meta = {
                "template": template_dict,
                "pooling": pooling,
                "max_length": max_length,
                "attention": attention,
                **provenance,
            }
            write_merged(model, tokenizer, tmp / "hf" / "merged", meta)
        final_meta = read_artifact_meta(final) or {}
        adapter = None
        if hf_adapter and final_meta.get("kind") == "adapter":
            adapter = write_adapter(final, tmp / "hf", out)
        records = results.get("stage_results", [])
        here = [Run(run_dir).stage_artifact(i, r["stage"], r["artifact"]) for i, r in enumerate(records)]
        kinds = [(read_artifact_meta(a) or {}).get("kind", "") for a in here]
        base_hub = adapter["base"] if adapter and not adapter["base_exported"] else None
        record = {
            **provenance,
            "final_artifact": str(final),
            "model": results.get("model"),
            "template": template_dict,
            "pooling": pooling,
            "max_length": max_length,
            "attention": attention,
            "prompts": {n: {"instruction": p.instruction, "separator": p.separator} for n, p in prompts.items()},
            "adapter": adapter,
            "hf_merged": hf_merged,
        }
        atomic_write_json(tmp / EXPORT_FILE, record)
        card = render_model_card(
            {
                "name": out.name,
                "run_dir": provenance["run_dir"],
                "results": results,
                "run_cfg": run_cfg,
                "template": template_dict,
                "pooling": pooling,
                "max_length": max_length,
                "attention": attention,
                "prompts": prompts,
                "summary": json.loads(summary_file.read_text()) if summary_file.is_file() else None,
                "adapter": adapter,
                "stage_kinds": kinds,
                "base_hub_name": base_hub,
            }
        )
        atomic_write_text(tmp / "README.md", card)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s -> %s (%d prompts)", run_dir, out, len(prompts))
    return out


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder to `out`; an existing `out` is moved aside first and removed after."""
    old = out.parent / f".{out.name}.export-old"
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
