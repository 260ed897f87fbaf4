"""The reference Stage I step computes the same loss and gradients as bireco's: the speed claim compares equal work."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from benchmarks.fixtures import reference_module
from bireco.data.collate import PairCollator
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.models.tiny import build_tiny_model
from tests.bench.helpers import SPEC, sentences
from tests.helpers import stage_module


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_reference_loss_and_gradients_equal_bireco(bench_tokenizer, alpha: float) -> None:
    model = build_tiny_model(SPEC, bench_tokenizer).train()
    ref_model = copy.deepcopy(model)
    encoder = TextEncoder(model, bench_tokenizer, Template(name="plain"), "eos", max_length=24)
    module = stage_module(encoder, "reconstruction", **{"loss.alpha": alpha})
    collator = PairCollator(encoder.bound, {"s": "find the answer"}, encoder.pad_id, 24, with_negatives=False)
    q, d = sentences(6, 1, 8, seed=1), sentences(6, 3, 30, seed=2)  # uneven lengths: padding and truncation
    batch = collator([{"query": a, "positive": b, "source": "s"} for a, b in zip(q, d, strict=True)])
    assert batch["positive"]["attention_mask"].sum(1).unique().numel() > 1, "the batch must contain padding"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        ours = module.training_step(batch, 0)
    ref = reference_module().reference_stage1_loss(
        ref_model, batch["query"], batch["positive"], alpha, module.objective.target_segments
    )
    torch.testing.assert_close(ref["loss"], ours, rtol=0, atol=1e-5)
    assert float(ours) > 1.0  # a real loss on a random model (~log V), not a degenerate zero

    ours.backward()
    ref["loss"].backward()
    grads = dict(ref_model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
