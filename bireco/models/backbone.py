"""Load a causal LM + tokenizer by hub name or local path, and save/load stage artifacts.

A stage artifact is a folder with either full weights (full fine-tuning) or a LoRA adapter plus a pointer to
its base, and `artifact.json` saying which. LoRA stages never write a copy of the frozen base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bireco.errors import hub_access
from bireco.models.attention import reset_checkpoint_causality
from bireco.runs import ARTIFACT_FILE, read_artifact_meta
from bireco.utils.io import atomic_write_json

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BackboneSpec:
    """Where the weights come from and how to load them.

    Args:
        pretrained: hub name (e.g. `meta-llama/Llama-3.2-1B-Instruct`) or a local folder (HF layout or a bireco
            stage artifact).
        revision: hub revision; recorded in artifacts so a result names exactly what it started from.
        dtype: weights dtype on load; training precision is the Trainer's `precision`.
        attn_implementation: `sdpa` (default), `flash_attention_2`, `eager`.
    """

    pretrained: str
    revision: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"


def _dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise KeyError(f"unknown dtype '{name}'; choose one of {sorted(_DTYPES)}") from None


def _what(spec: BackboneSpec, kind: str) -> str:
    at = f" at revision {spec.revision}" if spec.revision else ""
    return f"{kind} '{spec.pretrained}'{at} (model.pretrained)"


def load_tokenizer(spec: BackboneSpec) -> PreTrainedTokenizerBase:
    with hub_access(_what(spec, "the tokenizer of")):
        tok = AutoTokenizer.from_pretrained(spec.pretrained, revision=spec.revision)
    if tok.pad_token_id is None:
        # padding is masked everywhere; any id works and eos is what the paper's code uses
        tok.pad_token = tok.eos_token
    return tok


def load_backbone(spec: BackboneSpec, merge_adapters: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model + tokenizer; a LoRA artifact is loaded on its base and (by default) merged.

    Merging is how stages chain (llm2vec semantics): the next stage adds a fresh adapter on merged weights.
    """
    meta = read_artifact_meta(spec.pretrained)
    if meta is not None and meta["kind"] == "adapter":
        from peft import PeftModel

        base_spec = BackboneSpec(meta["base"], meta.get("base_revision"), spec.dtype, spec.attn_implementation)
        base, _ = load_backbone(base_spec, merge_adapters=True)
        model = PeftModel.from_pretrained(base, spec.pretrained)
        if merge_adapters:
            model = model.merge_and_unload()
        return model, load_tokenizer(BackboneSpec(spec.pretrained))
    with hub_access(_what(spec, "model")):
        model = AutoModelForCausalLM.from_pretrained(
            spec.pretrained,
            revision=spec.revision,
            dtype=_dtype(spec.dtype),
            attn_implementation=spec.attn_implementation,
        )
    reset_checkpoint_causality(model)
    return model, load_tokenizer(spec)


def _adapter_twin_on_meta(model: Any) -> Any:
    """The same base architecture and adapter config, without weights (meta device).

    peft picks the adapter's entries out of a state dict by the module names of its layers, and FSDP's
    per-block wrapping inserts `_fsdp_wrapped_module` into those names (peft strips it only at the root), so the
    adapter saved from the live model would be empty. The twin has the plain names; the weights come from the
    gathered state dict.
    """
    from peft import get_peft_model

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(model.get_base_model().config)
    return get_peft_model(base, model.peft_config[model.active_adapter], adapter_name=model.active_adapter)


def save_artifact(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    meta: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save weights (or only the adapter for a peft model) + tokenizer + artifact.json (written last).

    Args:
        meta: provenance to record: at least `stage`; for adapters `base` (and `base_revision`).
        state_dict: the model's weights when its live parameters are not whole (FSDP shards); keys as in
            `model.state_dict()` (peft picks its adapter out of them).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft and "base" not in meta:
        raise ValueError("saving an adapter needs meta['base']: the folder or hub name of the weights it sits on")
    if is_peft and state_dict is not None and any("_fsdp_wrapped_module" in n for n, _ in model.named_modules()):
        model = _adapter_twin_on_meta(model)
    model.save_pretrained(out, state_dict=state_dict)  # peft saves the adapter only
    tokenizer.save_pretrained(out)
    atomic_write_json(out / ARTIFACT_FILE, {"kind": "adapter" if is_peft else "full", **meta})
    return out
