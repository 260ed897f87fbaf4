"""Shared tiny tokenizer and model: trained/built once per session, nothing downloaded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer

WORDS = (  # noqa: SIM905 - a word list reads better as prose
    "the a cat dog bird sat ran flew on under over mat tree house river red blue green small large quick slow "
    "find search answer question document query retrieve passage about why how what where people city"
).split()

TINY_SPEC = TinyLlamaSpec(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    seed=7,
)


# a random tiny decoder of any family (LlamaConfig / Qwen2Config / MistralConfig(**ARCH_SHAPE)): architecture tests
ARCH_SHAPE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def sentences(n: int = 200, seed: int = 0) -> list[str]:
    """Short deterministic sentences over a small vocabulary."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_tokenizer")
    train_tokenizer(sentences(), TINY_SPEC.vocab_size, path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> PreTrainedTokenizerFast:
    """A fresh load of the session's tokenizer (byte-level BPE, specials <|bos|> <|eos|> <|pad|>)."""
    return PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture
def make_tiny_model(tiny_tokenizer: PreTrainedTokenizerFast):
    """Factory: a fresh tiny Llama in eval mode (same spec -> same weights), so tests can mutate it freely."""

    def make() -> LlamaForCausalLM:
        return build_tiny_model(TINY_SPEC, tiny_tokenizer).eval()

    return make


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A module-shared tiny Llama in eval mode; do not mutate it (use make_tiny_model for that)."""
    return build_tiny_model(TINY_SPEC, tiny_tokenizer).eval()
