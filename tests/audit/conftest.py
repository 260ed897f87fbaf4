"""Offline, a private mteb cache, and small folders with planted overlaps (tests/audit/fixtures.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MTEB_CACHE", tempfile.mkdtemp(prefix="bireco-tests-mteb-"))

import pytest

from tests.audit.fixtures import Planted, plant


@pytest.fixture
def planted(tmp_path: Path) -> Planted:
    """A training folder and a task root with planted overlaps (see `plant`)."""
    return plant(tmp_path)
