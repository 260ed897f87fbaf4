"""Prompt provenance: the exact string and token ids a template + instruction turn a text into, with a hash.

Training records one prompt per source (queries) and one for documents in each stage artifact; evaluation
records one per task and side in `summary.json`, and compares the two (`bireco.eval.prompt_check`). The hash
covers everything that decides the token sequence of a text — the joined format string (BOS, template, the
instruction and its separator), the `strip` rule, the BOS/EOS ids and the tokenizer itself — and nothing else
(not the template's name), so equal hashes mean equal inputs, hence equal embeddings from the same weights.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bireco.models.templates import BoundTemplate, Segment

TEXT = "{text}"
INSTRUCTION = "{instruction}"
PROBE_TEXT = "text"  # the body the recorded token ids are assembled around (ids at the seams depend on it)


def tokenizer_sha256(bound: BoundTemplate) -> str:
    """Content hash of the tokenizer (its full serialized form: vocabulary, merges, normalizer, added tokens)."""
    cached = getattr(bound, "_tokenizer_sha256", None)
    if cached is None:
        backend = getattr(bound.tokenizer, "backend_tokenizer", None)
        text = backend.to_str() if backend is not None else json.dumps(bound.tokenizer.get_vocab(), sort_keys=True)
        cached = hashlib.sha256(text.encode("utf-8")).hexdigest()
        bound._tokenizer_sha256 = cached  # type: ignore[attr-defined]
    return cached


def rendered(bound: BoundTemplate, text: str, instruction: str | None, separator: str | None) -> str:
    """The whole input as one string: BOS, the joined template string, EOS."""
    tok, tpl = bound.tokenizer, bound.template
    bos = tok.bos_token if tpl.add_bos else ""
    eos = tok.convert_ids_to_tokens(bound.eos_id)
    return f"{bos}{bound.joined(text, instruction, separator)[0]}{eos}"


def prompt_record(
    bound: BoundTemplate, instruction: str | None = None, separator: str | None = None
) -> dict[str, Any]:
    """What one (template, instruction, separator) does to every text.

    Returns `format` (the input with the text as `{text}`), `shape` (the same with the instruction as
    `{instruction}`: what evaluation must match), the separator actually used, the token ids of the template,
    instruction and suffix around a probe body, the tokenizer's hash and `sha256` over all of it.
    """
    instruction = instruction or None
    sep = (bound.template.instruction_separator if separator is None else separator) if instruction else None
    enc = bound.encode_batch([PROBE_TEXT], [instruction], max_length=1 << 20, separator=separator)[0]
    first = enc.segments.index(Segment.TEXT)
    last = len(enc.segments) - enc.segments[::-1].index(Segment.TEXT)
    ids = {
        "template": [
            i for i, s in zip(enc.input_ids[:first], enc.segments[:first], strict=True) if s == Segment.TEMPLATE
        ],
        "instruction": [i for i, s in zip(enc.input_ids, enc.segments, strict=True) if s == Segment.INSTRUCTION],
        "suffix": enc.input_ids[last:],
    }
    record: dict[str, Any] = {
        "template": bound.template.name,
        "instruction": instruction,
        "separator": sep,
        "strip": bound.template.strip,
        "format": rendered(bound, TEXT, instruction, separator),
        "shape": rendered(bound, TEXT, INSTRUCTION if instruction else None, separator),
        "token_ids": ids,
        "probe_text": PROBE_TEXT,
        "tokenizer_sha256": tokenizer_sha256(bound),
    }
    record["sha256"] = prompt_hash(record)
    return record


def prompt_hash(record: dict[str, Any]) -> str:
    """sha256 of what decides the tokens: format, strip, ids and tokenizer (not names, not the shape)."""
    keyed = {k: record[k] for k in ("format", "strip", "token_ids", "tokenizer_sha256")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode("utf-8")).hexdigest()


def training_prompts(bound: BoundTemplate, instructions: dict[str, str | None]) -> dict[str, Any]:
    """A stage's prompts: queries per source (each with its instruction), documents (never an instruction)."""
    return {
        "queries": {source: prompt_record(bound, instr) for source, instr in sorted(instructions.items())},
        "documents": prompt_record(bound, None),
    }
