"""Turn structured (instruction, text) into token ids.

Why a class instead of a format string: the pooled position must be a real EOS *token id* (never a string that
might be split or dropped by truncation), truncation must cut only the body, and Stage I needs to know which
tokens are template, instruction, text or EOS to choose its targets. So every piece is tokenized on its own and
assembled from segments — no sentinel strings inside text, no re-tokenization to recover masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from transformers import PreTrainedTokenizerBase


class Segment(IntEnum):
    """What each token of an assembled sequence is; Stage I selects its targets by segment."""

    TEMPLATE = 0
    INSTRUCTION = 1
    TEXT = 2
    EOS = 3


@dataclass
class Encoded:
    """One assembled sequence (unpadded)."""

    input_ids: list[int]
    segments: list[int]


@dataclass
class Template:
    """How a text (and an optional instruction) becomes token ids.

    The layout is `[BOS] prefix [instruction separator] text suffix EOS`. Chosen by the model config
    (`conf/template/*.yaml`); the code never inspects model names.

    Args:
        name: template name, recorded in artifacts and results.
        prefix: text before the instruction/body (may contain special tokens, e.g. a chat header).
        suffix: text after the body, before the EOS id.
        add_bos: prepend the tokenizer's BOS id.
        eos_token: the token whose last hidden state is the embedding; None = the tokenizer's eos_token.
        instruction_separator: placed between the instruction and the text (the paper: "; " in training,
            ": " at evaluation in the authors' code).
    """

    name: str = "plain"
    prefix: str = ""
    suffix: str = ""
    add_bos: bool = True
    eos_token: str | None = None
    instruction_separator: str = "; "
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The settings (recorded in artifacts, so an artifact is evaluated with the template it was trained with)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def bind(self, tokenizer: PreTrainedTokenizerBase) -> BoundTemplate:
        """Tokenize the fixed pieces once for this tokenizer."""
        return BoundTemplate(self, tokenizer)


class BoundTemplate:
    """A template whose fixed pieces are tokenized for one tokenizer; assembles batches of sequences."""

    def __init__(self, template: Template, tokenizer: PreTrainedTokenizerBase) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.bos_ids: list[int] = []
        if template.add_bos:
            if tokenizer.bos_token_id is None:
                raise ValueError(f"template '{template.name}' has add_bos=true but the tokenizer has no bos_token")
            self.bos_ids = [tokenizer.bos_token_id]
        eos = template.eos_token or tokenizer.eos_token
        if eos is None:
            raise ValueError(f"template '{template.name}': no eos_token set and the tokenizer has none")
        eos_id = tokenizer.convert_tokens_to_ids(eos)
        if eos_id is None or eos_id == tokenizer.unk_token_id:
            raise ValueError(f"template '{template.name}': eos_token {eos!r} is not a single token of this tokenizer")
        self.eos_id: int = int(eos_id)
        self.prefix_ids = self._ids(template.prefix)
        self.suffix_ids = self._ids(template.suffix)
        self.sep_ids = self._ids(template.instruction_separator)
        # tokens every sequence spends outside the body
        self.fixed_len = len(self.bos_ids) + len(self.prefix_ids) + len(self.suffix_ids) + 1

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode_batch(
        self,
        texts: list[str],
        instructions: list[str | None] | None = None,
        max_length: int = 512,
        separator: str | None = None,
    ) -> list[Encoded]:
        """Assemble sequences; only the text body is truncated so the template and the EOS id always survive.

        Args:
            texts: the bodies.
            instructions: one per text (None = no instruction), e.g. the task instruction for queries.
            max_length: total length cap, template and EOS included.
            separator: instruction separator for this call (evaluation may join with ": " where training used
                "; "); None = the template's.
        """
        if instructions is None:
            instructions = [None] * len(texts)
        if len(instructions) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(instructions)} instructions")
        if not texts:
            return []
        body_ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        uniq = {i for i in instructions if i}
        sep_ids = self.sep_ids if separator is None else self._ids(separator)
        instr_ids = {i: self._ids(i) + sep_ids for i in uniq}
        out = []
        for body, instr in zip(body_ids, instructions, strict=True):
            ins = instr_ids[instr] if instr else []
            budget = max_length - self.fixed_len - len(ins)
            if budget < 1:
                raise ValueError(
                    f"max_length={max_length} leaves no room for text after template '{self.template.name}' "
                    f"({self.fixed_len} tokens) and instruction ({len(ins)} tokens)"
                )
            body = body[:budget]
            head = self.bos_ids + self.prefix_ids
            ids = head + ins + body + self.suffix_ids + [self.eos_id]
            segs = (
                [Segment.TEMPLATE] * len(head)
                + [Segment.INSTRUCTION] * len(ins)
                + [Segment.TEXT] * len(body)
                + [Segment.TEMPLATE] * len(self.suffix_ids)
                + [Segment.EOS]
            )
            out.append(Encoded(ids, [int(s) for s in segs]))
        return out
