"""The encoding benchmark reads BEIR corpora strictly, and sorted batches give the same embeddings as unsorted."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from bireco.bench.encode import read_corpus
from bireco.models.encoder import TextEncoder
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
