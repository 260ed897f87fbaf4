from __future__ import annotations

import pytest
import torch

from bireco.losses.reconstruction import anchored_lm_loss_sum, target_mask
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Segment
from bireco.reconstruct.score import control_order, teacher_forced_losses, token_f1, words
from tests.reconstruct.helpers import ALL_SEGMENTS


def test_words_lowercase_and_drop_punctuation() -> None:
    assert words("The cat, the HAT!") == ["the", "cat", "the", "hat"]


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        ("a profile of Ana Lima, painter", "a profile of Ana Lima, painter", 1.0),
        ("The cat.", "the CAT", 1.0),  # case and punctuation do not count
        ("a b c d", "a x y z", 0.25),  # P = R = 1/4
        ("a a b", "a b b", 2 / 3),  # counts are clipped: 2 shared of 3
        ("a b", "a b c d", 2 / 3),  # P = 1, R = 1/2
        ("river mountain", "violin doctor", 0.0),
        ("", "", 1.0),
        ("", "text", 0.0),
        ("...", "text", 0.0),
    ],
)
def test_token_f1_exact(pred: str, ref: str, expected: float) -> None:
    assert token_f1(pred, ref) == pytest.approx(expected, abs=1e-12)


def test_f1_of_a_text_against_itself_is_exactly_one() -> None:
    text = "Maria Oyelaran was born in 1954 in Kestrel Bay and works as a violin maker."
    assert token_f1(text, text) == 1.0


@pytest.mark.parametrize(
    "keys",
    [
        ["qa", "search", "para"] * 4,  # grouped by subject, as the generated world's held-out pairs
        ["qa", "qa"],
        ["qa", "search", "para"],  # every key alone: the lone rows form one cycle
        ["qa", "qa", "x", "y"],  # a key's cycle and a cycle of the lone rows
        [None] * 7,
    ],
)
def test_control_order_is_a_derangement_within_the_key(keys: list) -> None:
    order = control_order(keys)
    assert sorted(order) == list(range(len(keys)))  # a permutation: every embedding is used once
    assert all(order[i] != i for i in range(len(keys)))
    for i, j in enumerate(order):
        if keys.count(keys[i]) > 1:
            assert keys[j] == keys[i], (i, j)


def test_a_single_lone_row_joins_another_keys_cycle() -> None:
    keys = ["qa", "qa", "qa", "search"]
    order = control_order(keys)
    assert sorted(order) == [0, 1, 2, 3] and all(order[i] != i for i in range(4))
    assert keys[order[3]] == "qa" and sum(keys[order[i]] == "search" for i in range(3)) == 1


def test_control_order_does_not_take_the_neighbour_of_grouped_rows() -> None:
    """The old control (row i decodes row i-1) gave the held-out pairs' rows, three per person, their own
    person's embedding two times in three; within a source the neighbour is another person."""
    keys = ["qa", "search", "para"] * 50
    order = control_order(keys)
    assert all(order[i] % 3 == i % 3 for i in range(len(keys)))  # same instruction ...
    assert sum(abs(order[i] - i) == 3 for i in range(len(keys))) < 20  # ... and not a fixed step along the file
    assert control_order(keys) == order and control_order(keys, seed=1) != order  # seeded


def test_control_order_needs_two_rows() -> None:
    with pytest.raises(ValueError, match=">= 2 rows"):
        control_order(["qa"])


def test_teacher_forced_losses_add_up_to_stage1_loss(trained) -> None:
    """Per-row sums are exactly what Stage I's batched loss sums (same layout, same targets)."""
    enc, pairs = trained
    enc_model: TextEncoder = enc
    q = enc_model.tokenize([p.query for p in pairs], [p.instruction for p in pairs])
    d = enc_model.tokenize([p.positive for p in pairs])
    with torch.no_grad():
        e_q = enc_model(q["input_ids"], q["attention_mask"])
        segs = [Segment[s.upper()] for s in ALL_SEGMENTS[:3]]  # without EOS: a subset must also match
        tm = target_mask(d["attention_mask"], d["segments"], segs)
        ref_sum, ref_n = anchored_lm_loss_sum(enc_model.model, e_q, d["input_ids"], d["attention_mask"], tm)
    sums, counts = teacher_forced_losses(enc_model.model, e_q, d, segs)
    assert counts.tolist() == tm.sum(dim=1).tolist() and int(counts.sum()) == int(ref_n)
    assert torch.allclose(sums.sum(), ref_sum, rtol=1e-5)
    # and each row's sum is that row's own loss (a loss credited to the wrong row would still add up)
    for i in range(len(pairs)):
        row_sum, _ = anchored_lm_loss_sum(
            enc_model.model, e_q[i : i + 1], d["input_ids"][i : i + 1], d["attention_mask"][i : i + 1], tm[i : i + 1]
        )
        assert torch.allclose(sums[i], row_sum, rtol=1e-5, atol=1e-6), i
