"""Evaluation prompts against training's: a different separator, template or instructed side warns (or refuses)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from bireco.errors import UserError
from bireco.eval.mteb_wrapper import MtebEncoder
from bireco.eval.prompt_check import PromptMismatchError, check_prompts
from bireco.eval.runner import evaluation_prompts
from bireco.models.encoder import TextEncoder
from bireco.models.prompts import training_prompts
from bireco.models.templates import Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer

INSTR = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(
        [f"person {i} asks a question about city {i}" for i in range(100)], 300, tmp_path_factory.mktemp("t")
    )


@pytest.fixture(scope="module")
def model(tokenizer):
    spec = TinyLlamaSpec(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    return build_tiny_model(spec, tokenizer).eval()


def task(name: str, kind: str = "Retrieval") -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(name=name, type=kind))


def evaluated(model, tokenizer, template: Template, instructions: dict, separator: str, tasks: list) -> dict:
    wrapper = MtebEncoder(TextEncoder(model, tokenizer, template, "eos", 64), "t/x", "rev", instructions, separator)
    return {t.metadata.name: evaluation_prompts(wrapper, t) for t in tasks}


def trained(tokenizer, template: Template, instructions: dict) -> dict:
    return training_prompts(template.bind(tokenizer), instructions)


def test_the_authors_separators_warn_naming_the_task_and_both_strings(model, tokenizer, caplog) -> None:
    """Training joins "{instruction}; {query}", evaluation "{instruction}: {query}" (the paper's release)."""
    training = trained(tokenizer, Template(instruction_separator="; "), {"nq": INSTR})
    evaluation = evaluated(model, tokenizer, Template(instruction_separator="; "), {"NQ": INSTR}, ": ", [task("NQ")])
    with caplog.at_level(logging.WARNING, logger="bireco.eval.prompt_check"):
        got = check_prompts(training, evaluation)
    assert got["compared"] is True
    [m] = got["mismatches"]
    assert m["task"] == "NQ" and m["side"] == "query"
    assert (
        m["evaluation"] == f"<|bos|>{INSTR}: {{text}}<|eos|>" and m["training"] == f"<|bos|>{INSTR}; {{text}}<|eos|>"
    )
    [line] = [r.getMessage() for r in caplog.records]
    assert "NQ" in line and f"{INSTR}: {{text}}" in line and f"{INSTR}; {{text}}" in line
    with pytest.raises(PromptMismatchError, match=r"task NQ: evaluation queries are .*: \{text\}.*; \{text\}"):
        check_prompts(training, evaluation, strict=True)
    assert issubclass(PromptMismatchError, UserError)  # one line at the console, no traceback


def test_only_the_instruction_wording_may_differ(model, tokenizer, caplog) -> None:
    training = trained(tokenizer, Template(instruction_separator="; "), {"nq": INSTR, "sts": "Retrieve similar text"})
    tasks = [task("NQ"), task("SciFact"), task("STSB", "STS")]
    instructions = {"NQ": "Another instruction altogether", "SciFact": INSTR, "STSB": "Retrieve similar text"}
    evaluation = evaluated(model, tokenizer, Template(instruction_separator="; "), instructions, "; ", tasks)
    assert set(evaluation["NQ"]) == {"query", "document"} and set(evaluation["STSB"]) == {"text"}
    with caplog.at_level(logging.WARNING, logger="bireco.eval.prompt_check"):
        assert check_prompts(training, evaluation, strict=True) == {"compared": True, "mismatches": []}
    assert not caplog.records


def test_another_template_or_an_uninstructed_query_side_is_a_mismatch(model, tokenizer) -> None:
    training = trained(tokenizer, Template(instruction_separator="; "), {"nq": INSTR})
    chat = Template(name="chat", prefix="user: ", instruction_separator="; ")
    other = evaluated(model, tokenizer, chat, {"NQ": INSTR}, "; ", [task("NQ")])
    sides = {(m["side"], m["evaluation"]) for m in check_prompts(training, other)["mismatches"]}
    # the documents differ too: training's had no prefix
    assert sides == {("query", f"<|bos|>user: {INSTR}; {{text}}<|eos|>"), ("document", "<|bos|>user: {text}<|eos|>")}
    bare = evaluated(model, tokenizer, Template(instruction_separator="; "), {}, "; ", [task("NQ"), task("FiQA")])
    got = check_prompts(training, bare)["mismatches"]
    assert {(m["task"], m["side"], m["evaluation"]) for m in got} == {
        ("NQ", "query", "<|bos|>{text}<|eos|>"),
        ("FiQA", "query", "<|bos|>{text}<|eos|>"),
    }


def test_tasks_with_one_mismatch_share_a_line(model, tokenizer, caplog) -> None:
    training = trained(tokenizer, Template(instruction_separator="; "), {"nq": INSTR})
    tasks = [task("NQ"), task("FiQA"), task("SciFact")]
    evaluation = evaluated(model, tokenizer, Template(), dict.fromkeys(["NQ", "FiQA", "SciFact"], INSTR), ": ", tasks)
    with caplog.at_level(logging.WARNING, logger="bireco.eval.prompt_check"):
        assert len(check_prompts(training, evaluation)["mismatches"]) == 3
    [line] = [r.getMessage() for r in caplog.records]
    assert "tasks FiQA, NQ, SciFact:" in line and "{instruction}: {text}" in line and "{instruction}; {text}" in line


def test_nothing_recorded_is_nothing_compared(model, tokenizer, caplog) -> None:
    evaluation = evaluated(model, tokenizer, Template(), {"NQ": INSTR}, ": ", [task("NQ")])
    with caplog.at_level(logging.WARNING):
        assert check_prompts(None, evaluation, strict=True) == {"compared": False, "mismatches": []}
    assert not caplog.records
