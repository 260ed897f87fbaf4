"""The encoding benchmark reads BEIR corpora strictly, and sorted batches give the same embeddings as unsorted."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks.encode import padding_ratios, read_corpus
from bireco.models.encoder import TextEncoder, encode_batches
from bireco.models.flops import Pass, forward_flops
from bireco.models.templates import Template
from bireco.models.tiny import build_tiny_model
from tests.bench.helpers import SPEC, sentences


def test_read_corpus_joins_title_and_text(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as f:
        f.write('{"_id": "1", "title": "T", "text": "body one"}\n{"_id": "2", "title": "", "text": "two"}\n')
    assert read_corpus(tmp_path) == ["T body one", "two"]


def test_read_corpus_names_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "body": "x"}\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:2: bad corpus row \(KeyError: 'text'\); need 'text'"):
        read_corpus(tmp_path)


def test_sorted_and_unsorted_encoding_agree(bench_tokenizer) -> None:
    model = build_tiny_model(SPEC, bench_tokenizer).eval()
    encoder = TextEncoder(model, bench_tokenizer, Template(name="plain"), "eos", max_length=32)
    texts = sentences(20, 1, 40, seed=9)
    a = encoder.encode(texts, batch_size=4, sort_by_length=True)
    b = encoder.encode(texts, batch_size=4, sort_by_length=False)
    one = encoder.encode(texts[7:8], batch_size=1)
    assert a.shape == (20, SPEC.hidden_size)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(a[7:8], one, rtol=0, atol=1e-5)  # input order kept, padding has no effect


def test_encode_batches_sort_longest_first_or_keep_order() -> None:
    assert encode_batches([4, 1, 3, 2, 5], 2) == [[4, 0], [2, 3], [1]]
    assert encode_batches([4, 1, 3, 2, 5], 2, sort_by_length=False) == [[0, 1], [2, 3], [4]]


def test_padding_ratios_exact_on_hand_counted_batches() -> None:
    cfg = SimpleNamespace(
        hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
    )
    # matmuls per token: q 4*4 + k,v 2*4*2 + o 4*4 + mlp 3*4*8 = 144; attention 2 * 4 per key; x2 FLOPs per MAC
    assert forward_flops(cfg, Pass(1, 3)) == 3 * 2 * (144 + 8 * 3)
    b = padding_ratios([4, 1, 3, 2], 2, cfg)
    # unsorted: [4,1] -> 2x4, [3,2] -> 2x3 = 14 tokens; sorted: [4,3] -> 2x4, [2,1] -> 2x2 = 12 tokens
    assert b["tokens"] == 14 / 12
    f = {n: 2 * (144 + 8 * n) for n in (2, 3, 4)}
    assert b["flops"] == (8 * f[4] + 6 * f[3]) / (8 * f[4] + 4 * f[2])
    assert b["real_tokens"] == 10
