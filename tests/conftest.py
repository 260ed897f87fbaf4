"""Suite-wide settings: offline, 2 threads, and a private cache so tests never touch the user's cache."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the Arrow cache of `datasets` goes to a per-session temp folder, never the user's ~/.cache
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="bireco-tests-datasets-")

import pytest
import torch

# `make test` runs two pytest-xdist workers on the 2-core machines: one thread each (and for the processes the tests
# start), since two workers with 2 threads each would contend for the cores; alone, 2 threads
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def bireco_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One cache dir for the session: the tiny base model is built once and shared across tests."""
    path = tmp_path_factory.mktemp("bireco_cache")
    os.environ["BIRECO_CACHE"] = str(path)
    return str(path)


@pytest.fixture
def hydra_logging_restored():
    """For a test that runs a console script in-process with Hydra's own logging (its job log is what the test
    checks): the handlers Hydra adds write to this test's captured stderr, so later tests' logs would hit a closed
    stream; put the logging configuration back as it was."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
