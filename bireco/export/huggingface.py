"""The plain Hugging Face forms of a trained embedder: merged weights, and base + LoRA adapter.

`hf/merged` is a full causal LM (transformers) with the run's original tokenizer and an `artifact.json`, so it is
also a bireco stage artifact: `bireco-eval artifact=DIR/hf/merged` and `bireco-encode model_dir=DIR` evaluate and
encode it with the template, pooling and length it was trained with. When the last stage trained a LoRA adapter,
`hf/adapter` holds it (peft) and names its base: a hub name + revision, or `hf/base` (exported next to it) when
the base is a local folder such as Stage I's full fine-tuned weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bireco.models.backbone import ARTIFACT_FILE, BackboneSpec, load_backbone, read_artifact_meta
from bireco.utils.io import atomic_write_json

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def write_merged(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, meta: dict[str, Any]
) -> Path:
    """Merged causal LM + tokenizer + artifact.json (`kind: full`, template, pooling, max length, attention,
    provenance). Its config.json stays causal even for a bidirectional encoder: it is also the LM that decodes."""
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    atomic_write_json(out / ARTIFACT_FILE, {"kind": "full", "stage": "export", **meta})
    return out


def adapter_base(meta: dict[str, Any]) -> tuple[str, str | None, bool]:
    """(base name or folder, revision, is_local) of an adapter artifact."""
    base = str(meta["base"])
    return base, meta.get("base_revision"), Path(base).is_dir()


def write_adapter(artifact: str | Path, out_dir: str | Path, final_root: str | Path) -> dict[str, Any]:
    """Copy the LoRA adapter of `artifact`, export its base when that is a local folder, point peft at it.

    Args:
        artifact: a bireco adapter artifact (`artifact.json` kind `adapter`).
        out_dir: the export's `hf` folder (gets `adapter/` and, for a local base, `base/`).
        final_root: where the export will live once renamed (peft's `base_model_name_or_path` for a local base).

    Returns:
        what was written: base name/revision and whether the base was exported.
    """
    artifact, out = Path(artifact), Path(out_dir)
    meta = read_artifact_meta(artifact)
    if meta is None or meta.get("kind") != "adapter":
        raise ValueError(f"{artifact}: not a bireco adapter artifact ({ARTIFACT_FILE} kind must be 'adapter')")
    base, revision, local = adapter_base(meta)
    (out / "adapter").mkdir(parents=True)
    for name in ADAPTER_FILES:
        if (artifact / name).is_file():
            shutil.copy2(artifact / name, out / "adapter" / name)
    config_file = out / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if local:
        # the adapter sits on weights no hub has (e.g. Stage I's): ship them, merged, next to it
        model, tokenizer = load_backbone(BackboneSpec(base), merge_adapters=True)
        model.save_pretrained(out / "base")
        tokenizer.save_pretrained(out / "base")
        config["base_model_name_or_path"] = str(Path(final_root).resolve() / "hf" / "base")
        config["revision"] = None
    else:
        config["base_model_name_or_path"] = base
        config["revision"] = revision
    atomic_write_json(config_file, config)
    return {"base": base, "base_revision": revision, "base_exported": local}
