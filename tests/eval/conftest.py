"""Fixtures for the local-task tests: offline, and mteb runs with a private result cache (never ~/.cache)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# mteb builds its default ResultCache (and mkdirs it) at import time: point it away from ~/.cache
os.environ.setdefault("MTEB_CACHE", tempfile.mkdtemp(prefix="bireco-tests-mteb-"))

import mteb
import pytest
from mteb.abstasks import AbsTask
from mteb.cache import ResultCache
from mteb.models.abs_encoder import AbsEncoder
from threadpoolctl import threadpool_limits


@pytest.fixture
def run_mteb(tmp_path: Path) -> Callable[[AbsEncoder, list[AbsTask]], dict[str, float]]:
    """Evaluate the way the eval runner does (`mteb.evaluate`), always recomputing; {task name: main score}."""

    def run(model: AbsEncoder, tasks: list[AbsTask]) -> dict[str, float]:
        # torch and scikit-learn each bring a libgomp: k-means on 16 points then spins for seconds on 2 busy cores
        with threadpool_limits(limits=1, user_api="openmp"):
            result = mteb.evaluate(
                model,
                tasks,
                cache=ResultCache(cache_path=tmp_path / "mteb-cache"),
                overwrite_strategy="always",
                encode_kwargs={"batch_size": 4},
                show_progress_bar=False,
            )
        assert not result.exceptions, result.exceptions
        return {task_result.task_name: task_result.get_score() for task_result in result.task_results}

    return run
