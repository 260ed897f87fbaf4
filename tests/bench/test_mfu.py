"""The MFU benchmark: its 1B shape is Llama-3.2-1B's, and a tiny run reports the compute report's windows."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks import mfu
from bireco.models.flops import Pass, training_flops

pytestmark = pytest.mark.integration
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


def test_a_tiny_run_reports_every_window_and_the_steady_mean() -> None:
    res = mfu.measure(shape="tiny", batch=2, q_len=8, d_len=16, steps=6, window=2)
    assert [w["step"] for w in res["windows"]] == [2, 4, 6]
    steady = res["windows"][1:]
    assert res["headline"]["tokens_per_s"] == pytest.approx(statistics.fmean(w["tokens_per_s"] for w in steady))
    assert res["headline"]["mfu"] is None  # a CPU has no dense bf16 peak in the table
    # every step is the stated shape: query 8 tokens, positive and hard negative 16, LoRA on the tiny model
    assert res["lora_parameters"] > 0
    passes = [Pass(2, 8), Pass(2, 16), Pass(2, 16)]
    per_step = training_flops(_config(res["spec"]), passes, res["lora_parameters"])
    assert res["stage"]["model_flops"] == pytest.approx(res["steps"] * per_step)
