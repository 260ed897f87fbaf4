"""GradCache: the same loss and parameter gradients as the plain computation, one chunk's activations at a time."""

from __future__ import annotations

import pytest
import torch

from bireco.losses.contrastive import info_nce
from bireco.losses.grad_cache import grad_cache_loss, plan_chunks
from bireco.models.encoder import TextEncoder
from tests.losses.conftest import WORDS, with_lora_dropout

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


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tol: float = 2e-6) -> None:
    assert got.keys() == want.keys() and len(want) > 0
    for n, g in want.items():
        assert float((got[n] - g).abs().max()) <= tol * float(g.abs().max()) + 1e-12, n


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_grad_cache_equals_plain_loss_and_gradients(tiny_encoder: TextEncoder, chunk: int) -> None:
    inputs = _inputs(tiny_encoder)
    loss, grads = _plain(tiny_encoder, inputs)
    loss_c, grads_c = _cached(tiny_encoder, inputs, chunk)
    assert loss_c == pytest.approx(loss, rel=1e-6)
    _assert_same(grads_c, grads, tol=1e-5)  # fp32; each chunk is cut to its own width (other kernel shapes)
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
    enc = with_lora_dropout(tiny_encoder)
    inputs = _inputs(enc)
    emb = _embed(enc)
    assert not torch.equal(emb(inputs["query"]), emb(inputs["query"]))  # dropout is really active

    torch.manual_seed(5)
    loss_c, got = _cached(enc, inputs, 2)
    torch.manual_seed(5)
    enc.zero_grad()
    chunks = {r: [c for _, c in plan_chunks(inputs[r], 2, None)] for r in ("query", "positive", "negative")}
    ref = _loss(*(torch.cat([emb(c) for c in chunks[r]]) for r in ("query", "positive", "negative")))
    ref.backward()
    want = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    assert loss_c == pytest.approx(ref.item(), rel=1e-6)
    _assert_same(got, want)


def test_fixed_row_chunks_keep_the_order_and_cut_to_their_own_width() -> None:
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    batch = {"input_ids": torch.arange(20).view(5, 4), "attention_mask": mask, "note": "x"}
    plan = plan_chunks(batch, 2, None)
    assert [idx.tolist() for idx, _ in plan] == [[0, 1], [2, 3], [4]]
    assert [tuple(c["input_ids"].shape) for _, c in plan] == [(2, 4), (2, 3), (1, 1)]
    assert torch.equal(plan[1][1]["input_ids"], batch["input_ids"][2:4, :3])
    assert all(c["note"] == "x" for _, c in plan)


def test_chunk_size_must_be_positive(tiny_encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="chunk_size must be ≥ 1"):
        grad_cache_loss(_embed(tiny_encoder), _inputs(tiny_encoder), _loss, list(tiny_encoder.parameters()), 0)


def test_token_budget_chunks_cover_every_row_once_within_the_budget(tiny_encoder: TextEncoder) -> None:
    from bireco.losses.grad_cache import plan_chunks

    inputs = _inputs(tiny_encoder)
    part = inputs["positive"]
    lengths = part["attention_mask"].sum(1)
    plan = plan_chunks(part, None, max_tokens=int(lengths.max()) * 2)
    order = torch.cat([idx for idx, _ in plan])
    assert sorted(order.tolist()) == list(range(part["input_ids"].shape[0]))
    assert lengths[order].tolist() == sorted(lengths.tolist(), reverse=True)  # longest first
    for idx, sub in plan:
        assert sub["input_ids"].numel() <= int(lengths.max()) * 2  # padded tokens within the budget
        assert sub["attention_mask"][:, -1].any()  # no all-padding column left
        assert torch.equal(sub["attention_mask"].sum(1), lengths[idx])
    assert len(plan) < len(lengths)  # short rows share a chunk


@pytest.mark.parametrize("max_tokens", [1, 20, 48, 10_000])
def test_token_budget_grad_cache_equals_plain(tiny_encoder: TextEncoder, max_tokens: int) -> None:
    """Token-budget chunks (rows reordered by length, padding cut): the plain loss and gradients."""
    inputs = _inputs(tiny_encoder)
    loss, grads = _plain(tiny_encoder, inputs)
    tiny_encoder.zero_grad()
    params = [p for p in tiny_encoder.parameters() if p.requires_grad]
    cached = grad_cache_loss(_embed(tiny_encoder), inputs, _loss, params, None, max_tokens=max_tokens)
    cached.backward()
    got = {n: p.grad.clone() for n, p in tiny_encoder.named_parameters() if p.grad is not None}
    assert cached.item() == pytest.approx(loss, rel=1e-6)
    _assert_same(got, grads, tol=1e-5)  # fp32; the chunks' gradients are summed in another (length) order


def test_token_budget_replays_dropout(tiny_encoder: TextEncoder) -> None:
    """With dropout, the reference embeds the same token-budget chunks with a graph, in the same order."""
    from bireco.losses.grad_cache import plan_chunks

    enc = with_lora_dropout(tiny_encoder)
    inputs, emb, budget = _inputs(enc), _embed(enc), 24
    params = [p for p in enc.parameters() if p.requires_grad]
    torch.manual_seed(5)
    enc.zero_grad()
    loss_c = grad_cache_loss(emb, inputs, _loss, params, None, max_tokens=budget)
    loss_c.backward()
    got = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    torch.manual_seed(5)
    enc.zero_grad()
    embedded = []
    for role in ("query", "positive", "negative"):
        plan = plan_chunks(inputs[role], None, budget)
        out = torch.cat([emb(sub) for _, sub in plan])
        order = torch.cat([idx for idx, _ in plan])
        embedded.append(torch.zeros_like(out).index_copy(0, order, out))
    ref = _loss(*embedded)
    ref.backward()
    want = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    assert loss_c.item() == pytest.approx(ref.item(), rel=1e-6)
    _assert_same(got, want)
