"""Templates on the real tokenizers of the paper's model families (../shared/models).

What must hold for a real model to see the sequences it was pretrained on:
- the templated ids equal what the tokenizer gives for the joined text (no broken merges at piece seams);
- the user turn equals the family's own `apply_chat_template` for that turn (the system block aside);
- after truncation the sequence still ends in the family's EOS, and only text tokens were dropped.
"""

from __future__ import annotations

import functools

import pytest
from transformers import AutoTokenizer

from bireco.models.templates import Segment, Template
from bireco.utils.resolvers import register
from tests.helpers import CONF_DIR
from tests.shared_files import shared_model

register()

T, INS, X, E = int(Segment.TEMPLATE), int(Segment.INSTRUCTION), int(Segment.TEXT), int(Segment.EOS)

# template preset -> the tokenizers it is for (folders in ../shared/models) and the family's pooled token
FAMILIES = {
    "llama3": (["llama-3.2-1b-instruct", "llama-3.1-8b-instruct"], "<|eot_id|>"),
    "qwen2": (["qwen2.5-1.5b-instruct", "qwen2.5-1.5b-instruct-no-tokenizer-json"], "<|im_end|>"),
    "mistral": (["mistral-7b-instruct-v0.2"], "</s>"),
    "mistral_v3": (["mistral-7b-instruct-v0.3"], "</s>"),
    "plain": (["stories260k-llama"], "</s>"),
}
CASES = [(t, tok) for t, (toks, _) in FAMILIES.items() for tok in toks]
TEXTS = [
    "Who lives in the city by the river?",
    "unspaced",
    " leading space",
    "trailing space ",
    "two  spaces  inside",
    "\nstarts with a newline",
    ":starts with a colon",
    "Café naïve — 東京 ✓ 12345",
    "ends with a period.",
]
INSTRUCTIONS = [None, "Given a question, retrieve passages that answer it"]


@functools.cache
def template(name: str) -> Template:
    from omegaconf import OmegaConf

    return Template(**OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/template/{name}.yaml")))


@functools.cache
def tokenizer(folder: str):
    return AutoTokenizer.from_pretrained(shared_model(folder))


def joined_ids(tok, bound, text: str, instruction: str | None, separator: str | None = None) -> list[int]:
    s, _ = bound.joined(text, instruction, separator)
    return bound.bos_ids + tok(s, add_special_tokens=False)["input_ids"] + [bound.eos_id]


@pytest.mark.parametrize(("name", "folder"), CASES)
@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["no-instruction", "instruction"])
@pytest.mark.parametrize("separator", [None, ": "], ids=["train-sep", "eval-sep"])
def test_ids_equal_the_joined_text(name: str, folder: str, instruction: str | None, separator: str | None) -> None:
    tok = tokenizer(folder)
    bound = template(name).bind(tok)
    encs = bound.encode_batch(TEXTS, [instruction] * len(TEXTS), 512, separator)
    for text, enc in zip(TEXTS, encs, strict=True):
        assert enc.input_ids == joined_ids(tok, bound, text, instruction, separator), text
        # segments in layout order: template, [instruction], text, template, EOS — each piece one run
        runs = [s for i, s in enumerate(enc.segments) if i == 0 or s != enc.segments[i - 1]]
        assert runs in ([T, X, T, E], [T, X, E], [X, T, E], [X, E], [T, INS, X, T, E], [T, INS, X, E]), (text, runs)
        assert (INS in enc.segments) == (instruction is not None)
        assert enc.input_ids[-1] == tok.convert_tokens_to_ids(FAMILIES[name][1])
        # the text tokens decode to the text (up to the space a tokenizer folds into a word's first token)
        body = [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == X]
        assert tok.decode(body).strip() == text.strip(), text


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_the_seams_are_real_on_these_tokenizers(name: str, folder: str) -> None:
    """Why the joined text is tokenized once: piece-by-piece ids differ from it on every family."""
    tok = tokenizer(folder)
    bound = template(name).bind(tok)
    t = bound.template
    instr, text = "Retrieve", "Who lives here?"
    parts = (t.prefix, instr, t.instruction_separator, text, t.suffix)
    pieces = [i for p in parts for i in tok(p, add_special_tokens=False)["input_ids"]]
    assert [*bound.bos_ids, *pieces, bound.eos_id] != joined_ids(tok, bound, text, instr)


