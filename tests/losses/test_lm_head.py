from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bireco.losses.lm_head import linear_cross_entropy_sum


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
def test_fused_loss_and_gradients_equal_full_logits(chunk_size: int) -> None:
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    fused = linear_cross_entropy_sum(h, w, t, chunk_size=chunk_size)
    gh, gw = torch.autograd.grad(2.5 * fused, (h, w))  # upstream gradient != 1 is applied too
    ref = F.cross_entropy(h @ w.t(), t, reduction="sum")
    rh, rw = torch.autograd.grad(2.5 * ref, (h, w))
    assert torch.allclose(fused, ref, rtol=1e-10)
    assert torch.allclose(gh, rh, atol=1e-10)
    assert torch.allclose(gw, rw, atol=1e-10)


def test_frozen_weight_gets_no_gradient_and_hidden_still_does() -> None:
    torch.manual_seed(0)
    h = torch.randn(5, 8, requires_grad=True)
    w = torch.randn(11, 8)
    t = torch.randint(0, 11, (5,))
    (g,) = torch.autograd.grad(linear_cross_entropy_sum(h, w, t, 2), (h,))
    (r,) = torch.autograd.grad(F.cross_entropy(h @ w.t(), t, reduction="sum"), (h,))
    assert torch.allclose(g, r, atol=1e-5)


def test_no_rows_gives_zero_connected_to_graph() -> None:
    h = torch.randn(0, 4, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    loss = linear_cross_entropy_sum(h, w, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(w.grad) == 0


def test_no_grad_mode_computes_only_the_loss() -> None:
    torch.manual_seed(0)
    h = torch.randn(9, 8, requires_grad=True)
    w = torch.randn(13, 8, requires_grad=True)
    t = torch.randint(0, 13, (9,))
    with torch.no_grad():
        loss = linear_cross_entropy_sum(h, w, t, 4)
    assert torch.allclose(loss, F.cross_entropy(h @ w.t(), t, reduction="sum"), rtol=1e-6)


def test_chunks_are_capped_by_vocabulary_and_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    import bireco.losses.lm_head as lm_head

    seen: list[int] = []
    real_apply = lm_head._FusedLinearCrossEntropy.apply
    monkeypatch.setattr(lm_head, "MAX_CHUNK_ELEMENTS", 50 * 8)  # 8 rows of a 50-token vocabulary
    monkeypatch.setattr(
        lm_head._FusedLinearCrossEntropy,
        "apply",
        lambda h, w, t, rows, *a: seen.append(rows) or real_apply(h, w, t, rows, *a),
    )
    torch.manual_seed(1)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    fused = linear_cross_entropy_sum(h, w, t, chunk_size=4096)
    assert seen == [8]
    assert torch.allclose(fused, F.cross_entropy(h @ w.t(), t, reduction="sum"), rtol=1e-10)
    linear_cross_entropy_sum(h, w, t, chunk_size=3)
    assert seen == [8, 3]  # a smaller configured chunk is kept
