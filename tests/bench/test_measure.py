"""Timing alternates contenders; peak memory comes from a fresh process per config and errors surface."""

from __future__ import annotations

import pytest
import torch

from benchmarks.measure import interleaved, isolated, machine_info, summarize

MiB = 2**20


def test_interleaved_alternates_order_and_drops_warmup() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved(fns, warmup=1, reps=4, device=torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert all(t >= 0 for v in times.values() for t in v)


def test_summarize_is_the_median_with_spread() -> None:
    assert summarize([3.0, 1.0, 2.0, 10.0]) == {"median_s": 2.5, "min_s": 1.0, "max_s": 10.0, "reps": 4}


def test_isolated_peak_memory_is_per_process() -> None:
    big = isolated("tests.bench.helpers:allocate", mb=400)
    small = isolated("tests.bench.helpers:allocate", mb=10)
    assert big["sum"] == small["sum"] == 10.0
    assert big["memory_kind"] == "peak RSS (ru_maxrss)"
    assert big["peak_memory_bytes"] - big["rss_at_start_bytes"] >= 390 * MiB
    # the second child does not inherit the first one's high-water mark
    assert small["peak_memory_bytes"] - small["rss_at_start_bytes"] < 100 * MiB
    assert big["peak_memory_bytes"] - small["peak_memory_bytes"] > 300 * MiB


def test_isolated_raises_with_the_childs_traceback() -> None:
    with pytest.raises(
        RuntimeError, match=r"(?s)tests.bench.helpers:fail\(\{\}\) failed.*ValueError: boom in the child"
    ):
        isolated("tests.bench.helpers:fail")


def test_machine_info_names_the_machine() -> None:
    info = machine_info()
    assert info["cpu_cores"] >= 1 and info["torch_version"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["gpu_name"] is None or isinstance(info["gpu_name"], str)
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
