"""Prompt records: the exact input string and ids, and a hash that is equal exactly when the inputs are."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from bireco.models.encoder import TextEncoder
from bireco.models.prompts import PROBE_TEXT, prompt_record, training_prompts
from bireco.models.templates import Segment, Template

TEXTS = ["the cat sat on the mat", "why", "find a quick answer about the river city"]


def test_record_holds_the_joined_string_its_shape_and_the_ids(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template(instruction_separator="; ").bind(tiny_tokenizer)
    rec = prompt_record(bound, "find the city")
    assert rec["format"] == "<|bos|>find the city; {text}<|eos|>"
    assert rec["shape"] == "<|bos|>{instruction}; {text}<|eos|>"
    assert rec["separator"] == "; " and rec["instruction"] == "find the city" and rec["template"] == "plain"
    # the recorded ids are the assembled sequence around the probe body, piece by piece
    enc = bound.encode_batch([PROBE_TEXT], ["find the city"], 64)[0]
    body = [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == Segment.TEXT]
    ids = rec["token_ids"]
    assert ids["template"] + ids["instruction"] + body + ids["suffix"] == enc.input_ids
    assert ids["template"] == [tiny_tokenizer.bos_token_id] and ids["suffix"] == [bound.eos_id]
    assert tiny_tokenizer.decode(ids["instruction"]) == "find the city;"  # the separator's space joins the body
    # no instruction: no separator, and the shape has no instruction slot
    plain = prompt_record(bound, None)
    assert plain["format"] == plain["shape"] == "<|bos|>{text}<|eos|>" and plain["separator"] is None
    assert plain["token_ids"]["instruction"] == []


def test_training_prompts_record_each_source_and_the_documents(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    bound = Template().bind(tiny_tokenizer)
    got = training_prompts(bound, {"b": "find it", "a": None})
    assert list(got["queries"]) == ["a", "b"]
    assert got["queries"]["b"]["format"] == "<|bos|>find it; {text}<|eos|>"
    assert got["queries"]["a"]["sha256"] == got["documents"]["sha256"]  # no instruction = a document's input


def _embed(model, tok, template: Template, instruction: str | None, separator: str | None = None) -> torch.Tensor:
    enc = TextEncoder(model, tok, template, "eos", 64)
    return enc.encode(TEXTS, [instruction] * len(TEXTS) if instruction else None, instruction_separator=separator)


def test_equal_hashes_give_equal_embeddings(tiny_tokenizer: PreTrainedTokenizerFast, tiny_model) -> None:
    """The hash covers what decides the inputs, not how it was spelled: a template's name is not in it, and an
    instruction ending in ':' joined with ' ' is the same input as one joined with ': '."""
    colon = Template(name="a", instruction_separator=": ")
    renamed = Template(name="b", instruction_separator=": ")
    spaced = Template(name="c", instruction_separator=" ")
    semicolon = Template(name="a", instruction_separator="; ")
    rec = {
        "colon": prompt_record(colon.bind(tiny_tokenizer), "find the city"),
        "renamed": prompt_record(renamed.bind(tiny_tokenizer), "find the city"),
        "spaced": prompt_record(spaced.bind(tiny_tokenizer), "find the city:"),
        "semicolon": prompt_record(semicolon.bind(tiny_tokenizer), "find the city"),
    }
    emb = {
        "colon": _embed(tiny_model, tiny_tokenizer, colon, "find the city"),
        "renamed": _embed(tiny_model, tiny_tokenizer, renamed, "find the city"),
        "spaced": _embed(tiny_model, tiny_tokenizer, spaced, "find the city:"),
        "semicolon": _embed(tiny_model, tiny_tokenizer, semicolon, "find the city"),
    }
    for name in ("renamed", "spaced"):
        assert rec[name]["sha256"] == rec["colon"]["sha256"], name
        assert torch.equal(emb[name], emb["colon"]), name
    assert rec["spaced"]["shape"] != rec["colon"]["shape"]  # the shape keeps the convention apart
    assert rec["semicolon"]["sha256"] != rec["colon"]["sha256"]
    assert not torch.allclose(emb["semicolon"], emb["colon"])
    # an evaluation-time separator override is recorded like a template's own
    assert prompt_record(semicolon.bind(tiny_tokenizer), "find the city", ": ")["sha256"] == rec["colon"]["sha256"]


def test_the_hash_changes_with_the_tokenizer_and_the_strip_rule(tiny_tokenizer_dir) -> None:
    tok = PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer_dir)
    before = prompt_record(Template().bind(tok), "find it")["sha256"]
    assert prompt_record(Template(strip=True).bind(tok), "find it")["sha256"] != before
    tok.add_tokens(["zebra"])  # same strings, same ids here — another tokenizer all the same
    assert prompt_record(Template().bind(tok), "find it")["sha256"] != before


@pytest.mark.parametrize(
    "name, folder", [("llama3", "llama-3.2-1b-instruct"), ("mistral", "mistral-7b-instruct-v0.2")]
)
def test_records_on_real_tokenizers_reassemble_the_model_input(name: str, folder: str) -> None:
    from tests.models.test_templates_real import template, tokenizer

    tok = tokenizer(folder)
    bound = template(name).bind(tok)
    rec = prompt_record(bound, "Given a question, retrieve passages that answer it")
    enc = bound.encode_batch([PROBE_TEXT], [rec["instruction"]], 64)[0]
    body = [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == Segment.TEXT]
    ids = rec["token_ids"]
    assert ids["template"] + ids["instruction"] + body + ids["suffix"] == enc.input_ids
    # the format is the string the ids come from: the text put back in, tokenized whole, gives the same ids
    bos = tok.bos_token if bound.template.add_bos else ""
    eos = tok.convert_ids_to_tokens(bound.eos_id)
    joined = rec["format"].replace("{text}", PROBE_TEXT).removeprefix(bos).removesuffix(eos)
    assert bound.bos_ids + tok(joined, add_special_tokens=False)["input_ids"] + [bound.eos_id] == enc.input_ids
