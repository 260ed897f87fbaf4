"""Where the real model files of `../shared/models` are, and a skip (with its reason) when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("BIRECO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"


def shared_model(name: str) -> Path:
    """`../shared/models/<name>`, or skip the test saying what is missing (CI has ../shared)."""
    path = MODELS / name
    if not path.is_dir():
        pytest.skip(f"{path} not present: the real tokenizers / pretrained Llama live in ../shared/models")
    return path
