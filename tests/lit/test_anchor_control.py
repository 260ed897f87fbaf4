"""The anchor control trains Stage I on another pair's embedding; validation still scores the true anchors."""

from __future__ import annotations

import torch

from bireco.data.collate import PairCollator
from bireco.lit.base import OptimConfig
from bireco.lit.stages import ReconstructionModule
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from tests.models.conftest import sentences


def test_shuffled_anchor_is_a_derangement_of_the_batch(make_tiny_model, tiny_tokenizer) -> None:
    rows = [{"query": q, "positive": d, "source": "s"} for q, d in zip(sentences(6, 3), sentences(6, 4), strict=True)]
    batch = PairCollator(Template().bind(tiny_tokenizer), {"s": None}, tiny_tokenizer.pad_token_id, 64, False)(rows)
    modules = {}
    for anchor in ("own", "shuffled"):
        enc = TextEncoder(make_tiny_model(), tiny_tokenizer, Template(), "eos", 64)
        modules[anchor] = ReconstructionModule(enc, OptimConfig(), alpha=0.5, anchor=anchor)
    with torch.no_grad():
        e_q, e_d = modules["own"]._anchors(batch)
        own = modules["own"].training_step(batch, 0)
        shuffled = modules["shuffled"].training_step(batch, 0)
        rolled = modules["own"]._loss(batch, e_q.roll(1, 0), e_d.roll(1, 0))["loss"]
    assert torch.allclose(shuffled, rolled) and not torch.allclose(own, shuffled)
