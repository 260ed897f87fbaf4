"""bireco.distributed without a process group: pass-through gather, strategy construction, consolidation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from bireco.distributed import (
    all_sizes,
    build_strategy,
    clean_param_name,
    consolidate,
    deepspeed_available,
    gather_rows_with_grad,
    strategy_name,
    world,
)
from bireco.losses.contrastive import gathered_info_nce, info_nce


def _tiny_llama() -> LlamaForCausalLM:
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    return LlamaForCausalLM(cfg)


def test_single_process_gather_is_the_identity() -> None:
    assert world() == (1, 0)
    x = torch.randn(3, 4, requires_grad=True)
    assert all_sizes([3, 5], x.device) == [[3, 5]]
    assert gather_rows_with_grad(x, [3]) is x
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8)
    assert torch.equal(gathered_info_nce(q, p, n, scale=20.0), info_nce(q, p, n, scale=20.0))


def test_strategy_strings_pass_through() -> None:
    model = _tiny_llama()
    assert build_strategy("ddp", model) == "ddp"
    assert build_strategy(None, model) is None
    assert (
        strategy_name({"name": "fsdp"}) == "fsdp" and strategy_name("ddp") == "ddp" and strategy_name(None) == "auto"
    )


def test_fsdp_wraps_the_models_own_blocks_also_under_lora() -> None:
    from lightning.pytorch.strategies import FSDPStrategy
    from peft import LoraConfig, get_peft_model
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    model = get_peft_model(_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"]))
    strategy = build_strategy({"name": "fsdp", "sharding_strategy": "FULL_SHARD", "state_dict_type": "full"}, model)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {LlamaDecoderLayer}
    assert strategy.kwargs["use_orig_params"] is True  # LoRA: frozen and trainable weights share flat params
    explicit = build_strategy({"name": "fsdp", "auto_wrap_policy": ["LlamaMLP"]}, model)
    assert {c.__name__ for c in explicit.kwargs["auto_wrap_policy"]._module_classes} == {"LlamaMLP"}


def test_unknown_strategy_mapping_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"trainer\.strategy\.name: unknown 'megatron'"):
        build_strategy({"name": "megatron"}, _tiny_llama())


@pytest.mark.skipif(deepspeed_available(), reason="the error is for machines without deepspeed")
def test_deepspeed_without_the_package_says_how_to_get_it() -> None:
    with pytest.raises(ImportError, match=r"DeepSpeed ZeRO-2\).*not installed.*pip install deepspeed"):
        build_strategy({"name": "deepspeed", "stage": 2}, _tiny_llama())


def test_fsdp_parameter_names_match_state_dict_keys() -> None:
    wrapped = "encoder.model.base_model.model.model.layers.0._fsdp_wrapped_module.self_attn.q_proj.lora_A.weight"
    assert clean_param_name(wrapped) == "encoder.model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert clean_param_name("a._checkpoint_wrapped_module.b") == "a.b"
    assert clean_param_name("plain.name") == "plain.name"


def test_consolidate_fsdp_sharded_checkpoint_into_one_lightning_file(tmp_path: Path) -> None:
    """Written in the exact layout Lightning's FSDPStrategy(state_dict_type='sharded') writes (its own save
    function + meta.pt), read back as a single-device checkpoint: same tensors, optimizer state as a list."""
    from lightning.fabric.strategies.fsdp import _METADATA_FILENAME, _distributed_checkpoint_save

    torch.manual_seed(0)
    weights = {"encoder.lora_A": torch.randn(4, 8), "encoder.lora_B": torch.randn(8, 4)}
    # FSDP's optimizer state dicts are keyed by parameter name
    optim = {
        "state": {"encoder.lora_A": {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 8)}},
        "param_groups": [],
    }
    folder = tmp_path / "last.ckpt"
    _distributed_checkpoint_save({"model": weights, "optimizer_0": optim}, folder)
    torch.save({"global_step": 7, "epoch": 0}, folder / _METADATA_FILENAME)

    out = consolidate(folder, tmp_path / "consolidated" / "last.ckpt")
    ckpt = torch.load(out, weights_only=False)
    assert set(ckpt["state_dict"]) == set(weights)
    for k, v in weights.items():
        assert torch.equal(ckpt["state_dict"][k], v)
    assert len(ckpt["optimizer_states"]) == 1
    assert torch.equal(
        ckpt["optimizer_states"][0]["state"]["encoder.lora_A"]["exp_avg"], optim["state"]["encoder.lora_A"]["exp_avg"]
    )
    assert ckpt["global_step"] == 7
    assert not out.with_name(out.name + ".tmp").exists()


def test_consolidate_refuses_a_single_file(tmp_path: Path) -> None:
    f = tmp_path / "x.ckpt"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="already a single file, which needs no consolidation"):
        consolidate(f, tmp_path / "y.ckpt")
