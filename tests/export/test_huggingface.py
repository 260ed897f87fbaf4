"""The plain Hugging Face forms: merged model (also a bireco artifact), LoRA adapter + its base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bireco.export.huggingface import write_adapter
from bireco.utils.io import atomic_write_json


def _hidden(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.get_decoder()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


@pytest.mark.integration
def test_merged_model_and_adapter_on_its_base_reproduce_the_final_model(exported_run) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bireco.models.backbone import BackboneSpec, load_backbone

    results = json.loads((exported_run.run / "results.json").read_text())
    final, tok = load_backbone(BackboneSpec(results["final_artifact"]))  # what bireco-eval encodes with
    hf = exported_run.export / "hf"
    ids = torch.tensor([tok("Ada Smith lives in Lyon", add_special_tokens=False)["input_ids"]])
    merged = AutoModelForCausalLM.from_pretrained(hf / "merged").eval()
    assert torch.allclose(_hidden(merged, ids), _hidden(final.eval(), ids), atol=1e-6)
    # the tokenizer next to the merged model is the run's own, not the template-applying one
    merged_tok = AutoTokenizer.from_pretrained(hf / "merged")
    assert merged_tok("Ada")["input_ids"] == tok("Ada")["input_ids"]
    # Stage II is LoRA on Stage I's full weights (no hub has them): both are exported and peft rebuilds the model
    config = json.loads((hf / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((exported_run.export / "hf" / "base").resolve())
    base = AutoModelForCausalLM.from_pretrained(hf / "base")
    stage1, _ = load_backbone(BackboneSpec(str(exported_run.run / "stages" / "0-reconstruction" / "artifact")))
    assert torch.equal(base.state_dict()["model.norm.weight"], stage1.state_dict()["model.norm.weight"])
    base_only = _hidden(base.eval(), ids)  # before peft injects the LoRA layers into `base` in place
    assert (base_only - _hidden(merged, ids)).abs().max() > 1e-2  # the adapter is not a no-op
    peft_model = PeftModel.from_pretrained(base, hf / "adapter").eval()
    assert torch.allclose(_hidden(peft_model, ids), _hidden(merged, ids), atol=1e-5)
    artifact = Path(results["final_artifact"])
    assert (hf / "adapter" / "adapter_model.safetensors").read_bytes() == (
        artifact / "adapter_model.safetensors"
    ).read_bytes()


@pytest.mark.integration
def test_merged_folder_is_a_bireco_artifact_with_its_template(exported_run) -> None:
    from omegaconf import OmegaConf

    from bireco.eval.models import resolve_model

    merged = exported_run.export / "hf" / "merged"
    cfg = OmegaConf.create({"run_dir": None, "artifact": str(merged), "model": {"dtype": "float32"}})
    m = resolve_model(cfg)
    run_cfg = OmegaConf.load(exported_run.run / "config.yaml")
    assert m.template == OmegaConf.to_container(run_cfg.template, resolve=True)
    assert (m.pooling, m.max_length) == ("eos", int(run_cfg.model.max_length))


def test_adapter_on_a_hub_base_names_it_and_ships_no_base(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    atomic_write_json(artifact / "artifact.json", {"kind": "adapter", "base": "org/llm", "base_revision": "abc123"})
    atomic_write_json(artifact / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "/x/y"})
    (artifact / "adapter_model.safetensors").write_bytes(b"weights")
    info = write_adapter(artifact, tmp_path / "out" / "hf", tmp_path / "out")
    assert info == {"base": "org/llm", "base_revision": "abc123", "base_exported": False}
    config = json.loads((tmp_path / "out" / "hf" / "adapter" / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == ("org/llm", "abc123")
    assert (tmp_path / "out" / "hf" / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert not (tmp_path / "out" / "hf" / "base").exists()


def test_write_adapter_refuses_full_weights(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "artifact.json", {"kind": "full"})
    with pytest.raises(ValueError, match=rf"{tmp_path}: not a bireco adapter artifact"):
        write_adapter(tmp_path, tmp_path / "out", tmp_path / "out")
