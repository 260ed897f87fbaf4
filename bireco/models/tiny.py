"""The embedded default's "base LLM": a small Llama built from config with a locally trained BPE tokenizer.

Nothing is downloaded. The tokenizer learns from the text the run will train on (so a tiny run on real data is
a fair miniature of the paper's setting); the causal-LM warm-up that makes it a language model is a pipeline
stage (`warmup`) run once per (corpus, config) and cached, so every pipeline of a sweep starts from the same
warmed-up weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


@dataclass
class TinyLlamaSpec:
    """Shape of the tiny Llama (a few million parameters)."""

    vocab_size: int = 4096
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True
    seed: int = 42


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts` (seconds on a few MB), saved in HF format to `out_dir`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    hf.save_pretrained(out_dir)
    return hf


def build_tiny_model(
    spec: TinyLlamaSpec, tokenizer: PreTrainedTokenizerFast, vocab_size: int | None = None
) -> LlamaForCausalLM:
    """A randomly initialized Llama with fixed seed (same spec → same weights).

    Args:
        vocab_size: embedding rows; None = the tokenizer's size. A larger one (e.g. Llama-3's 128,256) gives a
            tiny model a realistic LM-head cost, as the benchmark's memory test needs.
    """
    if vocab_size is not None and vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        return LlamaForCausalLM(config)
