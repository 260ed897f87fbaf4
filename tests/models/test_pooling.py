"""Pooling: the last *real* token whatever the padding side, and exact mean / weighted-mean values."""

from __future__ import annotations

import pytest
import torch

from bireco.models.pooling import POOLINGS, eos_pool, get_pooling, last_token_index, mean_pool, weighted_mean_pool


def _hidden(b: int, t: int, h: int = 2) -> torch.Tensor:
    """hidden[b, t] = [100*b + t, -(100*b + t)] so a pooled row says exactly which position it came from."""
    pos = (100 * torch.arange(b).unsqueeze(1) + torch.arange(t)).float()  # (B, T)
    return torch.stack([pos, -pos], dim=-1)[..., :h]


RIGHT = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
LEFT = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])


def test_last_token_index_right_left_and_no_padding() -> None:
    assert last_token_index(RIGHT).tolist() == [2, 4, 0]
    assert last_token_index(LEFT).tolist() == [4, 4, 4]
    assert last_token_index(torch.ones(2, 7, dtype=torch.long)).tolist() == [6, 6]
    # bool and float masks work too
    assert last_token_index(RIGHT.bool()).tolist() == [2, 4, 0]
    assert last_token_index(RIGHT.float()).tolist() == [2, 4, 0]


def test_eos_pool_takes_the_last_real_token_right_padding() -> None:
    out = eos_pool(_hidden(3, 5), RIGHT)
    assert out.tolist() == [[2.0, -2.0], [104.0, -104.0], [200.0, -200.0]]


def test_eos_pool_takes_the_last_real_token_left_padding() -> None:
    out = eos_pool(_hidden(3, 5), LEFT)
    assert out.tolist() == [[4.0, -4.0], [104.0, -104.0], [204.0, -204.0]]


def test_eos_pool_same_vector_for_left_and_right_padding_of_the_same_sequence() -> None:
    seq = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    right = torch.zeros(1, 6, 4)
    right[0, :3] = seq
    left = torch.zeros(1, 6, 4)
    left[0, 3:] = seq
    r = eos_pool(right, torch.tensor([[1, 1, 1, 0, 0, 0]]))
    lf = eos_pool(left, torch.tensor([[0, 0, 0, 1, 1, 1]]))
    assert torch.equal(r[0], seq[2])
    assert torch.equal(lf[0], seq[2])


def test_mean_pool_exact_values() -> None:
    hidden = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [99.0, 99.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 20.0]]
    left_hidden = torch.tensor([[[99.0, 99.0], [1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]])
    assert mean_pool(left_hidden, torch.tensor([[0, 1, 1, 1]])).tolist() == [[2.0, 20.0]]


def test_weighted_mean_pool_exact_values() -> None:
    # weights 1, 2, 3 over the real tokens: (1*1 + 2*2 + 3*3) / 6 = 14/6
    hidden = torch.tensor([[[1.0, 0.0], [2.0, 6.0], [3.0, 0.0], [99.0, 99.0]]])
    out = weighted_mean_pool(hidden, torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(out, torch.tensor([[14.0 / 6.0, 12.0 / 6.0]]))
    # left padding: weights restart at 1 on the first real token, not on the first position
    left = torch.tensor([[[99.0, 99.0], [1.0, 0.0], [2.0, 6.0], [3.0, 0.0]]])
    torch.testing.assert_close(weighted_mean_pool(left, torch.tensor([[0, 1, 1, 1]])), out)


def test_mean_pools_of_a_batch_are_row_wise() -> None:
    hidden = _hidden(3, 5, h=1)
    mean = mean_pool(hidden, RIGHT)
    assert mean[:, 0].tolist() == [1.0, 102.0, 200.0]
    # row 0: positions 0,1,2 weighted 1,2,3 -> (0 + 2 + 6) / 6
    wmean = weighted_mean_pool(hidden, RIGHT)
    torch.testing.assert_close(wmean[:, 0], torch.tensor([8.0 / 6.0, (100 * 15 + 40) / 15.0, 200.0]))


def test_get_pooling_known_names() -> None:
    assert get_pooling("eos") is eos_pool
    assert get_pooling("mean") is mean_pool
    assert get_pooling("weighted_mean") is weighted_mean_pool
    assert set(POOLINGS) == {"eos", "mean", "weighted_mean"}


def test_get_pooling_unknown_name_lists_valid_choices() -> None:
    with pytest.raises(KeyError) as info:
        get_pooling("cls")
    msg = str(info.value)
    assert "unknown pooling 'cls'" in msg
    assert "['eos', 'mean', 'weighted_mean']" in msg
