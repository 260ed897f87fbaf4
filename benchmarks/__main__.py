"""`python -m benchmarks [--quick]`: run every benchmark, write bench/results.json, bench/RESULTS.md and plots.

Sections run one after another (never two at once: they would time each other); each writes its keys into
one results dict, written atomically at the end with the Markdown summary and the plots.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import encode, padding, scaling, stage1, stage2, token_budget
from benchmarks.measure import machine_info
from benchmarks.report import render_markdown, save_plots
from bireco.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("benchmarks")


def _grad_cache(quick: bool) -> dict[str, Any] | None:
    """Stage II peak memory with/without GradCache (issue #5), when that module exists."""
    if importlib.util.find_spec("benchmarks.grad_cache") is None:
        return None
    from benchmarks import grad_cache

    return grad_cache.measure(quick=quick)


def run(quick: bool, shared: Path | None, precision: str) -> dict[str, Any]:
    """All sections; returns the results dict (the keys `make bench` promises are at the top level)."""
    t0 = time.perf_counter()
    res: dict[str, Any] = {"quick": quick, "precision": precision, "machine": machine_info(), "sections_s": {}}

    def section(name: str, fn):
        t = time.perf_counter()
        log.info("== %s", name)
        out = fn()
        res["sections_s"][name] = round(time.perf_counter() - t, 1)
        return out

    pad = section("padding", lambda: padding.measure(shared, quick))
    res["padding_efficiency"] = pad["value"]
    res["padding_efficiency_without_length_grouping"] = pad.get("value_without_length_grouping")
    res["padding"] = pad
    s1 = section("stage1", lambda: stage1.measure(quick, shared, precision))
    s2 = section("stage2", lambda: stage2.measure(quick, precision))
    gc = section("stage2.grad_cache", lambda: _grad_cache(quick))
    if gc is not None:
        s2["grad_cache"] = gc
    s2["token_budget"] = section("stage2.token_budget", lambda: token_budget.measure(shared, quick))
    res["stage1"], res["stage2"] = s1, s2
    enc = section("encode", lambda: encode.measure(shared, quick, precision))
    res["encode_sorted_speedup"] = enc["value"]
    res["encode_token_budget_vs_sorted"] = enc.get("token_budget_vs_sorted")
    res["encode"] = enc
    res["scaling"] = section("scaling", lambda: scaling.measure(quick, precision))
    res["total_s"] = round(time.perf_counter() - t0, 1)
    return res


def flat_keys(res: dict[str, Any]) -> dict[str, Any]:
    """The headline figures under their dotted names (`stage1.throughput_ratio_vs_reference`, ...)."""
    return {
        "stage1.throughput_ratio_vs_reference": res["stage1"]["throughput_ratio_vs_reference"],
        "stage1.throughput_ratio_vs_reference_128k": res["stage1"]["throughput_ratio_vs_reference_128k"],
        "stage1.throughput_ratio_vs_reference_real_data": res["stage1"]["throughput_ratio_vs_reference_real_data"],
        "stage1.peak_memory_ratio_vs_reference": res["stage1"]["peak_memory_ratio_vs_reference"],
        "stage2.throughput_ratio_vs_bare_loop": res["stage2"]["throughput_ratio_vs_bare_loop"],
        "stage2.token_budget_vs_fixed_rows": res["stage2"]["token_budget"]["value"],
        "padding_efficiency": res["padding_efficiency"],
        "encode_sorted_speedup": res["encode_sorted_speedup"],
        "encode_token_budget_vs_sorted": res.get("encode_token_budget_vs_sorted"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, few reps: a check of the whole path (2.4 min on 2 cores)"
    )
    parser.add_argument("--shared", default="../shared/data", help="folder with train_pairs/ and scifact/")
    parser.add_argument("--out", default="bench", help="output folder")
    default_precision = "bf16-mixed" if torch.cuda.is_available() or _cpu_has_bf16() else "32-true"
    parser.add_argument("--precision", default=default_precision, choices=["bf16-mixed", "32-true"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    shared = Path(args.shared) if Path(args.shared).is_dir() else None
    if shared is None:
        log.warning("no shared data at %s: the real-data figures are recorded as null with the reason", args.shared)
    res = run(args.quick, shared, args.precision)
    res["headline"] = flat_keys(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots = save_plots(res, out)
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "RESULTS.md", render_markdown(res, plots))
    log.info("wrote %s (%s s)", out / "results.json", res["total_s"])
    for k, v in res["headline"].items():
        log.info("  %s = %s", k, "null" if v is None else f"{v:.3f}")
    return res


def _cpu_has_bf16() -> bool:
    """AMX makes bf16 autocast fast on CPU; without it (AVX-512 BF16 only included) fp32 measured faster here."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
