"""False-negative masking: a copy of a query's positive leaves that query's softmax — exactly, also with dropout."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from bireco.data.collate import PairCollator
from bireco.losses.contrastive import candidate_exclusions, gathered_info_nce, info_nce
from bireco.losses.false_negatives import duplicate_mask, normalize_text, text_key, token_ids_key
from bireco.losses.grad_cache import plan_chunks
from bireco.losses.objective import embed
from bireco.models.encoder import TextEncoder
from tests.helpers import stage_module
from tests.losses.conftest import with_lora_dropout

SCALE = 50.0
# row 2's positive is row 0's; row 3's hard negative is row 1's positive; row 1's negative is its own positive
ROWS = [
    {"query": "who is alpha", "positive": "alpha river city born", "negative": "beta green"},
    {"query": "blue river", "positive": "blue river painter lives", "negative": "blue river painter lives"},
    {"query": "gamma born", "positive": "alpha river city born", "negative": "violin doctor red"},
    {"query": "where delta", "positive": "delta works on the lake", "negative": "blue river painter lives"},
    {"query": "violin red", "positive": "violin painter red song"},
]


def _reference_loss(q: torch.Tensor, cands: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per query, cross-entropy over only the candidates it keeps (its copies removed), written out row by row."""
    q, c = F.normalize(q.float(), dim=-1), F.normalize(cands.float(), dim=-1)
    terms = []
    for i in range(q.shape[0]):
        cols = keep[i].nonzero().squeeze(1)
        logits = SCALE * q[i] @ c[cols].t()
        label = int((cols == i).nonzero())
        terms.append(-torch.log_softmax(logits, dim=0)[label])
    return torch.stack(terms).mean()


def test_keys_compare_inputs() -> None:
    assert token_ids_key([1, 2, 3]) == token_ids_key([1, 2, 3]) != token_ids_key([1, 2, 4])
    assert token_ids_key([1, 2]) != token_ids_key([1, 2, 0])
    assert 0 <= token_ids_key([7] * 50) < 2**63
    assert normalize_text("  Caf\u0065\u0301  au LAIT ") == normalize_text("café au lait") == "café au lait"
    assert text_key("The  Cat") == text_key("the cat") != text_key("the cats")


def test_duplicate_mask_names_each_querys_copies() -> None:
    keys = torch.tensor([10, 20, 10, 30, 20, 10])  # 3 positives, then 3 negatives
    mask = duplicate_mask(keys, torch.arange(3))
    want = torch.tensor(
        [
            [False, False, True, False, False, True],  # query 0: positive 2 and negative 5 are copies of 10
            [False, False, False, False, True, False],  # query 1: negative 4
            [True, False, False, False, False, True],  # query 2: positive 0 and negative 5
        ]
    )
    assert torch.equal(mask, want)


def test_masked_loss_equals_the_loss_without_the_copies() -> None:
    """Loss and gradients (w.r.t. every embedding) equal cross-entropy over the candidates minus the copies."""
    gen = torch.Generator().manual_seed(0)
    q, p, n = (torch.randn(r, 8, generator=gen, requires_grad=True) for r in (4, 4, 3))
    pos_keys, neg_keys = torch.tensor([1, 2, 1, 3]), torch.tensor([4, 2, 1])
    exclude = candidate_exclusions(pos_keys, neg_keys, 4)
    assert int(exclude.sum()) == 5  # q0: p2, n2; q1: n1; q2: p0, n2
    loss = info_nce(q, p, n, scale=SCALE, exclude=exclude)
    got = torch.autograd.grad(loss, [q, p, n])
    ref = _reference_loss(q, torch.cat([p, n]), ~exclude)
    want = torch.autograd.grad(ref, [q, p, n])
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    assert float(info_nce(q, p, n, scale=SCALE)) > float(loss) + 1e-3  # the copies did compete before


def test_single_process_gathered_loss_masks_too() -> None:
    gen = torch.Generator().manual_seed(1)
    q, p, n = (torch.randn(r, 8, generator=gen) for r in (3, 3, 2))
    pos_keys, neg_keys = torch.tensor([5, 6, 5]), torch.tensor([6, 9])
    stats: dict[str, torch.Tensor] = {}
    got = gathered_info_nce(q, p, n, SCALE, positive_keys=pos_keys, negative_keys=neg_keys, stats=stats)
    want = info_nce(q, p, n, scale=SCALE, exclude=candidate_exclusions(pos_keys, neg_keys, 3))
    assert float(got) == float(want)
    assert int(stats["masked_candidates"]) == 3
    with pytest.raises(ValueError, match="every candidate needs a key"):
        gathered_info_nce(q, p, n, SCALE, positive_keys=pos_keys)


