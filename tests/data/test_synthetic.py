"""Tests for the synthetic world: the embedded default's training and held-out data must be sound and reproducible."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import pytest

from bireco.data.synthetic import SOURCES, WorldSpec, entity_names, generate_world

# Overlapping "Capitalised Capitalised" bigrams: every full name matches, so set lookups find the named entity.
_BIGRAMS = re.compile(r"(?=\b([A-Z][a-z]+ [A-Z][a-z]+)\b)")
_SMALL = WorldSpec(n_train_entities=60, n_heldout_entities=20, n_heldout_queries=30, n_distractor_entities=6)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _qrels(root: Path) -> list[list[str]]:
    return [line.split("\t") for line in (root / "heldout/retrieval/qrels.tsv").read_text().splitlines()]


def _named(text: str, names: set[str]) -> list[str]:
    return [m for m in _BIGRAMS.findall(text) if m in names]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def names() -> dict[str, list[str]]:
    return entity_names(WorldSpec())


def test_same_spec_gives_identical_bytes(world: Path, tmp_path: Path) -> None:
    first = _files(world)
    assert set(first) == {
        *(f"train/{s}.jsonl" for s in SOURCES),
        "heldout/retrieval/corpus.jsonl",
        "heldout/retrieval/queries.jsonl",
        "heldout/retrieval/qrels.tsv",
        "heldout/pairs.jsonl",
        "world.json",
    }
    assert _files(generate_world(str(tmp_path))) == first
    assert _files(generate_world(tmp_path)) == first  # rewriting in place is idempotent and leaves no temp files


def test_different_seed_changes_content(tmp_path: Path) -> None:
    a = _files(generate_world(tmp_path / "a", _SMALL))
    b = _files(generate_world(tmp_path / "b", WorldSpec(**{**asdict(_SMALL), "seed": 1})))
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.startswith(("train/", "heldout/")))


@pytest.mark.parametrize("source", SOURCES)
def test_train_rows_are_well_formed(world: Path, source: str) -> None:
    rows = _read_jsonl(world / "train" / f"{source}.jsonl")
    assert len(rows) >= 256
    for row in rows:
        assert set(row) in ({"query", "positive", "negative", "source"}, {"query", "positive", "source"})
        assert all(isinstance(v, str) and v.strip() for v in row.values())
        assert row["source"] == source
        assert row.get("negative") != row["positive"]
        assert row["query"] != row["positive"]
        assert 3 <= len(row["query"].split()) <= 24
        assert 4 <= len(row["positive"].split()) <= 60
    assert len({r["query"] for r in rows}) > 0.9 * len(rows)  # varied phrasing, not one template repeated


def test_negatives_are_mostly_present_but_optional(world: Path) -> None:
    by_source = {s: _read_jsonl(world / "train" / f"{s}.jsonl") for s in SOURCES}
    missing = {s: sum("negative" not in r for r in rows) for s, rows in by_source.items()}
    assert missing["fact_qa"] == missing["paraphrase"] == 0
    assert 0 < missing["entity_search"] < 0.5 * len(by_source["entity_search"])


def test_positive_mentions_the_entity_named_in_the_query(world: Path, names: dict[str, list[str]]) -> None:
    train_names = set(names["train"])
    assert len(train_names) == WorldSpec().n_train_entities
    hard = 0
    for source in SOURCES:
        for row in _read_jsonl(world / "train" / f"{source}.jsonl"):
            named = _named(row["query"], train_names)
            assert len(named) == 1, row
            assert named[0] in row["positive"], row
            # Hard negative: the same person (other facts) or a family member sharing the surname.
            hard += "negative" in row and named[0].split()[1] in row["negative"]
    assert hard > 0.9 * sum(1 for s in SOURCES for r in _read_jsonl(world / "train" / f"{s}.jsonl") if "negative" in r)


def test_heldout_people_never_appear_in_training(world: Path, names: dict[str, list[str]]) -> None:
    """Held-out people are unseen (no full name in any training text); their name pieces may be known."""
    assert not set(names["train"]) & set(names["heldout"])
    train_text = " ".join(
        " ".join(row.values()) for source in SOURCES for row in _read_jsonl(world / "train" / f"{source}.jsonl")
    )
    full_names = set(re.findall(r"\b[A-Z]\w+ [A-Z]\w+\b", train_text))
    assert not set(names["heldout"]) & full_names
    # some held-out surnames are new, some are shared with training families (seen pieces, unseen people)
    train_surnames = {n.split()[1] for n in names["train"]}
    held_surnames = {n.split()[1] for n in names["heldout"]}
    assert held_surnames - train_surnames and held_surnames & train_surnames


def test_beir_layout_is_consistent(world: Path) -> None:
    beir = world / "heldout" / "retrieval"
    corpus = _read_jsonl(beir / "corpus.jsonl")
    queries = _read_jsonl(beir / "queries.jsonl")
    assert all(set(d) == {"_id", "title", "text"} and d["text"] for d in corpus)
    assert all(set(q) == {"_id", "text"} and q["text"] for q in queries)
    doc_ids, query_ids = [d["_id"] for d in corpus], [q["_id"] for q in queries]
    assert len(set(doc_ids)) == len(doc_ids)
    assert len(set(query_ids)) == len(query_ids)
    assert 200 <= len(queries) <= 300
    header, *lines = _qrels(world)
    assert header == ["query-id", "corpus-id", "score"]
    assert len({tuple(line) for line in lines}) == len(lines)
    assert all(len(line) == 3 and line[2] == "1" for line in lines)
    assert {line[0] for line in lines} == set(query_ids)
    assert {line[1] for line in lines} <= set(doc_ids)


def test_heldout_retrieval_has_distractors(world: Path, names: dict[str, list[str]]) -> None:
    beir = world / "heldout" / "retrieval"
    corpus = {d["_id"]: d for d in _read_jsonl(beir / "corpus.jsonl")}
    relevant: dict[str, set[str]] = defaultdict(set)
    for query_id, doc_id, _ in _qrels(world)[1:]:
        relevant[query_id].add(doc_id)
    heldout_names = set(names["heldout"])
    for query in _read_jsonl(beir / "queries.jsonl"):
        (name,) = _named(query["text"], heldout_names)
        assert all(name in corpus[d]["text"] and corpus[d]["title"] == name for d in relevant[query["_id"]])
        # Recall@1 is not trivial: another doc about this person or a same-surname relative competes.
        surname = name.split()[1]
        assert any(surname in d["title"] for i, d in corpus.items() if i not in relevant[query["_id"]])


def test_heldout_pairs_are_about_heldout_entities(world: Path, names: dict[str, list[str]]) -> None:
    rows = _read_jsonl(world / "heldout" / "pairs.jsonl")
    queried = set(names["heldout"][: WorldSpec().n_heldout_entities])
    assert {r["source"] for r in rows} == set(SOURCES)
    for row in rows:
        assert {"query", "positive", "source"} <= set(row) <= {"query", "positive", "negative", "source"}
        (name,) = _named(row["query"], queried)
        assert name in row["positive"]


def test_world_json_records_spec_and_counts(world: Path) -> None:
    meta = json.loads((world / "world.json").read_text(encoding="utf-8"))
    assert meta["spec"] == asdict(WorldSpec())
    assert meta["sources"] == list(SOURCES)
    for rel, count in meta["counts"].items():
        lines = (world / rel).read_text(encoding="utf-8").splitlines()
        assert count == len(lines) - (1 if rel.endswith(".tsv") else 0), rel
    train_total = sum(n for rel, n in meta["counts"].items() if rel.startswith("train/"))
    assert 5000 <= train_total <= 8000


@pytest.mark.parametrize(
    "overrides",
    [{"n_train_entities": 0}, {"queries_per_entity": 0}, {"n_distractor_entities": -1}, {"negative_drop_rate": 1.0}],
)
def test_invalid_spec_is_rejected(overrides: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        WorldSpec(**overrides)
