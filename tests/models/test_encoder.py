"""TextEncoder on a tiny Llama: an embedding depends only on its own text (and instruction), never on the batch."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from bireco.models.encoder import TextEncoder, positions_from_mask
from bireco.models.templates import Template

A = "the cat sat on the mat"
LONG_B = " ".join(["a large green tree over the river where people find a small house"] * 4)
C = "why"
TEMPLATE = Template(name="test", prefix="Q:", suffix=" end", add_bos=True)


def _encoder(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, **kw) -> TextEncoder:
    return TextEncoder(model, tok, TEMPLATE, max_length=128, **kw)


def test_positions_from_mask_count_real_tokens() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("pooling", ["eos", "mean", "weighted_mean"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_embedding_does_not_depend_on_batch_companions(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast, side: str, pooling: str
) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer, padding_side=side, pooling=pooling)
    alone = enc.encode([A], normalize=False)
    together = enc.encode([A, LONG_B, C], normalize=False)
    assert torch.isfinite(together).all()
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(together[2], enc.encode([C], normalize=False)[0], atol=1e-5, rtol=0)
    # one batch of three == three batches of one
    torch.testing.assert_close(enc.encode([A, LONG_B, C], batch_size=1, normalize=False), together, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["eos", "mean", "weighted_mean"])
def test_embedding_does_not_depend_on_padding_side(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast, pooling: str
) -> None:
    right = _encoder(tiny_model, tiny_tokenizer, padding_side="right", pooling=pooling)
    left = _encoder(tiny_model, tiny_tokenizer, padding_side="left", pooling=pooling)
    texts = [A, LONG_B, C]
    torch.testing.assert_close(
        left.encode(texts, normalize=False), right.encode(texts, normalize=False), atol=1e-5, rtol=0
    )


def test_eos_embedding_is_the_hidden_state_of_the_eos_token(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    ids = enc.bound.encode_batch([A])[0].input_ids
    assert ids[-1] == tiny_tokenizer.eos_token_id
    with torch.inference_mode():
        out = tiny_model(torch.tensor([ids]), output_hidden_states=True)
    # hidden_states[-1] of a Llama is after the final norm: the EOS position's vector is the embedding
    torch.testing.assert_close(enc.encode([A], normalize=False)[0], out.hidden_states[-1][0, -1], atol=1e-5, rtol=0)


def test_encode_returns_input_order_despite_length_sorting(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    texts = [C, LONG_B, A, "a dog", LONG_B[:40]]
    batched = enc.encode(texts, batch_size=2, normalize=False)
    singles = torch.cat([enc.encode([t], normalize=False) for t in texts])
    assert batched.shape == (5, tiny_model.config.hidden_size)
    assert batched.dtype == torch.float32
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=0)
    # rows really differ, so a permutation would be caught
    assert torch.cdist(singles, singles).fill_diagonal_(1.0).min() > 1e-3


def test_token_budget_encoding_equals_one_text_at_a_time(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    texts = [C, LONG_B, A, "a dog", LONG_B[:40]]
    singles = torch.cat([enc.encode([t], normalize=False) for t in texts])
    for budget in (1, 32, 10_000):
        got = enc.encode(texts, normalize=False, max_tokens=budget)
        torch.testing.assert_close(got, singles, atol=1e-5, rtol=0)


def test_normalize_gives_unit_norm(tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    texts = [A, LONG_B, C]
    unit = enc.encode(texts, normalize=True)
    raw = enc.encode(texts, normalize=False)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(3), atol=1e-6, rtol=0)
    assert (raw.norm(dim=-1) - 1).abs().max() > 1e-2
    torch.testing.assert_close(unit, torch.nn.functional.normalize(raw, dim=-1), atol=1e-6, rtol=0)


def test_instruction_changes_the_query_embedding(
    tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    plain = enc.encode([A, A])
    instructed = enc.encode([A, A], instructions=["find a document", None])
    assert (plain[0] - instructed[0]).abs().max() > 1e-3
    torch.testing.assert_close(instructed[1], plain[1], atol=1e-5, rtol=0)
    other = enc.encode([A], instructions=["answer the question"])
    assert (other[0] - instructed[0]).abs().max() > 1e-3


def test_encode_restores_training_mode(make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    model = make_tiny_model().train()
    enc = _encoder(model, tiny_tokenizer)
    enc.encode([A])
    assert model.training
    model.eval()
    enc.encode([A])
    assert not model.training


def test_forward_matches_encode(tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer, padding_side="left")
    batch = enc.tokenize([A, LONG_B], ["find a document", None])
    assert batch["attention_mask"][0, 0] == 0  # A is left-padded next to LONG_B
    with torch.inference_mode():
        emb = enc(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(
        emb, enc.encode([A, LONG_B], instructions=["find a document", None], normalize=False), atol=1e-5, rtol=0
    )


def test_encoder_through_a_peft_wrapper_uses_the_lora_layers(
    make_tiny_model, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    peft = get_peft_model(make_tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    texts = [A, LONG_B, C]
    plain = _encoder(make_tiny_model(), tiny_tokenizer).encode(texts, normalize=False)
    wrapped = _encoder(peft, tiny_tokenizer).encode(texts, normalize=False)
    merged = _encoder(peft.merge_and_unload(), tiny_tokenizer).encode(texts, normalize=False)
    assert (wrapped - plain).abs().max() > 1e-3, "the LoRA layers were bypassed"
    torch.testing.assert_close(wrapped, merged, atol=1e-5, rtol=0)


def test_encode_of_no_texts_is_empty(tiny_model: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    enc = _encoder(tiny_model, tiny_tokenizer)
    try:
        out = enc.encode([])
    except IndexError as e:
        pytest.fail(
            "TextEncoder.encode([]) crashes inside the tokenizer: BoundTemplate.encode_batch "
            f"(bireco/models/templates.py) should return [] for no texts: {e!r}"
        )
    assert out.shape == (0, tiny_model.config.hidden_size)
