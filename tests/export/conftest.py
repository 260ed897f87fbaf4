"""Offline, private mteb cache, and the shared exported tiny run."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MTEB_CACHE", tempfile.mkdtemp(prefix="bireco-tests-mteb-"))

import pytest

from tests.export.fixtures import ExportedRun, build_exported_run


@pytest.fixture(scope="session")
def exported_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> ExportedRun:
    return build_exported_run(bireco_cache, tmp_path_factory)
