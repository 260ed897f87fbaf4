"""`python -m benchmarks --quick` end to end on small local data: every promised key, files written."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from tests.bench.helpers import sentences

KEYS = [
    "stage1.throughput_ratio_vs_reference",
    "stage1.throughput_ratio_vs_reference_real_data",
    "stage1.peak_memory_ratio_vs_reference",
    "stage2.throughput_ratio_vs_bare_loop",
    "stage2.token_budget_vs_fixed_rows",
    "padding_efficiency",
    "encode_sorted_speedup",
    "encode_token_budget_vs_sorted",
]


def _shared(root: Path) -> Path:
    rng = random.Random(0)
    (root / "train_pairs").mkdir(parents=True)
    rows = []
    for source in ("wikiqa_train", "climate_fever"):
        for q, p, n in zip(sentences(40, 2, 8, 1), sentences(40, 4, 60, 2), sentences(40, 4, 40, 3), strict=True):
            rows.append({"query": q, "positive": p, "negative": n if rng.random() < 0.8 else None, "source": source})
    with gzip.open(root / "train_pairs" / "train.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    (root / "scifact").mkdir()
    with open(root / "scifact" / "corpus.jsonl", "w") as f:
        f.writelines(
            json.dumps({"_id": str(i), "title": "t", "text": t}) + "\n" for i, t in enumerate(sentences(64, 2, 200, 4))
        )
    return root


@pytest.mark.slow
def test_quick_bench_writes_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = main(["--quick", "--shared", str(_shared(tmp_path / "shared")), "--out", str(out), "--precision", "32-true"])
    saved = json.loads((out / "results.json").read_text())
    for key in KEYS:
        section, _, name = key.partition(".")
        value = saved[section][name] if name else saved[section]
        if key == "stage2.token_budget_vs_fixed_rows":
            value = saved["stage2"]["token_budget"]["value"]
        assert isinstance(value, float) and value > 0, key
        assert saved["headline"][key] == value
    assert 0 < saved["padding_efficiency_without_length_grouping"] <= saved["padding_efficiency"] <= 1
    assert saved["encode"]["details"]["same_embeddings"] is True
    assert {r["stage"] for r in saved["scaling"]["rows"]} == {"reconstruction", "contrastive"}
    assert all(r["peak_memory_bytes"] > 0 for r in saved["scaling"]["rows"])
    for k in ("cpu_model", "cpu_cores", "torch_version", "torch_threads", "gpu_name"):
        assert k in saved["machine"]
    md = (out / "RESULTS.md").read_text()
    assert "Stage I step" in md and saved["machine"]["cpu_model"] in md
    assert (out / "scaling_batch.png").stat().st_size > 1000 and (out / "scaling_length.png").stat().st_size > 1000
    assert not list(out.glob("*.tmp")) and res["headline"] == saved["headline"]


def test_missing_shared_data_is_null_with_a_reason(tmp_path: Path) -> None:
    from benchmarks import encode, padding, stage1, token_budget

    assert padding.measure(None, quick=True) == {
        "value": None,
        "reason": "no training pairs at None (pass --shared DIR)",
    }
    r = stage1.real_data_throughput(tmp_path, 1, 0, 1, "32-true")
    assert r["value"] is None and str(tmp_path / "train_pairs") in r["reason"]
    assert encode.measure(tmp_path, True, "32-true")["value"] is None
    assert token_budget.measure(tmp_path, quick=True)["value"] is None


def test_a_token_budget_is_compared_with_the_fastest_fixed_size_that_fits_its_memory() -> None:
    from benchmarks.token_budget import best_at_memory

    fixed = {
        "8": {"peak_memory_bytes": 100, "tokens_per_s": 10.0},
        "16": {"peak_memory_bytes": 150, "tokens_per_s": 14.0},
        "32": {"peak_memory_bytes": 300, "tokens_per_s": 20.0},
    }
    assert best_at_memory(fixed, 200) == ("16", fixed["16"])  # 32 rows would be faster but needs more memory
    assert best_at_memory(fixed, 300) == ("32", fixed["32"])
    assert best_at_memory(fixed, 99) is None
