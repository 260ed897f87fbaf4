"""Template/BoundTemplate: ids are assembled from separately tokenized segments; only the body is truncated."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from bireco.data.collate import PairCollator
from bireco.models.templates import BoundTemplate, Segment, Template

T, INS, X, E = int(Segment.TEMPLATE), int(Segment.INSTRUCTION), int(Segment.TEXT), int(Segment.EOS)


def ids(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def chat() -> Template:
    return Template(name="chat", prefix="Q:", suffix=" end", add_bos=True, instruction_separator="; ")


def test_segments_line_up_with_ids(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    text, instr = "the cat sat on the mat", "find a document"
    (enc,) = bound.encode_batch([text], [instr])
    prefix, suffix = ids(tiny_tokenizer, "Q:"), ids(tiny_tokenizer, " end")
    ins = ids(tiny_tokenizer, instr) + ids(tiny_tokenizer, "; ")
    body = ids(tiny_tokenizer, text)
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert enc.input_ids == [bos, *prefix, *ins, *body, *suffix, eos]
    assert enc.segments == ([T] * (1 + len(prefix)) + [INS] * len(ins) + [X] * len(body) + [T] * len(suffix) + [E])
    assert len(enc.segments) == len(enc.input_ids)
    assert bound.fixed_len == 1 + len(prefix) + len(suffix) + 1


def test_eos_is_the_final_token_id(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template(add_bos=False).bind(tiny_tokenizer)
    encs = bound.encode_batch(["the cat", "a dog ran under the tree", "x"])
    for enc in encs:
        assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id
        assert enc.segments[-1] == E
        assert enc.segments.count(E) == 1
        assert enc.input_ids.count(tiny_tokenizer.eos_token_id) == 1


def test_custom_eos_token_is_appended_as_its_id(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template(eos_token="<|pad|>", add_bos=False).bind(tiny_tokenizer)
    (enc,) = bound.encode_batch(["the cat"])
    assert bound.eos_id == tiny_tokenizer.pad_token_id
    assert enc.input_ids == [*ids(tiny_tokenizer, "the cat"), tiny_tokenizer.pad_token_id]
    assert enc.segments == [X] * (len(enc.input_ids) - 1) + [E]


@pytest.mark.parametrize("add_bos", [True, False])
def test_bos_only_when_add_bos(tiny_tokenizer: PreTrainedTokenizerFast, add_bos: bool) -> None:
    (enc,) = Template(add_bos=add_bos).bind(tiny_tokenizer).encode_batch(["the red bird"])
    body = ids(tiny_tokenizer, "the red bird")
    bos = tiny_tokenizer.bos_token_id
    if add_bos:
        assert enc.input_ids == [bos, *body, tiny_tokenizer.eos_token_id]
        assert enc.segments == [T] + [X] * len(body) + [E]
    else:
        assert bos not in enc.input_ids
        assert enc.input_ids == [*body, tiny_tokenizer.eos_token_id]


def test_add_bos_without_tokenizer_bos_raises(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer.backend_tokenizer, eos_token="<|eos|>")
    assert tok.bos_token_id is None
    with pytest.raises(ValueError, match="add_bos=true but the tokenizer has no bos_token"):
        Template(name="t", add_bos=True).bind(tok)


def test_instruction_is_its_own_segment_never_string_concatenated(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    # with an empty separator, string concatenation would merge the instruction's last word with the text's first
    instr, text = "find the", "re is a cat"
    concatenated = ids(tiny_tokenizer, instr + text)
    separate = ids(tiny_tokenizer, instr) + ids(tiny_tokenizer, text)
    assert concatenated != separate, "precondition: pick strings whose concatenation tokenizes differently"
    bound = Template(add_bos=False, instruction_separator="").bind(tiny_tokenizer)
    (enc,) = bound.encode_batch([text], [instr])
    assert enc.input_ids == [*separate, tiny_tokenizer.eos_token_id]
    n_ins = len(ids(tiny_tokenizer, instr))
    assert enc.segments == [INS] * n_ins + [X] * len(ids(tiny_tokenizer, text)) + [E]


def test_instruction_tokens_plus_separator_form_the_instruction_segment(
    tiny_tokenizer: PreTrainedTokenizerFast, chat: Template
) -> None:
    bound = chat.bind(tiny_tokenizer)
    texts = ["the cat", "a dog", "the bird"]
    encs = bound.encode_batch(texts, ["find a document", None, ""])
    want_ins = ids(tiny_tokenizer, "find a document") + ids(tiny_tokenizer, "; ")
    got_ins = [i for i, s in zip(encs[0].input_ids, encs[0].segments, strict=True) if s == INS]
    assert got_ins == want_ins
    for enc, text in zip(encs, texts, strict=True):
        assert [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == X] == ids(tiny_tokenizer, text)
    # None and "" both mean "no instruction": no INSTRUCTION tokens and no separator
    assert INS not in encs[1].segments
    assert INS not in encs[2].segments
    assert encs[1].input_ids == bound.encode_batch(["a dog"])[0].input_ids


def test_truncation_cuts_only_the_body(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    text = " ".join(["the quick dog ran over the river"] * 6)
    instr = "find a passage"
    body = ids(tiny_tokenizer, text)
    ins = ids(tiny_tokenizer, instr) + ids(tiny_tokenizer, "; ")
    head = [tiny_tokenizer.bos_token_id, *ids(tiny_tokenizer, "Q:")]
    tail = [*ids(tiny_tokenizer, " end"), tiny_tokenizer.eos_token_id]
    for keep in (1, 5, len(body) - 1):
        max_length = bound.fixed_len + len(ins) + keep
        (enc,) = bound.encode_batch([text], [instr], max_length=max_length)
        assert len(enc.input_ids) == max_length
        assert enc.input_ids == head + ins + body[:keep] + tail
        assert enc.segments.count(X) == keep
    # a body that fits is untouched, and the sequence is shorter than the cap
    (enc,) = bound.encode_batch([text], [instr], max_length=bound.fixed_len + len(ins) + len(body) + 10)
    assert enc.input_ids == head + ins + body + tail


def test_truncation_without_instruction_spends_the_budget_on_the_body(
    tiny_tokenizer: PreTrainedTokenizerFast, chat: Template
) -> None:
    bound = chat.bind(tiny_tokenizer)
    text = " ".join(["a small green tree"] * 10)
    (enc,) = bound.encode_batch([text], max_length=20)
    assert len(enc.input_ids) == 20
    assert enc.segments.count(X) == 20 - bound.fixed_len
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_max_length_leaving_no_room_for_text_raises(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    n_ins = len(ids(tiny_tokenizer, "find a passage")) + len(ids(tiny_tokenizer, "; "))
    with pytest.raises(ValueError, match=r"max_length=\d+ leaves no room for text after template 'chat'"):
        bound.encode_batch(["the cat"], ["find a passage"], max_length=bound.fixed_len + n_ins)
    with pytest.raises(ValueError, match="leaves no room"):
        bound.encode_batch(["the cat"], max_length=bound.fixed_len)
    # one token of room is enough
    (enc,) = bound.encode_batch(["the cat"], ["find a passage"], max_length=bound.fixed_len + n_ins + 1)
    assert enc.segments.count(X) == 1


@pytest.mark.parametrize("eos_token", ["the cat", "zzqqxx", " the"])
def test_eos_token_must_be_a_single_token(tiny_tokenizer: PreTrainedTokenizerFast, eos_token: str) -> None:
    with pytest.raises(ValueError, match="is not a single token of this tokenizer"):
        BoundTemplate(Template(name="bad", eos_token=eos_token), tiny_tokenizer)


def test_instructions_length_mismatch_raises(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template().bind(tiny_tokenizer)
    with pytest.raises(ValueError, match="2 texts but 1 instructions"):
        bound.encode_batch(["the cat", "a dog"], ["find"])
    with pytest.raises(ValueError, match="1 texts but 2 instructions"):
        bound.encode_batch(["the cat"], ["find", None])


def test_no_texts_give_no_sequences(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template().bind(tiny_tokenizer)
    try:
        out = bound.encode_batch([])
    except IndexError as e:
        pytest.fail(
            "BoundTemplate.encode_batch([]) crashes in the tokenizer (bireco/models/templates.py:106, "
            f"`self.tokenizer(list(texts), ...)` on an empty list); return [] early for no texts: {e!r}"
        )
    assert out == []


def test_collator_truncates_the_body_only_and_keeps_template_instruction_and_eos(
    tiny_tokenizer: PreTrainedTokenizerFast, chat: Template
) -> None:
    """Through PairCollator (what training sees): long texts lose body tokens, never template, instruction or EOS."""
    bound = chat.bind(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    instr = "find a passage"
    long_q, short_q = " ".join(["the quick dog ran over the river"] * 4), "a cat"
    long_p, short_p = " ".join(["a small green tree"] * 10), "the red bird"
    head = [tiny_tokenizer.bos_token_id, *ids(tiny_tokenizer, "Q:")]
    tail = [*ids(tiny_tokenizer, " end"), tiny_tokenizer.eos_token_id]
    ins = ids(tiny_tokenizer, instr) + ids(tiny_tokenizer, "; ")
    max_length = len(head) + len(ins) + 4 + len(tail)  # room for 4 body tokens of an instructed query
    assert len(ids(tiny_tokenizer, long_q)) > 4 and len(ids(tiny_tokenizer, short_q)) <= 4  # precondition
    collator = PairCollator(bound, {"src": instr}, pad, max_length=max_length, with_negatives=False)
    batch = collator(
        [
            {"query": long_q, "positive": long_p, "negative": None, "source": "src"},
            {"query": short_q, "positive": short_p, "negative": None, "source": "src"},
        ]
    )
    q_long = head + ins + ids(tiny_tokenizer, long_q)[:4] + tail
    q_short = head + ins + ids(tiny_tokenizer, short_q) + tail
    assert batch["query"]["input_ids"].tolist() == [q_long, q_short + [pad] * (len(q_long) - len(q_short))]
    assert batch["query"]["segments"][0].tolist() == [T] * len(head) + [INS] * len(ins) + [X] * 4 + [T] * (
        len(tail) - 1
    ) + [E]
    # documents get no instruction, so their body keeps the instruction's budget too
    p_long = head + ids(tiny_tokenizer, long_p)[: max_length - len(head) - len(tail)] + tail
    p_short = head + ids(tiny_tokenizer, short_p) + tail
    assert len(p_long) == max_length
    assert batch["positive"]["input_ids"].tolist() == [p_long, p_short + [pad] * (max_length - len(p_short))]
    assert batch["positive"]["attention_mask"].sum(1).tolist() == [max_length, len(p_short)]
