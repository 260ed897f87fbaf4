"""The FLOP count of the compute report equals torch's FLOP counter on the tiny Llama (fp32, padded batches)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bireco.data.collate import PairCollator
from bireco.lit.compute import adapter_params, dense_bf16_peak
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass, forward_flops, training_flops
from bireco.models.templates import Template
from tests.helpers import stage_module

ROWS = [
    {"query": "who is the doctor", "positive": "the doctor lives in the city by the river", "negative": "a red song"},
    {"query": "blue lake", "positive": "the blue lake of the town", "negative": "the painter works on a book"},
    {"query": "what", "positive": "an old violin", "source": "s"},
]


def _batch(encoder: TextEncoder) -> dict:
    rows = [{**r, "source": "s"} for r in ROWS]
    return PairCollator(encoder.bound, {}, encoder.pad_id, 64, duplicate_key="token_ids")(rows)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.fixture
def encoder(make_tiny_model, tiny_tokenizer) -> TextEncoder:
    model = make_tiny_model()
    # eager attention: its two products are matmuls torch's counter sees (it has no formula for the CPU flash
    # kernel SDPA picks here, and would count attention as 0)
    model.set_attn_implementation("eager")
    return TextEncoder(model, tiny_tokenizer, Template(name="plain"), "eos", max_length=64)


def test_forward_pass_matches_torch(encoder: TextEncoder) -> None:
    part = _batch(encoder)["positive"]
    rows, length = part["input_ids"].shape
    with torch.no_grad():
        measured = _counted(lambda: encoder(part["input_ids"], part["attention_mask"]))
    assert measured > 0
    assert forward_flops(encoder.model.config, Pass(rows, length)) == measured


def test_full_fine_tuning_contrastive_step_matches_torch(encoder: TextEncoder) -> None:
    """Forward + backward of Stage II with every weight trained: 6N per token + attention, exactly."""
    module = stage_module(encoder, "contrastive", **{"loss.gather_across_ranks": False})
    batch = _batch(encoder)
    assert adapter_params(module) is None
    measured = _counted(lambda: module.training_step(batch, 0).backward())
    # + the loss's score matrix (3 queries x 5 candidates x 64 dims, forward and two gradients): not model FLOPs
    scores = 3 * 2 * 3 * 5 * encoder.model.config.hidden_size
    assert training_flops(encoder.model.config, module.flop_passes(batch), None) + scores == measured


def test_lora_step_is_counted_as_stated(encoder: TextEncoder) -> None:
    """LoRA: the convention counts every layer's activation gradients; autograd skips those of the first layer's
    frozen projections whose input needs no gradient, so the count is an upper bound, a few % above torch's."""
    from peft import LoraConfig, get_peft_model

    enc = copy.deepcopy(encoder)
    enc.model = get_peft_model(enc.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    module = stage_module(enc, "contrastive", **{"loss.gather_across_ranks": False})
    batch = _batch(enc)
    adapters = adapter_params(module)
    assert adapters == sum(p.numel() for n, p in module.named_parameters() if "lora_" in n) > 0
    measured = _counted(lambda: module.training_step(batch, 0).backward())
    counted = training_flops(enc.model.config, module.flop_passes(batch), adapters)
    assert measured <= counted <= 1.10 * measured


def test_stage1_step_matches_torch(encoder: TextEncoder) -> None:
    """Stage I: two encoder passes, two decoder passes, the LM head on the target tokens only."""
    module = stage_module(encoder, "reconstruction", **{"loss.alpha": 0.2})
    batch = _batch(encoder)
    measured = _counted(lambda: module.training_step(batch, 0).backward())
    counted = training_flops(encoder.model.config, module.flop_passes(batch), None)
    assert counted == pytest.approx(measured, rel=1e-9)


def test_dense_peaks_by_device_name() -> None:
    assert dense_bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert dense_bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert dense_bf16_peak("NVIDIA H200") == 989e12
    assert dense_bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert dense_bf16_peak("NVIDIA L40S") == 362e12
    assert dense_bf16_peak("NVIDIA L4") == 121e12
    assert dense_bf16_peak("Tesla T4") is None
