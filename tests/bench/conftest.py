"""A tiny tokenizer for the benchmark's correctness tests (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from bireco.models.tiny import train_tokenizer
from tests.bench.helpers import SPEC, sentences


@pytest.fixture(scope="session")
def bench_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    path: Path = tmp_path_factory.mktemp("bench_tok")
    return train_tokenizer(sentences(200), SPEC.vocab_size, path)
