from __future__ import annotations

import math

import pytest
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


def test_info_nce_sum_reduction_is_mean_times_batch() -> None:
    torch.manual_seed(1)
    q, p, n = torch.randn(5, 8), torch.randn(5, 8), torch.randn(2, 8)
    assert torch.allclose(info_nce(q, p, n, reduction="sum"), 5 * info_nce(q, p, n), rtol=1e-6)


def test_gathered_loss_offsets_labels_and_scales_unequal_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank arithmetic of the cross-rank loss, with the collectives emulated: ranks holding 3 and 2 queries
    (and 1 and 2 negatives); the mean of the two ranks' losses (what DDP averages) is the loss of one process
    over the concatenated batch, so each query counts once whatever its rank's size."""
    import bireco.losses.contrastive as C

    torch.manual_seed(2)
    qs, ps = [torch.randn(3, 8), torch.randn(2, 8)], [torch.randn(3, 8), torch.randn(2, 8)]
    ns = [torch.randn(1, 8), torch.randn(2, 8)]
    sizes = [[3, 3, 1], [2, 2, 2]]
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(C, "world", lambda rank=rank: (2, rank))
        monkeypatch.setattr(C, "all_sizes", lambda s, d: sizes)
        # the emulated gather returns every rank's rows (positives or negatives: told by identity) in rank order
        parts = {id(ps[rank]): ps, id(ns[rank]): ns}
        monkeypatch.setattr(C, "gather_rows_with_grad", lambda x, rows, parts=parts: torch.cat(parts[id(x)]))
        per_rank.append(C.gathered_info_nce(qs[rank], ps[rank], ns[rank], scale=10.0))
    single = info_nce(torch.cat(qs), torch.cat(ps), torch.cat(ns), scale=10.0)
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, single, rtol=1e-6)
    # rank 1's queries are labelled with positives 3 and 4 of the gathered candidates
    logits = 10.0 * torch.nn.functional.normalize(qs[1]) @ torch.nn.functional.normalize(torch.cat(ps + ns)).t()
    want = torch.nn.functional.cross_entropy(logits, torch.tensor([3, 4]), reduction="sum") * 2 / 5
    assert torch.allclose(per_rank[1], want, rtol=1e-6)
