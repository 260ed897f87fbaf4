"""Template/BoundTemplate: the joined text is tokenized once, segments come from offsets, only the body is cut."""

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


def test_ids_are_the_joined_text_tokenized_once(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    text, instr = "the cat sat on the mat", "find a document"
    (enc,) = bound.encode_batch([text], [instr])
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert enc.input_ids == [bos, *ids(tiny_tokenizer, f"Q:{instr}; {text} end"), eos]
    assert len(enc.segments) == len(enc.input_ids)
    # each token's segment is the piece its last character is in
    toks = tiny_tokenizer(f"Q:{instr}; {text} end", add_special_tokens=False, return_offsets_mapping=True)
    ends = [e for _, e in toks["offset_mapping"]]
    p, i, x = len("Q:"), len(f"Q:{instr}; "), len(f"Q:{instr}; {text}")
    want = [T if e <= p else INS if e <= i else X if e <= x else T for e in ends]
    assert enc.segments == [T, *want, E]


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


def test_the_separator_merges_with_the_text_as_in_the_joined_string(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    """Tokenizing pieces apart would leave a bare-space token after the separator; the joined text does not."""
    instr, text = "find the", "cat"
    separate = ids(tiny_tokenizer, instr) + ids(tiny_tokenizer, "; ") + ids(tiny_tokenizer, text)
    joined = ids(tiny_tokenizer, f"{instr}; {text}")
    assert separate != joined, "precondition: the seam merges differently"
    bound = Template(add_bos=False).bind(tiny_tokenizer)
    (enc,) = bound.encode_batch([text], [instr])
    assert enc.input_ids == [*joined, tiny_tokenizer.eos_token_id]
    assert enc.segments[-2] == X and tiny_tokenizer.decode(enc.input_ids[-2:-1]) == " cat"  # the space goes with it


def test_instruction_tokens_plus_separator_form_the_instruction_segment(
    tiny_tokenizer: PreTrainedTokenizerFast, chat: Template
) -> None:
    bound = chat.bind(tiny_tokenizer)
    texts = ["the cat", "a dog", "the bird"]
    encs = bound.encode_batch(texts, ["find a document", None, ""])
    got_ins = [i for i, s in zip(encs[0].input_ids, encs[0].segments, strict=True) if s == INS]
    assert tiny_tokenizer.decode(got_ins) == "find a document;"  # the space before "the" belongs to " the"
    for enc, text in zip(encs, texts, strict=True):
        body = [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == X]
        assert tiny_tokenizer.decode(body).strip() == text
    # None and "" both mean "no instruction": no INSTRUCTION tokens and no separator
    assert INS not in encs[1].segments
    assert INS not in encs[2].segments
    assert encs[1].input_ids == bound.encode_batch(["a dog"])[0].input_ids


def test_truncation_cuts_only_the_body(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    text = " ".join(["the quick dog ran over the river"] * 6)
    instr = "find a passage"
    (full,) = bound.encode_batch([text], [instr], max_length=1 << 20)
    first = full.segments.index(X)
    last = len(full.segments) - full.segments[::-1].index(X)
    n_body = last - first
    for keep in (1, 5, n_body - 1):
        max_length = len(full.input_ids) - n_body + keep
        (enc,) = bound.encode_batch([text], [instr], max_length=max_length)
        assert len(enc.input_ids) == max_length
        assert enc.input_ids == full.input_ids[: first + keep] + full.input_ids[last:]
        assert enc.segments.count(X) == keep
    # a body that fits is untouched, and the sequence is shorter than the cap
    (enc,) = bound.encode_batch([text], [instr], max_length=len(full.input_ids) + 10)
    assert enc.input_ids == full.input_ids


def test_truncation_without_instruction_spends_the_budget_on_the_body(
    tiny_tokenizer: PreTrainedTokenizerFast, chat: Template
) -> None:
    bound = chat.bind(tiny_tokenizer)
    text = " ".join(["a small green tree"] * 10)
    (enc,) = bound.encode_batch([text], max_length=20)
    assert len(enc.input_ids) == 20
    assert enc.segments.count(X) == 20 - sum(s != X for s in enc.segments)
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_max_length_leaving_no_room_for_text_raises(tiny_tokenizer: PreTrainedTokenizerFast, chat: Template) -> None:
    bound = chat.bind(tiny_tokenizer)
    (enc,) = bound.encode_batch(["the cat"], ["find a passage"])
    fixed = sum(s != X for s in enc.segments)
    with pytest.raises(ValueError, match=r"max_length=\d+ leaves no room for text after template 'chat'"):
        bound.encode_batch(["the cat"], ["find a passage"], max_length=fixed)
    with pytest.raises(ValueError, match="leaves no room"):
        bound.encode_batch(["the cat"], max_length=2)
    # one token of room is enough
    (enc,) = bound.encode_batch(["the cat"], ["find a passage"], max_length=fixed + 1)
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
    q_full = bound.encode_batch([long_q], [instr], 1 << 20)[0]
    fixed = sum(s != X for s in q_full.segments)
    max_length = fixed + 4  # room for 4 body tokens of an instructed query
    collator = PairCollator(bound, {"src": instr}, pad, max_length=max_length, with_negatives=False)
    batch = collator(
        [
            {"query": long_q, "positive": long_p, "negative": None, "source": "src"},
            {"query": short_q, "positive": short_p, "negative": None, "source": "src"},
        ]
    )
    want = [e.input_ids for e in bound.encode_batch([long_q, short_q], [instr, instr], max_length)]
    assert len(want[0]) == max_length and len(want[1]) < max_length  # precondition: one cut, one not
    assert batch["query"]["input_ids"].tolist() == [want[0], want[1] + [pad] * (max_length - len(want[1]))]
    segs = batch["query"]["segments"][0].tolist()
    assert segs.count(X) == 4 and segs[-1] == E
    assert [s for s in segs if s != X] == [s for s in q_full.segments if s != X]
    # documents get no instruction, so their body keeps the instruction's budget too
    p_long = bound.encode_batch([long_p], None, max_length)[0]
    assert p_long.segments.count(X) == max_length - sum(s != X for s in p_long.segments)
    assert batch["positive"]["input_ids"][0].tolist() == p_long.input_ids
    assert batch["positive"]["attention_mask"].sum(1).tolist()[0] == max_length
