"""PairDataModule on real jsonl files: homogeneous batches, per-source instructions, held-out rows, no stale cache."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import datasets
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from bireco.data.collate import PairCollator
from bireco.data.datamodule import PairDataModule, load_rows, resolve_instructions
from bireco.data.formats import DataFormatError
from bireco.models.templates import Segment, Template
from bireco.models.tiny import train_tokenizer

N_ALPHA, N_BETA = 40, 24
INSTR = {"alpha": "find the alpha passage", "beta": "find the beta passage"}


def _alpha(i: int) -> dict:
    return {"query": f"alpha query {i}", "positive": f"alpha doc {i}", "negative": f"alpha wrong {i}"}


def _beta(i: int) -> dict:
    return {"query": f"beta question {i}", "positive": f"beta answer {i}"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Dataset.from_generator writes its Arrow cache under HF_DATASETS_CACHE: keep it out of the user's cache
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    texts = [v for i in range(50) for r in (_alpha(i), _beta(i)) for v in r.values()] + list(INSTR.values())
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("dm_tokenizer"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "rows"
    d.mkdir()
    _write(d / "alpha.jsonl", [_alpha(i) for i in range(N_ALPHA)])
    _write(d / "beta.jsonl", [_beta(i) for i in range(N_BETA)])
    return d


def _collator(tok: PreTrainedTokenizerFast, with_negatives: bool = True) -> PairCollator:
    return PairCollator(Template(add_bos=True).bind(tok), {}, tok.pad_token_id, 64, with_negatives=with_negatives)


def _dm(folder: Path, tok: PreTrainedTokenizerFast, **kw) -> PairDataModule:
    kw.setdefault("sources_cfg", {s: {"instruction": i} for s, i in INSTR.items()})
    kw.setdefault("collator", _collator(tok))
    dm = PairDataModule(folder, batch_size=kw.pop("batch_size", 8), **kw)
    dm.setup("fit")
    return dm


def _segment_text(tok: PreTrainedTokenizerFast, padded: dict[str, torch.Tensor], row: int, seg: Segment) -> str:
    keep = padded["segments"][row] == int(seg)
    return tok.decode(padded["input_ids"][row][keep].tolist())


def test_training_batches_are_homogeneous_and_carry_their_source_instruction(
    folder: Path, tok: PreTrainedTokenizerFast
) -> None:
    dm = _dm(folder, tok)
    rows_by_query = {_alpha(i)["query"]: ("alpha", _alpha(i)) for i in range(N_ALPHA)}
    rows_by_query |= {_beta(i)["query"]: ("beta", _beta(i)) for i in range(N_BETA)}
    seen: list[str] = []
    batches = list(dm.train_dataloader())
    assert len(batches) == N_ALPHA // 8 + N_BETA // 8
    for batch in batches:
        source = batch["source"]
        q, p = batch["query"], batch["positive"]
        assert q["input_ids"].shape[0] == p["input_ids"].shape[0] == 8
        for j in range(8):
            query = _segment_text(tok, q, j, Segment.TEXT)
            row_source, row = rows_by_query[query]
            assert row_source == source, f"row of {row_source} in a {source} batch"
            assert _segment_text(tok, p, j, Segment.TEXT) == row["positive"]  # pairs stay aligned
            # queries carry their source's instruction (+ separator); documents carry none
            assert _segment_text(tok, q, j, Segment.INSTRUCTION) == INSTR[source] + "; "
            assert not (p["segments"][j] == int(Segment.INSTRUCTION)).any()
            seen.append(query)
        if source == "alpha":
            neg = batch["negative"]
            assert [_segment_text(tok, neg, j, Segment.TEXT) for j in range(8)] == [
                rows_by_query[_segment_text(tok, q, j, Segment.TEXT)][1]["negative"] for j in range(8)
            ]
            assert not (neg["segments"] == int(Segment.INSTRUCTION)).any()
        else:
            assert "negative" not in batch  # beta rows have no negatives
    assert len(seen) == len(set(seen)) == len(batches) * 8


def test_negatives_only_collated_with_negatives(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok, collator=_collator(tok, with_negatives=False))
    batches = list(dm.train_dataloader())
    assert {b["source"] for b in batches} == {"alpha", "beta"}
    assert all("negative" not in b for b in batches)


def test_rows_keep_negative_none_for_sources_without_negatives(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok)
    rows = {r["query"]: r for r in dm.train_set}
    assert rows["alpha query 3"] == {**_alpha(3), "source": "alpha"}
    assert rows["beta question 3"] == {**_beta(3), "negative": None, "source": "beta"}


def test_missing_instruction_without_default_raises_listing_sources(
    folder: Path, tok: PreTrainedTokenizerFast
) -> None:
    with pytest.raises(ValueError, match=r"no instruction for sources \['beta'\].*\(configured: \['alpha'\]\)"):
        _dm(folder, tok, sources_cfg={"alpha": {"instruction": INSTR["alpha"]}})
    with pytest.raises(ValueError, match=r"no instruction for sources \['alpha', 'beta'\]"):
        _dm(folder, tok, sources_cfg={})


def test_default_instruction_fills_unconfigured_sources(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok, sources_cfg={"alpha": {"instruction": INSTR["alpha"]}}, default_instruction="find it")
    assert dm.collator.instructions == {"alpha": INSTR["alpha"], "beta": "find it"}
    batch = next(b for b in dm.train_dataloader() if b["source"] == "beta")
    assert _segment_text(tok, batch["query"], 0, Segment.INSTRUCTION) == "find it; "


def test_resolve_instructions_forms() -> None:
    cfg = {"a": {"instruction": "ia", "ratio": 2}, "b": "ib", "c": {"ratio": 1}, "d": {"instruction": ""}}
    assert resolve_instructions(["a", "b", "c", "d"], cfg, "dflt") == {"a": "ia", "b": "ib", "c": "dflt", "d": ""}
    with pytest.raises(ValueError, match=r"no instruction for sources \['c'\]"):
        resolve_instructions(["a", "b", "c", "d"], cfg, None)


def test_ratio_zero_source_is_never_trained_on(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    cfg = {"alpha": {"instruction": INSTR["alpha"], "ratio": 1}, "beta": {"instruction": INSTR["beta"], "ratio": 0}}
    dm = _dm(folder, tok, sources_cfg=cfg)
    sources = [b["source"] for b in dm.train_dataloader()]
    assert sources == ["alpha"] * (N_ALPHA // 8 + N_BETA // 8)


def test_val_rows_are_held_out_and_disjoint_from_training(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok, val_rows=10, val_batch_size=4)
    train_q, val_q = list(dm.train_set["query"]), list(dm.val_set["query"])
    assert len(val_q) == 10
    assert len(train_q) == N_ALPHA + N_BETA - 10
    assert not set(train_q) & set(val_q)
    everything = {_alpha(i)["query"] for i in range(N_ALPHA)} | {_beta(i)["query"] for i in range(N_BETA)}
    assert set(train_q) | set(val_q) == everything
    # the split is reproducible from the seed
    assert list(_dm(folder, tok, val_rows=10).val_set["query"]) == val_q
    # training never sees a held-out row
    trained = {_segment_text(tok, b["query"], j, Segment.TEXT) for b in dm.train_dataloader() for j in range(8)}
    assert not trained & set(val_q)
    # validation batches are homogeneous and hold only held-out rows
    for batch in dm.val_dataloader():
        n = batch["query"]["input_ids"].shape[0]
        assert 2 <= n <= 4
        texts = {_segment_text(tok, batch["query"], j, Segment.TEXT) for j in range(n)}
        assert texts <= set(val_q)
        assert {t.split()[0] for t in texts} == {batch["source"]}


def test_no_validation_by_default(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok)
    assert dm.val_set is None
    assert dm.val_dataloader() == []
    assert len(dm.train_set) == N_ALPHA + N_BETA


def test_val_path(folder: Path, tok: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    val = _write(tmp_path / "alpha.jsonl", [_alpha(100 + i) for i in range(6)])
    dm = _dm(folder, tok, val_path=val, val_batch_size=3)
    assert len(dm.train_set) == N_ALPHA + N_BETA
    assert sorted(dm.val_set["query"]) == sorted(_alpha(100 + i)["query"] for i in range(6))
    assert [b["source"] for b in dm.val_dataloader()] == ["alpha", "alpha"]


def test_validation_order_is_shuffled_so_a_grouped_file_does_not_pair_rows_with_their_group(
    folder: Path, tok: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    # a validation file listing each query's three positives in a row: the anchor gain's control decodes row i
    # from row i-1's embedding, which in file order is mostly the same query
    grouped = [{"query": f"alpha query {q}", "positive": f"alpha doc {q} {k}"} for q in range(12) for k in range(3)]
    val = _write(tmp_path / "alpha.jsonl", grouped)

    def val_batches(seed: int) -> list[list[str]]:
        dm = _dm(folder, tok, val_path=val, val_batch_size=8, seed=seed, collator=_collator(tok, False))
        return [
            [_segment_text(tok, b["query"], j, Segment.TEXT) for j in range(b["query"]["input_ids"].shape[0])]
            for b in dm.val_dataloader()
        ]

    def same_query_controls(batches: list[list[str]]) -> int:
        return sum(q[i] == q[i - 1] for q in batches for i in range(len(q)))

    batches = val_batches(seed=1)
    file_order = [[r["query"] for r in grouped[i : i + 8]] for i in range(0, len(grouped), 8)]
    assert same_query_controls(file_order) == 21
    assert same_query_controls(batches) <= 4
    # every row once (36 = 4 x 8 + 4: no lone row to skip), and the same batches whatever the run's seed
    assert sorted(q for b in batches for q in b) == sorted(r["query"] for r in grouped)
    assert [len(b) for b in batches] == [8, 8, 8, 8, 4]
    assert val_batches(seed=2) == batches


def test_editing_a_file_changes_what_is_loaded(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    f = folder / "beta.jsonl"
    first = load_rows(folder)
    assert "beta question 0" in first["query"]
    # an edit of a different size
    _write(f, [{"query": f"beta edited {i}", "positive": f"beta answer {i}"} for i in range(N_BETA)])
    second = load_rows(folder)
    assert "beta question 0" not in second["query"]
    assert "beta edited 0" in second["query"]
    # an edit of exactly the same size, later in time
    before = f.stat()
    _write(f, [{"query": f"beta EDITED {i}", "positive": f"beta answer {i}"} for i in range(N_BETA)])
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert f.stat().st_size == before.st_size
    third = load_rows(folder)
    assert "beta EDITED 0" in third["query"]
    assert "beta edited 0" not in third["query"]
    # and a fresh data module sees the edited rows
    dm = _dm(folder, tok)
    assert "beta EDITED 5" in dm.train_set["query"]


def test_max_rows_per_source(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = _dm(folder, tok, max_rows_per_source=16)
    assert len(dm.train_set) == 32
    assert sorted(dm.train_set["query"])[:2] == ["alpha query 0", "alpha query 1"]


def test_negatives_in_a_later_file_after_1000_rows_without(tmp_path: Path) -> None:
    # datasets infers column types from the first 1000 rows it writes; a `negative` that is None in all of them
    # must not make the later sources' negatives unwritable.
    d = tmp_path / "rows"
    d.mkdir()
    _write(d / "a_plain.jsonl", [{"query": f"q{i}", "positive": f"p{i}"} for i in range(1001)])
    _write(d / "b_hard.jsonl", [{"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in range(3)])
    try:
        rows = load_rows(d)
    except Exception as e:  # report the source bug clearly
        pytest.fail(
            "load_rows fails when the first 1000 rows have no `negative` and a later file has negatives "
            f"(bireco/data/datamodule.py:35 load_rows: pass explicit `features=` to Dataset.from_generator): "
            f"{e!r} caused by {e.__cause__!r}"
        )
    assert len(rows) == 1004
    assert rows[1001] == {"query": "q0", "positive": "p0", "negative": "n0", "source": "b_hard"}
    assert rows[0]["negative"] is None


def test_val_rows_leaving_no_training_rows_raises(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    n = N_ALPHA + N_BETA
    try:
        dm = _dm(folder, tok, val_rows=n + 5)
    except ValueError as e:
        assert "val_rows" in str(e)
        return
    pytest.fail(
        f"val_rows={n + 5} on {n} rows silently held out every row: {len(dm.train_set)} training rows, "
        f"{len(list(dm.train_dataloader()))} training batches (bireco/data/datamodule.py:118 PairDataModule.setup "
        "should raise when val_rows >= the number of rows)"
    )


def test_collator_counts_real_tokens_on_the_cpu(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    batch = next(iter(_dm(folder, tok).train_dataloader()))
    expected = sum(int(batch[k]["attention_mask"].sum()) for k in ("query", "positive", "negative") if k in batch)
    assert isinstance(batch["num_tokens"], int) and batch["num_tokens"] == expected > 0


def test_source_smaller_than_one_batch_names_its_files_and_counts(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    # beta's rows come from two files (its own and, through the `source` field, a mixed one); gamma has one row
    mixed = [{**_beta(100 + i), "source": "beta"} for i in range(2)] + [{**_alpha(100), "source": "gamma"}]
    _write(folder / "zmixed.jsonl", mixed)
    dm = PairDataModule(folder, _collator(tok), batch_size=30, default_instruction="x")
    with pytest.raises(DataFormatError) as info:
        dm.setup("fit")  # in setup, before any sampler or model step
    assert str(info.value) == (
        f"{folder}: sources with fewer training rows than one batch of 30 rows (30 per rank × 1 ranks):\n"
        f"  source 'beta': 26 training rows, from {folder / 'beta.jsonl'} (24 rows), "
        f"{folder / 'zmixed.jsonl'} (2 rows)\n"
        f"  source 'gamma': 1 training rows, from {folder / 'zmixed.jsonl'} (1 rows)\n"
        "lower the stage's batch_size, or drop or merge these sources"
    )


def test_source_smaller_than_one_global_batch_counts_held_out_rows(folder: Path, tok: PreTrainedTokenizerFast) -> None:
    dm = PairDataModule(folder, _collator(tok), batch_size=13, val_rows=10, num_replicas=2, default_instruction="x")
    with pytest.raises(DataFormatError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert "one batch of 26 rows (13 per rank × 2 ranks)" in msg and "source 'alpha'" not in msg
    found = re.search(
        r"source 'beta': (\d+) training rows \(\+(\d+) held out by data.val_rows\), from (.+) \(24 rows\)", msg
    )
    assert found and int(found[1]) + int(found[2]) == N_BETA and int(found[2]) > 0, msg
    assert found[3] == str(folder / "beta.jsonl")
