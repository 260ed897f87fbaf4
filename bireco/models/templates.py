"""Turn structured (instruction, text) into token ids.

The joined string `prefix [instruction separator] text suffix` is tokenized *once*, and each token's segment
(template, instruction, text) comes from the tokenizer's character offsets. Tokenizing the pieces one by one
would break merges at the seams — Mistral's `"[INST] "` alone ends in an extra `▁`, a separator `"; "` alone
leaves a bare-space token before an unspaced first word — so a real model would see sequences it never saw in
pretraining (`tests/models/test_templates_real.py` proves equality with the joined text on the real tokenizers).

The pooled position is a real EOS *token id* appended after the suffix (never a string that truncation could
cut), and truncation drops only body tokens, so template, instruction and EOS always survive.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


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


def pad_encoded(enc: Sequence[Encoded], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Stack sequences into `input_ids`, `attention_mask` and `segments` (-1 on padding).  -> (B, T) each"""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    t = max(len(e.input_ids) for e in enc)
    ids = torch.full((len(enc), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(enc), t), dtype=torch.long)
    segs = torch.full((len(enc), t), -1, dtype=torch.long)
    for i, e in enumerate(enc):
        n = len(e.input_ids)
        sl = slice(0, n) if side == "right" else slice(t - n, t)
        ids[i, sl] = torch.tensor(e.input_ids)
        mask[i, sl] = 1
        segs[i, sl] = torch.tensor(e.segments)
    return {"input_ids": ids, "attention_mask": mask, "segments": segs}


