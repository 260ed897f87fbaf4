"""Matryoshka: the loss summed over truncated, re-normalised embeddings; one full dimension = the plain loss."""

from __future__ import annotations

import pytest
import torch

from bireco.losses.contrastive import gathered_info_nce, info_nce
from bireco.losses.grad_cache import grad_cache_loss
from bireco.models.encoder import TextEncoder
from tests.losses.test_grad_cache import _assert_same, _embed, _inputs


def _embeddings(seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(r, 32, generator=gen, requires_grad=True) for r in (5, 5, 4))


def test_one_full_dimension_is_exactly_the_plain_loss() -> None:
    q, p, n = _embeddings()
    plain = info_nce(q, p, n)
    mrl = info_nce(q, p, n, matryoshka=[(32, 1.0)])
    assert float(mrl) == float(plain)
    for a, b in zip(torch.autograd.grad(plain, [q, p, n]), torch.autograd.grad(mrl, [q, p, n]), strict=True):
        assert torch.equal(a, b)


def test_weighted_sum_over_truncated_renormalised_embeddings() -> None:
    q, p, n = _embeddings(1)
    dims = [(8, 0.5), (16, 1.0), (32, 2.0)]
    want = sum(w * info_nce(q[:, :d].clone(), p[:, :d].clone(), n[:, :d].clone()) for d, w in dims)
    got = info_nce(q, p, n, matryoshka=dims)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    # the truncated losses differ from the full one: the prefix is trained to stand alone
    assert abs(float(info_nce(q[:, :8], p[:, :8], n[:, :8])) - float(info_nce(q, p, n))) > 1e-3
    # the single-process gathered loss is the same function
    assert float(gathered_info_nce(q, p, n, matryoshka=dims)) == float(got)


def test_matryoshka_with_grad_cache_equals_plain(tiny_encoder: TextEncoder) -> None:
    dims = [(8, 1.0), (16, 0.5), (32, 0.25)]

    def loss(query, positive, negative):
        return info_nce(query, positive, negative, matryoshka=dims)

    inputs = _inputs(tiny_encoder)
    tiny_encoder.zero_grad()
    plain = loss(*(_embed(tiny_encoder)(inputs[r]) for r in ("query", "positive", "negative")))
    plain.backward()
    want = {n: p.grad.clone() for n, p in tiny_encoder.named_parameters() if p.grad is not None}
    for chunk, budget in ((2, None), (None, 24)):
        tiny_encoder.zero_grad()
        params = [p for p in tiny_encoder.parameters() if p.requires_grad]
        cached = grad_cache_loss(_embed(tiny_encoder), inputs, loss, params, chunk, max_tokens=budget)
        cached.backward()
        got = {n: p.grad.clone() for n, p in tiny_encoder.named_parameters() if p.grad is not None}
        assert cached.item() == pytest.approx(plain.item(), rel=1e-6)
        _assert_same(got, want, tol=1e-5)
