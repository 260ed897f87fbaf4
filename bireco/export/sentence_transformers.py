"""Write a sentence-transformers folder that embeds exactly like bireco's `TextEncoder`, with standard ST modules.

Why no custom module: since sentence-transformers 6.0 any module class outside `sentence_transformers.*` needs
`trust_remote_code=True` (and bireco installed) to load. Instead the template is split between ST's prompts and
the exported *tokenizer*, so that ST tokenizes the same joined string bireco does:

- the template prefix (chat header) and, for queries, `instruction + separator` are ST *prompts*: ST prepends
  a prompt to the text as a string and tokenizes the whole, exactly as `BoundTemplate` tokenizes the joined
  text. Documents get the prefix alone through `default_prompt_name="document"`;
- BOS, the suffix and the pooled EOS id are a `TemplateProcessing` post-processor: added as token ids after
  truncation, which therefore cuts only the text, as `BoundTemplate` does. The suffix ids are read off a joined
  encoding (`_suffix_ids`), never tokenized alone;
- a template with `strip` (Llama-3's chat template trims the turn) strips the same whitespace with `Replace`
  normalizers.

`check_tokenization` proves the ids equal bireco's on probe texts before anything is written; a template whose
suffix would merge with the text's last characters fails there, naming the prompt and the text.

A bidirectional model's `config.json` says `is_causal: false`, which a plain `from_pretrained` honours
(`bireco.models.attention`); `check_loaded_attention` proves it on the model sentence-transformers loaded from
the folder, and refuses the export when it attends otherwise than bireco's encoder did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import transformers
from tokenizers import Regex, normalizers, processors
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bireco.errors import UserError
from bireco.models.attention import BIDIRECTIONAL, CAUSAL, attends_ahead
from bireco.models.templates import BoundTemplate, Segment

# bireco pooling name -> sentence-transformers pooling mode (same math: last real token / mean / position-weighted)
ST_POOLING = {"eos": "lasttoken", "mean": "mean", "weighted_mean": "weightedmean"}

# text inputs only: a chat template in the tokenizer must never re-wrap texts the tokenizer already wraps
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}

# the ST prompt that gives documents (no instruction) the template prefix
DOCUMENT_PROMPT = "document"

# exactness probes: plain, punctuation at the start, spaces, newlines, long (truncated) and non-ASCII text
PROBE_TEXTS = (
    "Who lives in the city by the river?",
    ": starts with a separator-like colon",
    "  leading and trailing spaces  ",
    "\nstarts with a newline",
    "ends with a space ",
    "word " * 600,
    "Café naïve — 東京 ✓",
    "",  # empty and whitespace-only: a stripping template keeps only its prefix (Llama-3: the header's "\n\n")
    " ",
    "\t\n ",
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


class ExportAttentionError(UserError, ValueError):
    """The exported folder, loaded without remote code, would not attend as bireco's encoder did."""


def mark_bidirectional(model_dir: str | Path) -> None:
    """Write `is_causal: false` into a saved model's `config.json`: the flag a plain `from_pretrained` honours."""
    config_file = Path(model_dir) / "config.json"
    config = json.loads(config_file.read_text())
    config["is_causal"] = False
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_loaded_attention(loaded: nn.Module, attention: str) -> None:
    """Refuse the export unless `loaded` (as sentence-transformers loaded it: no kwargs, no remote code) sees
    later tokens exactly when `attention` is bidirectional."""
    if attends_ahead(loaded, loaded.config.vocab_size) == (attention == BIDIRECTIONAL):
        return
    model_type = getattr(loaded.config, "model_type", "?")
    raise ExportAttentionError(
        f"model.attention={attention}: the exported folder, loaded without remote code, attends "
        f"{'causally' if attention == BIDIRECTIONAL else 'bidirectionally'}: transformers {transformers.__version__} "
        f"does not honour is_causal={attention == CAUSAL} in config.json for model type '{model_type}', so the "
        "export would not embed as bireco does"
    )


