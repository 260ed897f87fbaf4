"""Write a sentence-transformers folder that embeds exactly like bireco's `TextEncoder`, with standard ST modules.

Why no custom module: since sentence-transformers 6.0 any module class outside `sentence_transformers.*` needs
`trust_remote_code=True` (and bireco installed) to load. Instead the template lives in the exported *tokenizer*:

- the fixed pieces (BOS, chat prefix, suffix, pooled EOS id) are a `TemplateProcessing` post-processor, so they
  are added as token ids after truncation, which cuts only the text, as `BoundTemplate` does;
- bireco tokenizes instruction, separator and text each on its own. sentence-transformers prepends a prompt
  string to the text and tokenizes the whole, which merges tokens across the boundaries (`"; " + "Who"` gives
  `["; ", "Ġ", "Who"]` in bireco but `[";", "ĠWho"]` as one string). A `Split` pre-tokenizer that isolates
  exactly the exported `instruction` + `separator` pairs at the start of a text restores bireco's pieces.

The result is a Transformer (the decoder stack) -> Pooling (last token) -> Normalize pipeline that loads with a
plain `SentenceTransformer(DIR)`; `check_tokenization` proves the ids equal bireco's before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bireco.models.templates import BoundTemplate

# bireco pooling name -> sentence-transformers pooling mode (same math: last real token / mean / position-weighted)
ST_POOLING = {"eos": "lasttoken", "mean": "mean", "weighted_mean": "weightedmean"}

# text inputs only: a chat template in the tokenizer must never re-wrap texts the tokenizer already wraps
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}

# exactness probes: plain, punctuation at the start, spaces, long (truncated) and non-ASCII text
PROBE_TEXTS = (
    "Who lives in the city by the river?",
    ": starts with a separator-like colon",
    "  leading and trailing spaces  ",
    "word " * 600,
    "Café naïve — 東京 ✓",
)


@dataclass(frozen=True)
class Prompt:
    """A named query instruction as sentence-transformers sees it: `instruction + separator` before the text."""

    instruction: str
    separator: str

    @property
    def text(self) -> str:
        return self.instruction + self.separator


class ExportTokenizationError(ValueError):
    """The exported tokenizer would not reproduce bireco's token ids."""


def split_pattern(prompts: Sequence[Prompt]) -> str | None:
    """Regex isolating `instruction` and `separator` of each prompt at the very start of a text.

    Each pair contributes `\\A<instr>(?=<sep>)` (the instruction, only when the separator follows) and
    `(?<=\\A<instr>)<sep>` (the separator right after it); lookbehinds are fixed-width per alternative, as
    Oniguruma (the tokenizers regex engine) requires.
    """
    pairs = sorted({(p.instruction, p.separator) for p in prompts if p.instruction}, key=lambda x: (-len(x[0]), x))
    if not pairs:
        return None
    alts = []
    for instr, sep in pairs:
        i, s = re.escape(instr), re.escape(sep)
        alts.append(rf"\A{i}(?={s})" if sep else rf"\A{i}")
        if sep:
            alts.append(rf"(?<=\A{i}){s}")
    return "|".join(alts)


def template_tokenizer(
    tokenizer: PreTrainedTokenizerBase, bound: BoundTemplate, prompts: Sequence[Prompt], max_length: int
) -> PreTrainedTokenizerBase:
    """A copy of `tokenizer` that applies the template by itself (see the module docstring)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ExportTokenizationError("sentence-transformers export needs a fast (tokenizers) tokenizer")
    tok = copy_tokenizer(tokenizer)
    backend = tok.backend_tokenizer
    pattern = split_pattern(prompts)
    if pattern is not None:
        split = pre_tokenizers.Split(Regex(pattern), "isolated")
        old = backend.pre_tokenizer
        backend.pre_tokenizer = split if old is None else pre_tokenizers.Sequence([split, old])
    head, tail = bound.bos_ids + bound.prefix_ids, [*bound.suffix_ids, bound.eos_id]
    single, special = [], []
    for name, ids in (("<bireco_head>", head), ("$A", None), ("<bireco_tail>", tail)):
        if ids is None:
            single.append(name)
        elif ids:
            single.append(name)
            special.append({"id": name, "ids": ids, "tokens": tok.convert_ids_to_tokens(ids)})
    backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=special)
    tok.model_max_length = max_length
    tok.padding_side = "right"  # positions start at 0 for every text, as in bireco's encoder
    tok.truncation_side = "right"
    tok.chat_template = None
    return tok


def copy_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """An independent copy (editing the backend must not change the caller's tokenizer)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bireco-tok-") as d:
        tokenizer.save_pretrained(d)
        return AutoTokenizer.from_pretrained(d)


def check_tokenization(
    st_tokenizer: PreTrainedTokenizerBase,
    bound: BoundTemplate,
    prompts: Mapping[str, Prompt],
    max_length: int,
    texts: Sequence[str] = PROBE_TEXTS,
) -> int:
    """Assert the exported tokenizer gives bireco's ids for every text, bare and under every prompt.

    Returns:
        the number of (text, prompt) combinations compared.
    """
    n = 0
    for name, prompt in [("<document>", None), *prompts.items()]:
        ours = bound.encode_batch(
            list(texts),
            [prompt.instruction if prompt else None] * len(texts),
            max_length,
            separator=prompt.separator if prompt else None,
        )
        prefix = prompt.text if prompt else ""
        theirs = st_tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)["input_ids"]
        for text, a, b in zip(texts, ours, theirs, strict=True):
            n += 1
            if a.input_ids != list(b):
                raise ExportTokenizationError(
                    f"prompt {name!r}, text {text[:40]!r}: the exported tokenizer gives ids {list(b)[:24]}... but "
                    f"bireco gives {a.input_ids[:24]}...; this tokenizer cannot carry the template exactly"
                )
    return n


def write_sentence_transformers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    bound: BoundTemplate,
    pooling: str,
    max_length: int,
    prompts: Mapping[str, Prompt],
    out_dir: str | Path,
    work_dir: str | Path,
) -> Path:
    """Save `model` (merged weights; only its decoder stack is written) as a sentence-transformers folder.

    Args:
        prompts: prompt name -> instruction and separator (`SentenceTransformer.encode(prompt_name=...)`);
            `query` is what `encode_query` uses.
        work_dir: scratch folder (the HF model the Transformer module is built from).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    if pooling not in ST_POOLING:
        raise ValueError(f"pooling '{pooling}' has no sentence-transformers equivalent; choose {sorted(ST_POOLING)}")
    st_tok = template_tokenizer(tokenizer, bound, list(prompts.values()), max_length)
    check_tokenization(st_tok, bound, prompts, max_length)
    src = Path(work_dir) / "st-source"
    model.get_decoder().save_pretrained(src)  # the LM head is never used for embeddings
    st_tok.save_pretrained(src)
    transformer = Transformer(str(src), modality_config=TEXT_ONLY, module_output_name="token_embeddings")
    st = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), ST_POOLING[pooling]), Normalize()],
        prompts={name: p.text for name, p in prompts.items()},
        similarity_fn_name="cosine",
        device="cpu",
    )
    st.save(str(out_dir), create_model_card=False)
    return Path(out_dir)
