"""The real loading path, offline: HF folders, full artifacts and LoRA adapter artifacts on a saved base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from bireco.models.backbone import (
    ARTIFACT_FILE,
    BackboneSpec,
    load_backbone,
    load_tokenizer,
    read_artifact_meta,
    save_artifact,
)

IDS = torch.tensor([[0, 40, 41, 42, 43, 44, 45, 1], [0, 50, 60, 70, 80, 90, 100, 1]])


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=IDS).logits


def _lora(model: LlamaForCausalLM) -> PeftModel:
    """A LoRA model whose adapter is not a no-op (B is zero-initialized; give it values)."""
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return peft.eval()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: LlamaForCausalLM, tiny_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("base")
    tiny_model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_load_backbone_from_a_local_hf_folder(
    base_dir: Path, tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    model, tok = load_backbone(BackboneSpec(str(base_dir)))
    assert isinstance(model, LlamaForCausalLM)
    assert model.dtype == torch.float32
    torch.testing.assert_close(_logits(model.eval()), _logits(tiny_model), atol=1e-6, rtol=0)
    assert tok.pad_token_id == tiny_tokenizer.pad_token_id == 2
    assert tok.eos_token_id == tiny_tokenizer.eos_token_id
    assert tok("the cat sat")["input_ids"] == tiny_tokenizer("the cat sat")["input_ids"]
    assert read_artifact_meta(base_dir) is None  # a plain HF folder is not an artifact


def test_load_backbone_bfloat16(base_dir: Path) -> None:
    model, _ = load_backbone(BackboneSpec(str(base_dir), dtype="bfloat16"))
    assert model.dtype == torch.bfloat16


def test_unknown_dtype_lists_choices(base_dir: Path) -> None:
    with pytest.raises(KeyError, match=r"unknown dtype 'fp8'; choose one of \['bfloat16', 'float16', 'float32'\]"):
        load_backbone(BackboneSpec(str(base_dir), dtype="fp8"))


def test_tokenizer_without_pad_gets_eos_as_pad(tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer.backend_tokenizer, bos_token="<|bos|>", eos_token="<|eos|>"
    )
    assert tok.pad_token_id is None
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(BackboneSpec(str(tmp_path)))
    assert loaded.pad_token_id == loaded.eos_token_id == 1


def test_full_artifact_round_trip(
    tmp_path: Path, tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    out = save_artifact(tiny_model, tiny_tokenizer, tmp_path / "full", {"stage": "stage1", "steps": 3})
    assert out == tmp_path / "full"
    meta = read_artifact_meta(out)
    assert meta == {"kind": "full", "stage": "stage1", "steps": 3}
    assert json.loads((out / ARTIFACT_FILE).read_text()) == meta
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names
    assert "adapter_model.safetensors" not in names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic write leaves no temp file
    model, tok = load_backbone(BackboneSpec(str(out)))
    torch.testing.assert_close(_logits(model.eval()), _logits(tiny_model), atol=1e-6, rtol=0)
    assert tok.eos_token_id == tiny_tokenizer.eos_token_id


def test_adapter_artifact_holds_only_the_adapter_and_reloads_merged(
    tmp_path: Path, base_dir: Path, make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    base = make_tiny_model()
    base_logits = _logits(base)
    peft = _lora(base)
    want = _logits(peft)
    assert (want - base_logits).abs().max() > 1e-3, "precondition: the adapter must change the outputs"

    out = save_artifact(peft, tiny_tokenizer, tmp_path / "adapter", {"stage": "stage2", "base": str(base_dir)})
    meta = read_artifact_meta(out)
    assert meta == {"kind": "adapter", "stage": "stage2", "base": str(base_dir)}
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", ARTIFACT_FILE} <= names
    assert "model.safetensors" not in names
    assert not [n for n in names if n.endswith((".bin", ".pt")) or n.startswith("model-")]
    adapter_size = (out / "adapter_model.safetensors").stat().st_size
    base_size = (base_dir / "model.safetensors").stat().st_size
    n_lora = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
    assert adapter_size < n_lora * 4 + 10_000  # LoRA tensors (fp32) + header, nothing else
    assert adapter_size < base_size / 10

    merged, tok = load_backbone(BackboneSpec(str(out)))
    assert isinstance(merged, LlamaForCausalLM)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged.eval()), want, atol=1e-5, rtol=0)
    assert tok.pad_token_id == tiny_tokenizer.pad_token_id

    unmerged, _ = load_backbone(BackboneSpec(str(out)), merge_adapters=False)
    assert isinstance(unmerged, PeftModel)
    torch.testing.assert_close(_logits(unmerged.eval()), want, atol=1e-5, rtol=0)


def test_merged_adapter_model_saves_as_a_full_artifact(
    tmp_path: Path, base_dir: Path, make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    # stages chain by merging: what load_backbone returns for an adapter artifact is a plain model again
    peft = _lora(make_tiny_model())
    adapter = save_artifact(peft, tiny_tokenizer, tmp_path / "adapter", {"stage": "s1", "base": str(base_dir)})
    merged, tok = load_backbone(BackboneSpec(str(adapter)))
    full = save_artifact(merged, tok, tmp_path / "full", {"stage": "s2"})
    assert read_artifact_meta(full) == {"kind": "full", "stage": "s2"}
    reloaded, _ = load_backbone(BackboneSpec(str(full)))
    torch.testing.assert_close(_logits(reloaded.eval()), _logits(peft), atol=1e-5, rtol=0)


def test_saving_an_adapter_without_base_raises(
    tmp_path: Path, make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    peft = _lora(make_tiny_model())
    with pytest.raises(ValueError, match=r"saving an adapter needs meta\['base'\]"):
        save_artifact(peft, tiny_tokenizer, tmp_path / "adapter", {"stage": "s1"})
    assert read_artifact_meta(tmp_path / "adapter") is None  # nothing half-written that looks like an artifact


@pytest.mark.parametrize("kind", ["full", "adapter"])
def test_artifact_is_written_from_a_given_state_dict(
    tmp_path: Path, base_dir: Path, make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast, kind: str
) -> None:
    """Under FSDP the live parameters are shards: the artifact must come from the gathered state dict passed in,
    not from the module (here the passed weights differ from the module's, so the test can tell)."""
    model = make_tiny_model() if kind == "full" else _lora(make_tiny_model())
    given = {k: v.clone() + 0.25 for k, v in model.state_dict().items()}
    meta = {"stage": "s", "base": str(base_dir)}
    out = save_artifact(model, tiny_tokenizer, tmp_path / kind, meta, dict(given))  # save_pretrained pops keys
    reloaded, _ = load_backbone(BackboneSpec(str(out)), merge_adapters=False)
    got = reloaded.state_dict()
    changed = [k for k in given if ("lora_" in k if kind == "adapter" else True)]
    assert changed
    for k in changed:
        torch.testing.assert_close(got[k], given[k], atol=0, rtol=0)
