"""The MFU benchmark: its 1B shape is Llama-3.2-1B's, and a tiny run reports the compute report's windows."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks import mfu
from bireco.models.flops import Pass, training_flops

SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def _config(spec: dict[str, Any]) -> LlamaConfig:
    shape = {k: spec[k] for k in SHAPE_KEYS}
    return LlamaConfig(vocab_size=spec["vocab_size"], tie_word_embeddings=spec["tie_word_embeddings"], **shape)


def test_the_1b_shape_has_llama_3_2_1b_parameter_count() -> None:
    spec, vocab, _ = mfu.SHAPES["llama3.2-1b"]
    with torch.device("meta"):
        model = LlamaForCausalLM(_config({**vars(spec), "vocab_size": vocab}))
    # meta-llama/Llama-3.2-1B: 128,256 x 2,048 tied embedding + 16 layers of 60,821,504 + the final norm
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400


@pytest.mark.integration
def test_a_tiny_run_reports_every_window_and_the_steady_mean() -> None:
    res = mfu.measure(shape="tiny", batch=2, q_len=8, d_len=16, steps=7, window=3)
    assert [(w["step"], w["steps"]) for w in res["windows"]] == [(3, 3), (6, 3), (7, 1)]
    steady = res["windows"][1:]  # weighted by steps: the last window ran one step
    expected = (3 * steady[0]["tokens_per_s"] + steady[1]["tokens_per_s"]) / 4
    assert res["headline"]["tokens_per_s"] == pytest.approx(expected)
    assert res["headline"]["mfu"] is None  # a CPU has no dense bf16 peak in the table
    # every step is the stated shape: query 8 tokens, positive and hard negative 16, LoRA on the tiny model
    assert res["lora_parameters"] > 0
    passes = [Pass(2, 8), Pass(2, 16), Pass(2, 16)]
    per_step = training_flops(_config(res["spec"]), passes, res["lora_parameters"])
    assert res["stage"]["model_flops"] == pytest.approx(res["steps"] * per_step)


def test_a_run_too_short_for_a_steady_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"steps=5 < 2 x window=3"):
        mfu.measure(shape="tiny", steps=5, window=3)
