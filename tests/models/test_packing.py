"""Padding-free encoding: sequences packed into one row with restarting positions embed as the padded batch does."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedTokenizerFast, Qwen2Config

from bireco.models.encoder import TextEncoder
from bireco.models.packing import PackingError, pack, unpack
from bireco.models.templates import Encoded, Template
from bireco.utils.batching import packed_batches
from tests.models.conftest import ARCH_SHAPE, sentences

SHAPE = ARCH_SHAPE
ARCHS = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}
TEXTS = [*sentences(9, seed=3), "why"]  # 3 to 12 words and a single one: every batch mixes lengths


def _model(arch: str, impl: str, tok: PreTrainedTokenizerFast):
    config = ARCHS[arch](vocab_size=len(tok), pad_token_id=tok.pad_token_id, **SHAPE)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=impl).eval()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_packed_embeddings_equal_the_padded_ones(
    arch: str, impl: str, side: str, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    model = _model(arch, impl, tiny_tokenizer)
    for pooling in ("eos", "mean"):
        enc = TextEncoder(model, tiny_tokenizer, Template(), pooling, 64, padding_side=side)
        padded = enc.encode(TEXTS, batch_size=4, normalize=False)
        packed = enc.encode(TEXTS, max_tokens=40, padding_free=True, normalize=False)
        one_pass = enc.encode(TEXTS, max_tokens=10_000, padding_free=True, normalize=False)
        for got in (packed, one_pass):
            assert float((got - padded).abs().max()) <= 1e-5, (arch, impl, side, pooling)


def test_packed_sequences_do_not_see_each_other(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    """The first sequence's states do not move when the second one changes (nor the second with the first)."""
    enc = TextEncoder(_model("llama", "sdpa", tiny_tokenizer), tiny_tokenizer, Template(), "eos", 64)
    a, b, c = enc.bound.encode_batch(["the cat sat on the mat", "a dog ran", "the river city"], None, 64)
    first, _ = enc.packed_hidden_states([a, b])
    other, _ = enc.packed_hidden_states([a, c])
    assert float((first[0] - other[0]).abs().max()) <= 1e-6  # fp32; another packed length, other kernel shapes
    assert float((first[1] - other[1]).abs().max()) > 1e-2  # while the changed sequence itself did change
    alone, _ = enc.packed_hidden_states([b])
    assert float((first[1, : len(b.input_ids)] - alone[0]).abs().max()) <= 1e-5


def test_pack_and_unpack_lay_out_the_tokens() -> None:
    enc = [Encoded([5, 6, 7], [0, 2, 3]), Encoded([8, 9], [0, 3])]
    ids, positions = pack(enc)
    assert ids.tolist() == [[5, 6, 7, 8, 9]] and positions.tolist() == [[0, 1, 2, 0, 1]]
    hidden = torch.arange(5.0).view(1, 5, 1)
    right, mask_r = unpack(hidden, [3, 2], "right")
    assert right[..., 0].tolist() == [[0, 1, 2], [3, 4, 0]] and mask_r.tolist() == [[1, 1, 1], [1, 1, 0]]
    left, mask_l = unpack(hidden, [3, 2], "left")
    assert left[..., 0].tolist() == [[0, 1, 2], [0, 3, 4]] and mask_l.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_packed_batches_hold_at_most_the_budget_in_real_tokens() -> None:
    lengths = [5, 9, 2, 7, 3, 12]
    batches = packed_batches(lengths, 12)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(sum(lengths[i] for i in b) <= 12 for b in batches)
    assert batches[0] == [5]  # the longest alone (it fills the budget), then longest first
    assert packed_batches([20], 8) == [[0]]  # a row above the budget is a batch of its own
    with pytest.raises(ValueError, match="max_tokens"):
        packed_batches(lengths, 0)


def test_a_bidirectional_encoder_refuses_to_pack(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    enc = TextEncoder(_model("qwen2", "sdpa", tiny_tokenizer), tiny_tokenizer, Template(), "eos", 64)
    enc.attention = "bidirectional"
    with pytest.raises(PackingError, match=r"model\.attention=causal"):
        enc.encode(TEXTS, padding_free=True)
