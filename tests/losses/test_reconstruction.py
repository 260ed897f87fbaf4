from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bireco.losses.reconstruction import bidirectional_reconstruction_loss, target_mask
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Segment

QUERIES = ["where does the painter live", "violin", "which city is the doctor born in river mountain"]
DOCS = ["the painter lives in river city and works blue", "a violin doctor born green", "doctor born in mountain"]
INSTR = "retrieve the city"
DEFAULT_TARGETS = (Segment.TEMPLATE, Segment.INSTRUCTION, Segment.TEXT)


def _batches(enc: TextEncoder):
    q = enc.tokenize(QUERIES, [INSTR] * len(QUERIES))
    d = enc.tokenize(DOCS)
    return q, d


def _per_pair_reference(enc: TextEncoder, alpha: float, targets=DEFAULT_TARGETS) -> torch.Tensor:
    """The straightforward computation: one pair at a time, full logits from the model's own forward."""
    model = enc.model
    sums = {"q2d": 0.0, "d2q": 0.0}
    counts = {"q2d": 0, "d2q": 0}
    for q_text, d_text in zip(QUERIES, DOCS, strict=True):
        q = enc.tokenize([q_text], [INSTR])
        d = enc.tokenize([d_text])
        e_q = enc(q["input_ids"], q["attention_mask"])
        e_d = enc(d["input_ids"], d["attention_mask"])
        for name, anchor, side in (("q2d", e_q, d), ("d2q", e_d, q)):
            ids = side["input_ids"][0]
            x = torch.cat([anchor[:, None], model.get_input_embeddings()(ids[None, :-1])], dim=1)
            logits = model(inputs_embeds=x).logits[0]  # (T, V); position j predicts ids[j]
            keep = torch.tensor([s in [int(t) for t in targets] for s in side["segments"][0].tolist()])
            sums[name] = sums[name] + F.cross_entropy(logits[keep], ids[keep], reduction="sum")
            counts[name] += int(keep.sum())
    return alpha * sums["q2d"] / counts["q2d"] + (1 - alpha) * sums["d2q"] / counts["d2q"]


@pytest.mark.parametrize("alpha", [0.2, 1.0, 0.0])
def test_batched_loss_equals_per_pair_computation(tiny_encoder: TextEncoder, alpha: float) -> None:
    q, d = _batches(tiny_encoder)
    e_q = tiny_encoder(q["input_ids"], q["attention_mask"])
    e_d = tiny_encoder(d["input_ids"], d["attention_mask"])
    out = bidirectional_reconstruction_loss(tiny_encoder.model, e_q, e_d, q, d, alpha, DEFAULT_TARGETS, chunk_size=5)
    ref = _per_pair_reference(tiny_encoder, alpha)
    assert torch.allclose(out["loss"], ref, atol=1e-5), (out["loss"].item(), ref.item())
    assert ("loss_q2d" in out) == (alpha > 0) and ("loss_d2q" in out) == (alpha < 1)


def test_total_is_alpha_weighted_sum_of_directions(tiny_encoder: TextEncoder) -> None:
    q, d = _batches(tiny_encoder)
    e_q = tiny_encoder(q["input_ids"], q["attention_mask"])
    e_d = tiny_encoder(d["input_ids"], d["attention_mask"])
    out = bidirectional_reconstruction_loss(tiny_encoder.model, e_q, e_d, q, d, 0.2, DEFAULT_TARGETS)
    assert torch.allclose(out["loss"], 0.2 * out["loss_q2d"] + 0.8 * out["loss_d2q"])


def test_masked_positions_do_not_matter(tiny_encoder: TextEncoder) -> None:
    """Changing the label (token id) at padding and at the non-target EOS changes nothing."""
    q, d = _batches(tiny_encoder)
    e_q = tiny_encoder(q["input_ids"], q["attention_mask"]).detach()
    e_d = tiny_encoder(d["input_ids"], d["attention_mask"]).detach()
    base = bidirectional_reconstruction_loss(tiny_encoder.model, e_q, e_d, q, d, 0.2, DEFAULT_TARGETS)["loss"]
    for side in (q, d):
        masked = ~target_mask(side["attention_mask"], side["segments"], DEFAULT_TARGETS)
        assert masked.any()
        side["input_ids"] = torch.where(masked, torch.full_like(side["input_ids"], 7), side["input_ids"])
    changed = bidirectional_reconstruction_loss(tiny_encoder.model, e_q, e_d, q, d, 0.2, DEFAULT_TARGETS)["loss"]
    assert torch.allclose(base, changed, atol=1e-6)


def test_target_segments_select_tokens(tiny_encoder: TextEncoder) -> None:
    q, _ = _batches(tiny_encoder)
    only_text = target_mask(q["attention_mask"], q["segments"], [Segment.TEXT])
    everything = target_mask(q["attention_mask"], q["segments"], list(Segment))
    assert only_text.sum() < everything.sum() == q["attention_mask"].sum()
    assert (q["segments"][only_text] == Segment.TEXT).all()


def test_gradient_reaches_encoder_through_anchors_unless_detached(tiny_encoder: TextEncoder) -> None:
    q, d = _batches(tiny_encoder)
    e_q = tiny_encoder(q["input_ids"], q["attention_mask"])
    e_d = tiny_encoder(d["input_ids"], d["attention_mask"])
    loss = bidirectional_reconstruction_loss(tiny_encoder.model, e_q, e_d, q, d, 0.2, DEFAULT_TARGETS)["loss"]
    g_q, g_d = torch.autograd.grad(loss, (e_q, e_d))
    assert g_q.abs().sum() > 0 and g_d.abs().sum() > 0
    # the total parameter gradient = decoder path + encoder path; detaching removes exactly the encoder path
    params = [p for p in tiny_encoder.model.parameters()]
    full = torch.autograd.grad(
        bidirectional_reconstruction_loss(
            tiny_encoder.model,
            tiny_encoder(q["input_ids"], q["attention_mask"]),
            tiny_encoder(d["input_ids"], d["attention_mask"]),
            q,
            d,
            0.2,
            DEFAULT_TARGETS,
        )["loss"],
        params,
    )
    detached = torch.autograd.grad(
        bidirectional_reconstruction_loss(tiny_encoder.model, e_q.detach(), e_d.detach(), q, d, 0.2, DEFAULT_TARGETS)[
            "loss"
        ],
        params,
        allow_unused=True,
    )
    diff = sum((f - (g if g is not None else 0)).abs().sum() for f, g in zip(full, detached, strict=True))
    assert diff > 1e-6


def test_left_padded_input_is_rejected(tiny_encoder: TextEncoder) -> None:
    tiny_encoder.padding_side = "left"
    try:
        q, d = _batches(tiny_encoder)
    finally:
        tiny_encoder.padding_side = "right"
    e = torch.zeros(len(QUERIES), tiny_encoder.model.config.hidden_size)
    with pytest.raises(RuntimeError, match="right-padded"):
        bidirectional_reconstruction_loss(tiny_encoder.model, e, e, q, d, 0.2, DEFAULT_TARGETS)