def test_collator_keys_are_the_token_ids_or_the_text(tiny_encoder: TextEncoder) -> None:
    rows = [{**r, "source": "s"} for r in ROWS]
    rows[4] = {**rows[4], "positive": "ALPHA river  city born"}  # a copy of row 0's positive up to case and space
    by_ids = PairCollator(tiny_encoder.bound, {}, tiny_encoder.pad_id, 64, duplicate_key="token_ids")(rows)
    by_text = PairCollator(tiny_encoder.bound, {}, tiny_encoder.pad_id, 64, duplicate_key="text")(rows)
    ids_keys, text_keys = by_ids["positive"]["key"].tolist(), by_text["positive"]["key"].tolist()
    assert ids_keys[0] == ids_keys[2] and len(set(ids_keys)) == 4
    assert text_keys[0] == text_keys[2] == text_keys[4] and len(set(text_keys)) == 3
    assert by_ids["negative"]["key"].tolist()[1] == ids_keys[1]
    assert "key" not in PairCollator(tiny_encoder.bound, {}, tiny_encoder.pad_id, 64)(rows)["positive"]
    with pytest.raises(ValueError, match="duplicate_key"):
        PairCollator(tiny_encoder.bound, {}, tiny_encoder.pad_id, 64, duplicate_key="embedding")


def _dropout_module(tiny_encoder: TextEncoder, chunk: int | None):
    enc = with_lora_dropout(tiny_encoder)
    module = stage_module(enc, "contrastive", **{"loss.scale": SCALE, "grad_cache.chunk_size": chunk})
    module.train()
    return module


@pytest.mark.parametrize("chunk", [None, 2], ids=["plain", "grad_cache"])
def test_stage_module_with_dropout_masks_exactly_the_copies(tiny_encoder: TextEncoder, chunk: int | None) -> None:
    """Through the real stage module with LoRA dropout on (so the two copies embed differently): loss and every
    trainable gradient equal the per-query reference over the same embeddings with the copies removed."""
    module = _dropout_module(tiny_encoder, chunk)
    batch = PairCollator(module.encoder.bound, {}, module.encoder.pad_id, 64, duplicate_key="token_ids")(
        [{**r, "source": "s"} for r in ROWS]
    )
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    emb = partial(embed, module.encoder)

    torch.manual_seed(3)
    loss = module.training_step(batch, 0)
    got = torch.autograd.grad(loss, list(params.values()))

    torch.manual_seed(3)  # the same dropout masks: embed in the order the module does (chunk by chunk)
    parts = {r: [c for _, c in plan_chunks(batch[r], chunk or 64, None)] for r in ("query", "positive", "negative")}
    q, p, n = (torch.cat([emb(c) for c in parts[r]]) for r in ("query", "positive", "negative"))
    assert not torch.equal(p[0], p[2])  # copies of one text, embedded differently by dropout
    keep = ~candidate_exclusions(batch["positive"]["key"], batch["negative"]["key"], 5)
    assert int((~keep).sum()) == 4  # q0: p2; q1: its own negative n1, n3; q2: p0
    ref = _reference_loss(q, torch.cat([p, n]), keep)
    want = torch.autograd.grad(ref, list(params.values()))
    # fp32 summation order differs by CPU kernel: 1.1e-6 (loss) and 2.0e-6 (grads) measured on an Intel Xeon with
    # AVX-512 (the AMD EPYC runs passed at 1e-6 and 2e-6)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    for name, g, w in zip(params, got, want, strict=True):
        assert w.abs().max() > 0, name
        err = float((g - w).abs().max() / w.abs().max())
        assert err < 1e-5, f"{name}: max |diff| = {err:.1e} x max |grad|"


def test_module_refuses_batches_without_keys(tiny_encoder: TextEncoder) -> None:
    module = stage_module(tiny_encoder, "contrastive")
    batch = PairCollator(tiny_encoder.bound, {}, tiny_encoder.pad_id, 64)([{**r, "source": "s"} for r in ROWS])
    with pytest.raises(ValueError, match="needs row keys"):
        module.training_step(batch, 0)
    unmasked = stage_module(tiny_encoder, "contrastive", **{"loss.mask_duplicates": False})
    assert torch.isfinite(unmasked.training_step(batch, 0))
