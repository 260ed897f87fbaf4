"""The anchor control trains Stage I on another pair's embedding; validation still scores the true anchors."""

from __future__ import annotations

import torch

from bireco.data.collate import PairCollator
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from tests.helpers import stage_module
from tests.models.conftest import sentences


def test_shuffled_anchor_is_a_derangement_of_the_batch(make_tiny_model, tiny_tokenizer) -> None:
    rows = [{"query": q, "positive": d, "source": "s"} for q, d in zip(sentences(6, 3), sentences(6, 4), strict=True)]
    batch = PairCollator(Template().bind(tiny_tokenizer), {"s": None}, tiny_tokenizer.pad_token_id, 64, False)(rows)
    modules = {}
    for anchor in ("own", "shuffled"):
        enc = TextEncoder(make_tiny_model(), tiny_tokenizer, Template(), "eos", 64)
        modules[anchor] = stage_module(enc, "reconstruction", **{"loss.alpha": 0.5, "loss.anchor": anchor})
    with torch.no_grad():
        own_loss = modules["own"].objective
        e_q, e_d = own_loss.anchors(modules["own"].encoder, batch)
        own = modules["own"].training_step(batch, 0)
        shuffled = modules["shuffled"].training_step(batch, 0)
        rolled = own_loss.loss(modules["own"].encoder, batch, e_q.roll(1, 0), e_d.roll(1, 0))["loss"]
    assert torch.allclose(shuffled, rolled) and not torch.allclose(own, shuffled)
