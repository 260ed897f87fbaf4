from __future__ import annotations

import math

import torch

from bireco.losses.contrastive import info_nce


def test_info_nce_matches_hand_computed_example() -> None:
    # 2 queries, 2 positives, 1 hard negative, all unit vectors so cosine = dot product
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    n = torch.tensor([[0.8, 0.6]])
    scale = 2.0
    # query 0: sims to [p0, p1, n0] = [1, 0.6, 0.8], label 0
    l0 = -math.log(math.exp(2 * 1.0) / (math.exp(2 * 1.0) + math.exp(2 * 0.6) + math.exp(2 * 0.8)))
    # query 1: sims = [0, 0.8, 0.6], label 1
    l1 = -math.log(math.exp(2 * 0.8) / (math.exp(0.0) + math.exp(2 * 0.8) + math.exp(2 * 0.6)))
    loss = info_nce(q, p, n, scale=scale)
    assert math.isclose(loss.item(), (l0 + l1) / 2, rel_tol=1e-6)


def test_info_nce_uses_cosine_not_dot_product() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(info_nce(q, p), info_nce(q * 7.0, p * 0.1))


def test_info_nce_label_offset_points_at_gathered_positives() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 8)
    p_all = torch.randn(6, 8)  # e.g. 3 ranks x 2; this rank is rank 1
    local = info_nce(q, p_all, label_offset=2)
    logits = 50.0 * torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(p_all).t()
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 3]))
    assert torch.allclose(local, expected, atol=1e-6)


def test_info_nce_is_fp32_and_finite_on_bf16_extremes() -> None:
    q = torch.full((4, 16), 3.0e38, dtype=torch.bfloat16)
    p = torch.full((4, 16), -3.0e38, dtype=torch.bfloat16)
    loss = info_nce(q, p)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    # identical candidates: loss is log(B)
    assert math.isclose(loss.item(), math.log(4), rel_tol=1e-5)


def test_hard_negative_raises_loss() -> None:
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.9, 0.1]])
    far = info_nce(q, p, torch.tensor([[-1.0, 0.0]]))
    near = info_nce(q, p, torch.tensor([[1.0, 0.05]]))
    assert near > far