def st_prompts(bound: BoundTemplate, prompts: Mapping[str, Prompt]) -> dict[str, str]:
    """The prompt strings the exported model carries: the template prefix, then `instruction + separator`."""
    prefix = bound.template.prefix
    out = {name: prefix + p.text for name, p in prompts.items()}
    out[DOCUMENT_PROMPT] = prefix
    return out


def _suffix_ids(bound: BoundTemplate) -> list[int]:
    """The suffix's ids as they follow a text in a joined encoding (a seam-free placeholder body)."""
    enc = bound.encode_batch(["x"], max_length=1 << 20)[0]
    last_text = len(enc.segments) - enc.segments[::-1].index(Segment.TEXT)
    return enc.input_ids[last_text:-1]


def _strip_normalizer(bound: BoundTemplate) -> normalizers.Normalizer:
    """Strip the turn's content as `Template.strip` does: after the prefix's last special token, and at the end
    (only after a non-space character, so a content that is empty or all whitespace keeps the prefix's tail).

    The tokenizer normalizes each stretch between special tokens on its own, so the content's start is the
    start of its stretch plus whatever plain text of the prefix comes before it (Llama-3: `"\n\n"`).
    """
    prefix = bound.template.prefix
    specials = [t for t in bound.tokenizer.get_added_vocab() if t and t in prefix]
    tail = prefix[max((prefix.rfind(t) + len(t) for t in specials), default=0) :]
    return normalizers.Sequence(
        [
            normalizers.Replace(Regex(rf"(?<=\A{re.escape(tail)})\s+" if tail else r"\A\s+"), ""),
            # the content's end, never the prefix's own tail: a stretch that is only the tail (an empty content:
            # Llama-3's "\n\n") keeps its whitespace
            normalizers.Replace(Regex(rf"(?<!\A{re.escape(tail.rstrip())})(?<=\S)\s+\z"), ""),
        ]
    )


def template_tokenizer(tokenizer: PreTrainedTokenizerBase, bound: BoundTemplate, max_length: int):
    """A copy of `tokenizer` that adds BOS, suffix and EOS ids by itself (see the module docstring)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ExportTokenizationError("sentence-transformers export needs a fast (tokenizers) tokenizer")
    tok = copy_tokenizer(tokenizer)
    backend = tok.backend_tokenizer
    if bound.template.strip:
        old = backend.normalizer
        strip = _strip_normalizer(bound)
        backend.normalizer = strip if old is None else normalizers.Sequence([strip, old])
    head, tail = bound.bos_ids, [*_suffix_ids(bound), bound.eos_id]
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
        prefix = bound.template.prefix + (prompt.text if prompt else "")
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
    attention: str = CAUSAL,
) -> Path:
    """Save `model` (merged weights; only its decoder stack is written) as a sentence-transformers folder.

    Args:
        prompts: prompt name -> instruction and separator (`SentenceTransformer.encode(prompt_name=...)`);
            `query` is what `encode_query` uses.
        work_dir: scratch folder (the HF model the Transformer module is built from).
        attention: the encoder's mode; `bidirectional` is written as `is_causal: false` and checked on load.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    if pooling not in ST_POOLING:
        raise ValueError(f"pooling '{pooling}' has no sentence-transformers equivalent; choose {sorted(ST_POOLING)}")
    st_tok = template_tokenizer(tokenizer, bound, max_length)
    check_tokenization(st_tok, bound, prompts, max_length)
    src = Path(work_dir) / "st-source"
    model.get_decoder().save_pretrained(src)  # the LM head is never used for embeddings
    if attention == BIDIRECTIONAL:
        mark_bidirectional(src)
    st_tok.save_pretrained(src)
    transformer = Transformer(str(src), modality_config=TEXT_ONLY, module_output_name="token_embeddings")
    check_loaded_attention(transformer.model, attention)
    st = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), ST_POOLING[pooling]), Normalize()],
        prompts=st_prompts(bound, prompts),
        default_prompt_name=DOCUMENT_PROMPT,
        similarity_fn_name="cosine",
        device="cpu",
    )
    st.save(str(out_dir), create_model_card=False)
    return Path(out_dir)