def test_mistral_inst_alone_ends_in_an_extra_space_piece() -> None:
    tok = tokenizer("mistral-7b-instruct-v0.2")
    assert tok("[INST] ", add_special_tokens=False)["input_ids"][-1] == 28705  # "▁" on its own
    (enc,) = template("mistral").bind(tok).encode_batch(["Hello"])
    assert 28705 not in enc.input_ids


def chat_user_turn(tok, content: str, name: str) -> list[int]:
    """The family's own chat template for one user turn, with its system block removed."""
    ids = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=True, return_dict=False, date_string="26 Jul 2024"
    )
    ids = list(ids)
    if name == "llama3":  # <|begin_of_text|> [<|start_header_id|>system ... <|eot_id|>] user turn
        eot = tok.convert_tokens_to_ids("<|eot_id|>")
        return ids[:1] + ids[ids.index(eot) + 1 :]
    if name == "qwen2":  # [<|im_start|>system ... <|im_end|>\n] <|im_start|>user ... <|im_end|>\n
        end = tok.convert_tokens_to_ids("<|im_end|>")
        ids = ids[ids.index(end) + 2 :]
        return ids[:-1]  # the "\n" after the turn's <|im_end|> is the next turn's, not this text's
    return ids  # mistral: no system block; <s>[INST] ... [/INST]


@pytest.mark.parametrize(("name", "folder"), [c for c in CASES if c[0] != "plain"])
@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["no-instruction", "instruction"])
def test_user_turn_matches_the_familys_chat_template(name: str, folder: str, instruction: str | None) -> None:
    tok = tokenizer(folder)
    bound = template(name).bind(tok)
    encs = bound.encode_batch(TEXTS, [instruction] * len(TEXTS))
    for text, enc in zip(TEXTS, encs, strict=True):
        content = f"{instruction}{bound.template.instruction_separator}{text}" if instruction else text
        chat = chat_user_turn(tok, content, name)
        if name.startswith("mistral"):  # the pooled </s> follows the turn (the chat template stops at [/INST])
            chat = [*chat, bound.eos_id]
        assert enc.input_ids == chat, text


@pytest.mark.parametrize(("name", "folder"), CASES)
@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["no-instruction", "instruction"])
def test_truncation_keeps_template_instruction_and_the_familys_eos(
    name: str, folder: str, instruction: str | None
) -> None:
    tok = tokenizer(folder)
    bound = template(name).bind(tok)
    long = "The quick brown fox jumps over the lazy dog near the river bank. " * 40
    full = bound.encode_batch([long], [instruction], 1 << 20)[0]
    for max_length in (48, 100):
        (enc,) = bound.encode_batch([long], [instruction], max_length)
        assert len(enc.input_ids) == max_length
        assert enc.input_ids[-1] == tok.convert_tokens_to_ids(FAMILIES[name][1])
        n_cut = len(full.input_ids) - max_length
        # exactly the body's last n_cut tokens are gone; everything else is the untruncated sequence
        last_text = len(full.segments) - full.segments[::-1].index(X)
        assert enc.input_ids == full.input_ids[: last_text - n_cut] + full.input_ids[last_text:]
        assert [s for s in enc.segments if s != X] == [s for s in full.segments if s != X]


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_a_special_token_string_in_a_text_is_warned_once(
    name: str, folder: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body's "<|eot_id|>" / "<|im_end|>" / "</s>" is parsed as that control token (an EOS mid-text, a Stage I
    target), as chat templates and sentence-transformers parse it: bireco says so instead of staying silent."""
    pooled = FAMILIES[name][1]
    bound = template(name).bind(tokenizer(folder))
    with caplog.at_level("WARNING", logger="bireco.models.templates"):
        bound.encode_batch(TEXTS, [INSTRUCTIONS[1]] * len(TEXTS))  # the template's own special tokens: no warning
        assert not caplog.records
        [enc] = bound.encode_batch([f"a web text with {pooled} inside"])
        bound.encode_batch([f"and again {pooled}"])
    assert enc.input_ids.count(bound.eos_id) == 2  # what the warning is about
    assert len(caplog.records) == 1 and repr(pooled) in caplog.records[0].getMessage()
