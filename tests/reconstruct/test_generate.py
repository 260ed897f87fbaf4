"""Decoding from an embedding: the training layout, determinism, and the optimized paths against plain ones."""

from __future__ import annotations

import pytest
import torch

from bireco.losses.reconstruction import anchored_hidden_states
from bireco.models.templates import Template
from bireco.reconstruct.generate import DecodeConfig, TargetLayout, _body, generate_from_anchors, target_layout
from tests.reconstruct.helpers import INSTRUCTION


def _anchors(enc, pairs):
    with torch.no_grad():
        q = enc.tokenize([p.query for p in pairs], [p.instruction for p in pairs])
        return enc(q["input_ids"], q["attention_mask"])


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
@pytest.mark.parametrize("template", [Template(), Template(name="wrapped", prefix="w1 w2", suffix=" w3")])
def test_layout_is_what_training_encodes(trained, template: Template, instruction: str | None) -> None:
    """head + body + suffix + EOS is exactly the training sequence of that body."""
    tok = trained[0].tokenizer
    bound = template.bind(tok)
    layout = target_layout(bound, instruction)
    enc = bound.encode_batch(["w5 w6 w7"], [instruction])[0]
    body = tok("w5 w6 w7", add_special_tokens=False)["input_ids"]
    assert enc.input_ids == layout.head + body + layout.suffix + [bound.eos_id]
    assert layout.head[0] == tok.bos_token_id and (len(layout.suffix) > 0) == bool(template.suffix)
    assert bound.eos_id in layout.stop_ids


def test_body_stops_at_eos_or_suffix() -> None:
    layout = TargetLayout(head=[1], suffix=[7, 8], stop_ids={2})
    assert _body([5, 6, 2, 9], layout) == [5, 6]
    assert _body([5, 7, 8, 9], layout) == [5]
    assert _body([5, 7, 6], layout) == [5, 7, 6]  # an unfinished suffix is kept
    assert _body([2], layout) == []


def _reference_greedy(model, anchor, head, layout, n):
    """No cache, no padding: re-run the training layout (`anchored_hidden_states`) on everything so far."""
    ids = list(head)
    out = []
    for _ in range(n):
        seq = torch.tensor([[*ids, 0]])  # the last token is never an input: a placeholder to predict into
        hidden = anchored_hidden_states(model, anchor[None], seq, torch.ones_like(seq))
        nxt = int(model.get_output_embeddings()(hidden[0, -1]).argmax())
        out.append(nxt)
        ids.append(nxt)
        if nxt in layout.stop_ids:
            break
    return _body(out, layout)


def test_greedy_with_kv_cache_equals_recomputing_the_training_layout(trained) -> None:
    enc, pairs = trained
    anchors = _anchors(enc, pairs)
    layout = target_layout(enc.bound)
    cfg = DecodeConfig(max_new_tokens=20)
    got = generate_from_anchors(enc.model, anchors[:3], [layout.head] * 3, layout, cfg)
    with torch.no_grad():
        ref = [_reference_greedy(enc.model, anchors[i], layout.head, layout, 20) for i in range(3)]
    assert got == ref
    assert enc.tokenizer.decode(got[0], skip_special_tokens=True) == pairs[0].positive


def test_greedy_is_deterministic(trained) -> None:
    enc, pairs = trained
    anchors = _anchors(enc, pairs)
    layout = target_layout(enc.bound)
    cfg = DecodeConfig(max_new_tokens=20)
    first = generate_from_anchors(enc.model, anchors, [layout.head] * len(pairs), layout, cfg)
    second = generate_from_anchors(enc.model, anchors.clone(), [layout.head] * len(pairs), layout, cfg)
    assert first == second and len(set(map(tuple, first))) == len(pairs)


def test_batched_left_padded_equals_one_row_at_a_time(trained) -> None:
    """Rows whose heads differ in length (different instructions) decode as they do alone."""
    enc, pairs = trained
    anchors = _anchors(enc, pairs)
    heads = [target_layout(enc.bound, i).head for i in (None, INSTRUCTION, "w1", None, INSTRUCTION)]
    assert len({len(h) for h in heads}) == 3
    layout = target_layout(enc.bound)
    cfg = DecodeConfig(max_new_tokens=20)
    batched = generate_from_anchors(enc.model, anchors[:5], heads, layout, cfg)
    alone = [generate_from_anchors(enc.model, anchors[i : i + 1], [heads[i]], layout, cfg)[0] for i in range(5)]
    assert batched == alone


def test_matches_transformers_generate_from_inputs_embeds(trained) -> None:
    """The library's own decoding of the same input vectors gives the same greedy tokens."""
    enc, pairs = trained
    anchors = _anchors(enc, pairs)
    layout = target_layout(enc.bound)
    mine = generate_from_anchors(enc.model, anchors[:1], [layout.head], layout, DecodeConfig(max_new_tokens=12))
    x = torch.cat([anchors[:1, None], enc.model.get_input_embeddings()(torch.tensor([layout.head]))], dim=1)
    with torch.no_grad():
        hf = enc.model.generate(
            inputs_embeds=x,
            attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=sorted(layout.stop_ids),
            pad_token_id=enc.tokenizer.pad_token_id,
        )
    assert mine[0] == _body(hf[0].tolist(), layout)


def test_sampling_is_reproducible_with_its_seed(trained) -> None:
    enc, pairs = trained
    anchors = _anchors(enc, pairs)
    layout = target_layout(enc.bound)
    heads = [layout.head] * len(pairs)

    def sample(seed: int) -> list[list[int]]:
        cfg = DecodeConfig(max_new_tokens=12, do_sample=True, temperature=3.0, top_k=50, top_p=0.95, seed=seed)
        return generate_from_anchors(enc.model, anchors, heads, layout, cfg)

    a = sample(1)
    assert a == sample(1)
    assert a != sample(2)  # at temperature 3 the memorized pairs are no longer the only outcome


def test_decode_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodeConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        DecodeConfig(do_sample=True, temperature=0.0)
