"""GradCache: the same loss and parameter gradients as the plain computation, one chunk's activations at a time."""

from __future__ import annotations

import copy

import pytest
import torch

from bireco.losses.contrastive import info_nce
from bireco.losses.grad_cache import chunk_batch, grad_cache_loss
from bireco.models.encoder import TextEncoder
from tests.losses.conftest import WORDS

QUERIES = ["who is alpha", "blue river city", "gamma born doctor", "where lives delta", "violin painter red"]
DOCS = [f"{w} " + " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(i + 3)) for i, w in enumerate(WORDS[:5])]
NEGS = [" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(4 + i)) for i in range(4)]  # row 4 has none


def _inputs(enc: TextEncoder) -> dict[str, dict[str, torch.Tensor]]:
    return {"query": enc.tokenize(QUERIES), "positive": enc.tokenize(DOCS), "negative": enc.tokenize(NEGS)}


def _embed(enc: TextEncoder):
    return lambda part: enc(part["input_ids"], part["attention_mask"])


def _loss(query, positive, negative):
    return info_nce(query, positive, negative, scale=50.0)


def _plain(enc: TextEncoder, inputs) -> tuple[float, dict[str, torch.Tensor]]:
    enc.zero_grad()
    loss = _loss(*(_embed(enc)(inputs[r]) for r in ("query", "positive", "negative")))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


def _cached(enc: TextEncoder, inputs, chunk: int) -> tuple[float, dict[str, torch.Tensor]]:
    enc.zero_grad()
    params = [p for p in enc.parameters() if p.requires_grad]
    loss = grad_cache_loss(_embed(enc), inputs, _loss, params, chunk)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys() and len(want) > 0
    for n, g in want.items():
        assert float((got[n] - g).abs().max()) <= 2e-6 * float(g.abs().max()) + 1e-12, n


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_grad_cache_equals_plain_loss_and_gradients(tiny_encoder: TextEncoder, chunk: int) -> None:
    inputs = _inputs(tiny_encoder)
    loss, grads = _plain(tiny_encoder, inputs)
    loss_c, grads_c = _cached(tiny_encoder, inputs, chunk)
    assert loss_c == pytest.approx(loss, rel=1e-6)
    _assert_same(grads_c, grads)
    assert sum(int(g.abs().sum() > 0) for g in grads.values()) == len(grads)  # every parameter gets a gradient


def test_grad_cache_without_negatives(tiny_encoder: TextEncoder) -> None:
    inputs = _inputs(tiny_encoder)
    inputs["negative"] = None
    tiny_encoder.zero_grad()
    plain = _loss(_embed(tiny_encoder)(inputs["query"]), _embed(tiny_encoder)(inputs["positive"]), None)
    plain.backward()
    want = {n: p.grad.clone() for n, p in tiny_encoder.named_parameters()}
    loss_c, got = _cached(tiny_encoder, inputs, 2)
    assert loss_c == pytest.approx(plain.item(), rel=1e-6)
    _assert_same(got, want)


def test_dropout_masks_are_replayed(tiny_encoder: TextEncoder) -> None:
    """With LoRA dropout on, the re-embedding pass must see the masks the cached pass saw: the gradient equals
    that of the loss over chunks embedded (with a graph) in the same order from the same RNG state."""
    from peft import LoraConfig, get_peft_model

    enc = copy.deepcopy(tiny_encoder)
    enc.model = get_peft_model(enc.model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=["q_proj"]))
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    enc.train()
    inputs = _inputs(enc)
    emb = _embed(enc)
    assert not torch.equal(emb(inputs["query"]), emb(inputs["query"]))  # dropout is really active

    torch.manual_seed(5)
    loss_c, got = _cached(enc, inputs, 2)
    torch.manual_seed(5)
    enc.zero_grad()
    ref = _loss(*(torch.cat([emb(c) for c in chunk_batch(inputs[r], 2)]) for r in ("query", "positive", "negative")))
    ref.backward()
    want = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    assert loss_c == pytest.approx(ref.item(), rel=1e-6)
    _assert_same(got, want)


def test_chunk_batch_slices_every_tensor() -> None:
    batch = {"input_ids": torch.arange(10).view(5, 2), "attention_mask": torch.ones(5, 2), "note": "x"}
    parts = chunk_batch(batch, 2)
    assert [p["input_ids"].shape[0] for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])
    assert all(p["note"] == "x" for p in parts)


def test_chunk_size_must_be_positive(tiny_encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="chunk_size must be ≥ 1"):
        grad_cache_loss(_embed(tiny_encoder), _inputs(tiny_encoder), _loss, list(tiny_encoder.parameters()), 0)
