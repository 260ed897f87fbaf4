from __future__ import annotations

import copy

import pytest
import torch

from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer

WORDS = [
    *("alpha", "beta", "gamma", "delta", "river", "mountain", "city", "violin"),
    *("doctor", "painter", "blue", "green", "red", "born", "lives", "works"),
]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    texts = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 9)) for i in range(200)]
    tok = train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))
    spec = TinyLlamaSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, seed=0
    )
    model = build_tiny_model(spec, tok).float()
    model.eval()  # no dropout: exact comparisons
    torch.manual_seed(0)
    return TextEncoder(model, tok, Template(name="plain"), "eos", max_length=64)


def with_lora_dropout(encoder: TextEncoder, dropout: float = 0.3) -> TextEncoder:
    """A copy of `encoder` with LoRA (dropout on, in train mode) whose B matrices are non-zero, so every adapter
    weight has a gradient and two passes over the same text embed it differently."""
    from peft import LoraConfig, get_peft_model

    enc = copy.deepcopy(encoder)
    enc.model = get_peft_model(
        enc.model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj"])
    )
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    enc.train()
    return enc
