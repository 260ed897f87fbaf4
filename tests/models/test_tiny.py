"""The tiny Llama: its vocabulary override (the benchmark's 128k-vocabulary memory test needs it)."""

from __future__ import annotations

import pytest

from bireco.models.tiny import TinyLlamaSpec, build_tiny_model

SMALL = TinyLlamaSpec(
    hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
)


def test_vocab_override_sizes_embeddings_and_head(tiny_tokenizer) -> None:
    model = build_tiny_model(SMALL, tiny_tokenizer, vocab_size=1000)
    assert model.config.vocab_size == 1000
    assert model.get_input_embeddings().weight.shape == (1000, 16)
    assert model.get_output_embeddings().weight.shape == (1000, 16)
    assert build_tiny_model(SMALL, tiny_tokenizer).config.vocab_size == len(tiny_tokenizer)


def test_vocab_smaller_than_the_tokenizer_is_refused(tiny_tokenizer) -> None:
    with pytest.raises(
        ValueError, match=rf"vocab_size=10 is smaller than the tokenizer \({len(tiny_tokenizer)} tokens\)"
    ):
        build_tiny_model(SMALL, tiny_tokenizer, vocab_size=10)