@dataclass
class Template:
    """How a text (and an optional instruction) becomes token ids.

    The layout is `[BOS] prefix [instruction separator] text suffix EOS`. Chosen by the model config
    (`bireco/conf/template/*.yaml`); the code never inspects model names.

    Args:
        name: template name, recorded in artifacts and results.
        prefix: text before the instruction/body (may contain special tokens, e.g. a chat header).
        suffix: text after the body, before the EOS id.
        add_bos: prepend the tokenizer's BOS id.
        eos_token: the token whose last hidden state is the embedding; None = the tokenizer's eos_token.
        instruction_separator: placed between the instruction and the text (the paper: "; " in training,
            ": " at evaluation in the authors' code).
        strip: strip whitespace around the turn's content (instruction + separator + text), as a family's chat
            template does when it applies Jinja's `trim` (Llama-3's).
    """

    name: str = "plain"
    prefix: str = ""
    suffix: str = ""
    add_bos: bool = True
    eos_token: str | None = None
    instruction_separator: str = "; "
    strip: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The settings (recorded in artifacts, so an artifact is evaluated with the template it was trained with)."""
        return dict(self.__dict__)

    def bind(self, tokenizer: PreTrainedTokenizerBase) -> BoundTemplate:
        """Check the template against one tokenizer (BOS, EOS id, character offsets)."""
        return BoundTemplate(self, tokenizer)


class BoundTemplate:
    """A template checked against one tokenizer; assembles batches of sequences."""

    def __init__(self, template: Template, tokenizer: PreTrainedTokenizerBase) -> None:
        self.template = template
        self.tokenizer = tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"template '{template.name}' needs a fast (tokenizers) tokenizer: segments come from character "
                f"offsets, which {type(tokenizer).__name__} does not give"
            )
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
        # ids of the tokenizer's special tokens (BOS, EOS, chat markers): the tokenizer parses their strings
        # anywhere in the joined string, so a body holding "<|eot_id|>" or "</s>" gets that control token
        decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self.special_ids = frozenset(int(i) for i, tok in decoder.items() if getattr(tok, "special", False))
        self._warned_special = False
        own = tokenizer(self.joined("x")[0], add_special_tokens=False)["input_ids"]
        self._own_specials = sum(map(self.special_ids.__contains__, own))  # the prefix's and suffix's own

    def joined(self, text: str, instruction: str | None = None, separator: str | None = None) -> tuple[str, list[int]]:
        """The string that is tokenized, and where its pieces end: [prefix, instruction + separator, text]."""
        t = self.template
        head = f"{instruction}{t.instruction_separator if separator is None else separator}" if instruction else ""
        content, lead = head + text, 0
        if t.strip:
            lead = len(content) - len(content.lstrip())
            content = content.strip()
        head_end = max(len(head) - lead, 0)
        text_end = max(min(len(head) + len(text) - lead, len(content)), head_end)
        p = len(t.prefix)
        return f"{t.prefix}{content}{t.suffix}", [p, p + head_end, p + text_end]

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
            instructions: one per text (None or "" = no instruction), e.g. the task instruction for queries.
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
        joined = [self.joined(t, i, separator) for t, i in zip(texts, instructions, strict=True)]
        enc = self.tokenizer(
            [s for s, _ in joined], add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
        )
        out = []
        for ids, offsets, (_, ends) in zip(enc["input_ids"], enc["offset_mapping"], joined, strict=True):
            segs = [_segment_of(start, end, ends) for start, end in offsets]
            if not self._warned_special and sum(map(self.special_ids.__contains__, ids)) > self._own_specials:
                self._warn_special_in_body(ids, segs)  # more special ids than the template's own: find them
            out.append(self._assemble(list(ids), segs, max_length))
        return out

    def _warn_special_in_body(self, ids: list[int], segs: list[int]) -> None:
        """Warn (once per template and tokenizer) when a text or instruction holds a special-token string.

        It is tokenized as that control token, as Hugging Face chat templates and sentence-transformers do too,
        so the export and evaluation agree with training; but a web text's `</s>` then ends a turn mid-text and
        Stage I trains on it as a target. Cleaning such strings is the data's business, not the template's."""
        body = (int(Segment.INSTRUCTION), int(Segment.TEXT))
        found = [i for i, seg in zip(ids, segs, strict=True) if seg in body and i in self.special_ids]
        if found:
            self._warned_special = True
            from bireco.distributed import is_global_zero

            if not is_global_zero():  # every rank and loader worker meets the row: rank 0 says it
                return
            log.warning(
                "a text holds the special-token string %r of the tokenizer: it is tokenized as that control token "
                "(as Hugging Face chat templates and sentence-transformers do); clean such strings from the data if "
                "they are not meant as control tokens (warned once)",
                self.tokenizer.convert_ids_to_tokens(found[0]),
            )

    def _assemble(self, ids: list[int], segs: list[int], max_length: int) -> Encoded:
        """BOS + ids + EOS, with the body cut (from its end) to fit `max_length`."""
        n_text = segs.count(Segment.TEXT)
        room = max_length - (len(self.bos_ids) + len(ids) - n_text + 1)
        if room < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for text after template '{self.template.name}' and "
                f"instruction ({max_length - room} tokens)"
            )
        if n_text > room:  # the body is contiguous (offsets only grow), so dropping its tail is one splice
            last = len(segs) - segs[::-1].index(Segment.TEXT)  # one past the body's last token
            cut = slice(last - (n_text - room), last)
            del ids[cut], segs[cut]
        head = [int(Segment.TEMPLATE)] * len(self.bos_ids)
        return Encoded(self.bos_ids + ids + [self.eos_id], head + segs + [int(Segment.EOS)])


def _segment_of(start: int, end: int, ends: list[int]) -> int:
    """A token belongs to the piece its last character is in (`" Who"` after `";"` is text, not separator)."""
    last = max(end - 1, start)
    piece = bisect_right(ends, last)  # 0 prefix, 1 instruction + separator, 2 text, 3 suffix
    return int((Segment.TEMPLATE, Segment.INSTRUCTION, Segment.TEXT, Segment.TEMPLATE)[piece])


def segment_counts(part: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real tokens per segment of one padded role.  -> (len(Segment),) int64"""
    segs = part["segments"][part["attention_mask"].bool()]
    return torch.bincount(segs, minlength=len(Segment))
