"""Deterministic synthetic "world" that trains and evaluates the embedded default model offline.

Why: the tiny built-in model must learn without downloads, so we write a fictional world of people with
attributes. Retrieval is learnable (a query asks for one fact; only some documents state it) but not trivial
(hard negatives are siblings sharing a surname and attributes, or the same person's documents lacking the fact).
Held-out people use name tokens never seen in training, so gains on the held-out split measure generalisation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bireco.data.world_vocabulary import ATTRS, CODAS, ONSETS, OPTIONAL_ATTRS, RESERVED, VOWELS

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("fact_qa", "entity_search", "paraphrase")

_Item = tuple[str, int, str]  # (attribute, doc template index, value)
_HELDOUT_FILES = (  # (corpus, queries, qrels, pairs), in the order _heldout returns them
    "heldout/retrieval/corpus.jsonl",
    "heldout/retrieval/queries.jsonl",
    "heldout/retrieval/qrels.tsv",
    "heldout/pairs.jsonl",
)


@dataclass(frozen=True)
class WorldSpec:
    """Knobs of the synthetic world; all are recorded in world.json so a trained model can cite its data."""

    seed: int = 0
    n_train_entities: int = 600
    n_heldout_entities: int = 150
    queries_per_entity: int = 3  # rows per entity per source: 600 * 3 * 3 sources = 5400 train rows
    n_heldout_queries: int = 240
    n_distractor_entities: int = 50  # held-out people in the corpus that no query asks about
    family_size: int = 3  # people sharing a surname and some attributes: the source of hard negatives
    negative_drop_rate: float = 0.25  # share of entity_search rows without a negative (negatives are optional)

    def __post_init__(self) -> None:
        counts = ("n_train_entities", "n_heldout_entities", "queries_per_entity", "n_heldout_queries", "family_size")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"WorldSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_distractor_entities < 0:
            raise ValueError(f"WorldSpec.n_distractor_entities must be >= 0, got {self.n_distractor_entities}")
        if not 0.0 <= self.negative_drop_rate < 1.0:
            raise ValueError(f"WorldSpec.negative_drop_rate must be in [0, 1), got {self.negative_drop_rate}")


@dataclass(eq=False)
class _Entity:
    name: str
    pronoun: str
    attrs: dict[str, str]
    family: list[_Entity] = field(default_factory=list, repr=False)


def _token(rng: random.Random) -> str:
    """A pronounceable two-syllable name token (one syllable too often yields real words such as "This")."""
    body = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(2))
    return (body + rng.choice(CODAS) if rng.random() < 0.6 else body).capitalize()


def _token_pools(rng: random.Random, sizes: list[int]) -> list[list[str]]:
    """Disjoint pools of unique name tokens, one per size, so the splits share no names."""
    seen: set[str] = set()
    pools: list[list[str]] = []
    for size in sizes:
        pool: list[str] = []
        while len(pool) < size:
            tok = _token(rng)
            if tok not in seen and tok.lower() not in RESERVED:
                seen.add(tok)
                pool.append(tok)
        pools.append(pool)
    return pools


def _families(
    rng: random.Random,
    n: int,
    firsts: list[str],
    surnames: list[str],
    size: int,
    exclude: frozenset[str] = frozenset(),
) -> list[_Entity]:
    """Group people into families that share a surname and roughly half their attributes.

    Names in `exclude` are never used (held-out people get names no training person has)."""
    people: list[_Entity] = []
    for surname in surnames:
        anchor = {a: rng.choice(spec["values"]) for a, spec in ATTRS.items()}
        family: list[_Entity] = []
        while len(family) < min(size, n - len(people)):
            first = rng.choice(firsts)
            if any(p.name.startswith(first + " ") for p in family) or f"{first} {surname}" in exclude:
                continue
            attrs = {a: v if rng.random() < 0.5 else rng.choice(ATTRS[a]["values"]) for a, v in anchor.items()}
            for optional in OPTIONAL_ATTRS:
                if rng.random() < 0.3:
                    del attrs[optional]
            family.append(_Entity(f"{first} {surname}", rng.choice(("she", "he")), attrs))
        for person in family:
            person.family = [p for p in family if p is not person]
        people.extend(family)
    return people


def _build_entities(spec: WorldSpec) -> tuple[list[_Entity], list[_Entity]]:
    """Train and held-out people (queried first, then distractors).

    Held-out people are new *people*: full names no training person has, built from the same first names and
    new surnames mixed with known ones, so a small model can generalize by matching name pieces it has seen
    (as an LLM has seen most name pieces) while never having seen the person.
    """
    rng = random.Random(f"bireco-synthetic-{spec.seed}-entities")
    n_held = spec.n_heldout_entities + spec.n_distractor_entities
    n_first = max(spec.family_size, math.ceil(0.8 * spec.n_train_entities))
    n_sur = math.ceil(spec.n_train_entities / spec.family_size)
    n_held_sur = math.ceil(n_held / spec.family_size)
    first, train_sur, new_sur = _token_pools(rng, [n_first, n_sur, math.ceil(n_held_sur / 2)])
    train = _families(rng, spec.n_train_entities, first, train_sur, spec.family_size)
    held_sur = new_sur + rng.sample(train_sur, n_held_sur - len(new_sur))
    rng.shuffle(held_sur)
    taken = frozenset(p.name for p in train)
    held = _families(rng, n_held, first, held_sur, spec.family_size, exclude=taken)
    rng.shuffle(held)
    return train, held


def entity_names(spec: WorldSpec = WorldSpec()) -> dict[str, list[str]]:
    """Full names per split ("train", "heldout" incl. distractors), so callers and tests can check name leakage."""
    train, held = _build_entities(spec)
    return {"train": [e.name for e in train], "heldout": [e.name for e in held]}


def _render(rng: random.Random, ent: _Entity, items: list[_Item]) -> str:
    """Join one sentence per item; the first names the person in full, later ones use a pronoun or first name."""
    sentences = []
    for i, (attr, tpl, value) in enumerate(items):
        subject = ent.name if i == 0 else (ent.pronoun if rng.random() < 0.5 else ent.name.split()[0])
        possessive = {"she": "her", "he": "his"}.get(subject, f"{subject}'s")
        article = "an" if value[0] in "aeiou" else "a"
        text = ATTRS[attr]["doc"][tpl].format(s=subject, ps=possessive, v=value, av=f"{article} {value}")
        sentences.append(text[0].upper() + text[1:])
    return " ".join(sentences)


def _items(rng: random.Random, ent: _Entity, attrs: list[str]) -> list[_Item]:
    return [(a, rng.randrange(len(ATTRS[a]["doc"])), ent.attrs[a]) for a in attrs]


def _query(rng: random.Random, ent: _Entity, attr: str, kind: str) -> str:
    text = rng.choice(ATTRS[attr][kind]).format(n=ent.name, p=ent.attrs["profession"])
    return text[0].upper() + text[1:] if kind == "question" else text


def _sibling(rng: random.Random, ent: _Entity, attr: str) -> _Entity | None:
    """A family member who also has ``attr``, preferring one whose value differs (hard but distinguishable)."""
    sibs = [s for s in ent.family if attr in s.attrs]
    differing = [s for s in sibs if s.attrs[attr] != ent.attrs[attr]]
    return rng.choice(differing or sibs) if sibs else None


def _doc_pair(rng: random.Random, ent: _Entity, attr: str) -> tuple[str, str]:
    """Positive profile stating ``attr``; hard negative: a sibling's profile or this person's without ``attr``."""
    others = [a for a in ent.attrs if a != attr]
    attrs = [attr, *rng.sample(others, 2)]
    rng.shuffle(attrs)
    positive = _render(rng, ent, _items(rng, ent, attrs))
    sib = _sibling(rng, ent, attr)
    if sib is not None and rng.random() < 0.6:
        return positive, _render(rng, sib, _items(rng, sib, [a for a in attrs if a in sib.attrs]))
    return positive, _render(rng, ent, _items(rng, ent, rng.sample(others, 2)))


def _paraphrase(rng: random.Random, ent: _Entity, attr: str) -> tuple[str, str, str]:
    """Two facts, restated with different templates; the negative alters a value or swaps in a sibling."""
    second = rng.choice([a for a in ent.attrs if a != attr])
    query_items = _items(rng, ent, [attr, second])
    pos_items = [
        (a, (t + rng.randrange(1, len(ATTRS[a]["doc"]))) % len(ATTRS[a]["doc"]), v) for a, t, v in query_items
    ]
    if rng.random() < 0.5:
        pos_items.reverse()
    sib = _sibling(rng, ent, attr)
    if sib is not None and rng.random() < 0.5:
        negative = _render(rng, sib, [(a, t, sib.attrs[a]) for a, t, _ in pos_items if a in sib.attrs])
    else:
        wrong = rng.choice([v for v in ATTRS[attr]["values"] if v != ent.attrs[attr]])
        negative = _render(rng, ent, [(a, t, wrong if a == attr else v) for a, t, v in pos_items])
    return _render(rng, ent, query_items), _render(rng, ent, pos_items), negative


def _row(rng: random.Random, source: str, ent: _Entity, attr: str, spec: WorldSpec) -> dict[str, str]:
    if source == "paraphrase":
        query, positive, negative = _paraphrase(rng, ent, attr)
    else:
        query = _query(rng, ent, attr, "question" if source == "fact_qa" else "keyword")
        positive, negative = _doc_pair(rng, ent, attr)
    row = {"query": query, "positive": positive, "negative": negative, "source": source}
    if source == "entity_search" and rng.random() < spec.negative_drop_rate:
        del row["negative"]
    return row


def _attr_cycle(rng: random.Random, ent: _Entity, k: int) -> list[str]:
    """``k`` attributes to ask about, covering each one before repeating any."""
    attrs = list(ent.attrs)
    rng.shuffle(attrs)
    return [attrs[i % len(attrs)] for i in range(k)]


def _heldout(rng: random.Random, held: list[_Entity], spec: WorldSpec) -> tuple[list, list, list, list]:
    """BEIR corpus/queries/qrels and training-format pairs about held-out people only."""
    chunks: list[tuple[_Entity, list[str]]] = []
    for ent in held:
        attrs = list(ent.attrs)
        rng.shuffle(attrs)
        n_docs = max(1, round(len(attrs) / 2.5))
        for i in range(n_docs):
            chunk = attrs[i::n_docs]
            if len(chunk) < 3 and rng.random() < 0.3:  # some facts appear in two docs -> some queries have 2 qrels
                chunk.append(rng.choice([a for a in attrs if a not in chunk]))
            chunks.append((ent, chunk))
    rng.shuffle(chunks)
    corpus, where = [], {}
    for i, (ent, chunk) in enumerate(chunks):
        doc_id = f"doc-{i:05d}"
        corpus.append({"_id": doc_id, "title": ent.name, "text": _render(rng, ent, _items(rng, ent, chunk))})
        for attr in chunk:
            where.setdefault((ent.name, attr), []).append(doc_id)
    queried = held[: spec.n_heldout_entities]
    asked = {e.name: _attr_cycle(rng, e, len(e.attrs)) for e in queried}
    queries, qrels = [], []
    for q in range(spec.n_heldout_queries):
        ent = queried[q % len(queried)]
        attr = asked[ent.name][(q // len(queried)) % len(ent.attrs)]
        query_id = f"q-{q:04d}"
        queries.append(
            {"_id": query_id, "text": _query(rng, ent, attr, "question" if rng.random() < 0.7 else "keyword")}
        )
        qrels += [(query_id, doc_id) for doc_id in where[(ent.name, attr)]]
    pairs = [_row(rng, s, e, _attr_cycle(rng, e, 1)[0], spec) for e in queried for s in SOURCES]
    return corpus, queries, qrels, pairs


def _write(path: Path, text: str) -> None:
    """Write via a temp file + os.replace so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def generate_world(out_dir: str | Path, spec: WorldSpec = WorldSpec()) -> Path:
    """Write the world under ``out_dir`` and return it; idempotent (same spec -> byte-identical files)."""
    out = Path(out_dir)
    train, held = _build_entities(spec)
    counts: dict[str, int] = {}
    for source in SOURCES:
        rng = random.Random(f"bireco-synthetic-{spec.seed}-{source}")
        rows = [_row(rng, source, e, a, spec) for e in train for a in _attr_cycle(rng, e, spec.queries_per_entity)]
        rng.shuffle(rows)
        _write(out / "train" / f"{source}.jsonl", _jsonl(rows))
        counts[f"train/{source}.jsonl"] = len(rows)
    rng = random.Random(f"bireco-synthetic-{spec.seed}-heldout")
    corpus, queries, qrels, pairs = _heldout(rng, held, spec)
    qrels_tsv = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    for rel, text in zip(_HELDOUT_FILES, (_jsonl(corpus), _jsonl(queries), qrels_tsv, _jsonl(pairs)), strict=True):
        _write(out / rel, text)
    counts.update(zip(_HELDOUT_FILES, map(len, (corpus, queries, qrels, pairs)), strict=True))
    world = {"counts": counts, "sources": list(SOURCES), "spec": asdict(spec)}
    _write(out / "world.json", json.dumps(world, ensure_ascii=False, sort_keys=True) + "\n")
    logger.info("Wrote synthetic world to %s: %s", out, counts)
    return out
