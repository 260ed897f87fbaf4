"""How the benchmark measures: warm-up then the median of N reps, side by side, and peak memory in fresh processes.

Why side by side: these machines are shared and noisy, so two implementations timed minutes apart can differ
by ±30% for reasons that have nothing to do with them. Every comparison alternates the contenders rep by rep
(A B, B A, A B, …) and reports the ratio of their medians.

Why a fresh process per memory figure: peak RSS is a high-water mark, and allocator caches survive a config,
so a config measured after another one inherits its peak. Each config runs in a child forked from a
forkserver that has imported torch and transformers but never computed anything, so every child starts from
the same clean state without paying the imports again.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import psutil
import torch

_PRELOAD = ["torch", "transformers", "benchmarks.stage1", "benchmarks.stage2"]
_CTX: Any = None


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of `fn` takes, device work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int, reps: int, device: torch.device
) -> dict[str, list[float]]:
    """Time several contenders rep by rep, alternating their order; returns each one's times (warm-up dropped).

    Args:
        fns: name -> a callable doing one unit of work (a step, a pass over some batches).
        warmup: untimed calls of each first (allocator, autotuning, caches).
        reps: timed calls of each.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(fns[name], device))
    return times


def summarize(times: list[float]) -> dict[str, Any]:
    """Median (the figure) plus the spread, so a reader can see how noisy the run was."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "reps": len(times)}


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: device allocations on CUDA, peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _child(target: str, kwargs: dict[str, Any], conn: Any) -> None:
    try:
        module, _, name = target.partition(":")
        fn = getattr(importlib.import_module(module), name)
        start_rss = psutil.Process().memory_info().rss
        out = dict(fn(**kwargs))
        device = torch.device(out.get("device", "cpu"))
        out["peak_memory_bytes"] = peak_memory_bytes(device)
        out["memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS (ru_maxrss)"
        out["rss_at_start_bytes"] = start_rss
        conn.send(("ok", out))
    except BaseException:  # report anything, including KeyboardInterrupt, to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def isolated(target: str, **kwargs: Any) -> dict[str, Any]:
    """Run `module:function(**kwargs)` in a fresh child process and add its peak memory to the dict it returns.

    The function must return a JSON-able dict; include `"device"` when not on CPU. A failure in the child is
    raised here with the child's traceback.
    """
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(_PRELOAD)
    parent, child = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_child, args=(target, kwargs, child))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"{target} died without a result (exit code {proc.exitcode}; out of memory?)") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{target}({kwargs}) failed in its child process:\n{payload}")
    return payload


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    import lightning
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "lightning_version": lightning.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "gpu_name": gpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": list(os.getloadavg()),
    }
