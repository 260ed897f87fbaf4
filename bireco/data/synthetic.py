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
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("fact_qa", "entity_search", "paraphrase")

_ONSETS = ("b", "br", "d", "dr", "f", "g", "h", "k", "kl", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia")
_CODAS = ("n", "r", "l", "s", "m", "th", "sk", "nd", "x", "rn")
_OPTIONAL_ATTRS = ("instrument", "pet")

# Per attribute, "|"-separated: values; doc sentences ({s} subject, {ps} possessive, {v} value, {av} value with
# article); questions and keyword queries ({n} full name, {p} profession used as a descriptor).
_RAW_ATTRS: dict[str, tuple[str, str, str, str]] = {
    "profession": (
        "architect|baker|cartographer|chemist|dentist|electrician|engineer|florist|geologist|historian|illustrator|"
        "journalist|librarian|locksmith|nurse|pharmacist|photographer|pilot|potter|surveyor|tailor|translator|"
        "veterinarian|watchmaker",
        "{s} works as {av}.|{s} is {av} by trade.|By profession, {s} is {av}.|{s} earns a living as {av}.",
        "What does {n} do for a living?|What is the occupation of {n}?|What job does {n} have?|"
        "Which trade does {n} practise?",
        "{n} job title occupation|{n} profession career trade|what {n} does for work",
    ),
    "city": (
        "Brackenford|Dunmarrow|Eastwyn|Fallowgate|Glenhaven|Harrowick|Ironmere|Kestrelton|Larkspur|Mossbridge|"
        "Northfold|Oakhollow|Pinecrest|Quillmere|Ravenscar|Saltmarsh|Thornbury|Umberlee|Varenholt|Yarrowby|Zephyrdale",
        "{s} lives in {v}.|{s} has made a home in the town of {v}.|{ps} hometown is {v}.|"
        "These days {s} resides in {v}.|{s} moved to {v} and never left.",
        "Where does {n} live?|Which city is home to the {p} {n}?|What is the hometown of {n}?|"
        "In which town does {n} reside?|Where is {n} based these days?",
        "{n} home city residence|{p} {n} hometown|where {n} lives now",
    ),
    "year": (
        "|".join(str(year) for year in range(1950, 2005)),
        "{s} was born in {v}.|{s} came into the world in {v}.|{ps} year of birth is {v}.|"
        "Records show {s} was born in {v}.",
        "When was {n} born?|In what year was the {p} {n} born?|What is the birth year of {n}?|"
        "Which year did {n} come into the world?",
        "{n} birth year born|{p} {n} year of birth|{n} date of birth year",
    ),
    "employer": (
        "Brightwell Labs|Copperfield Logistics|Dovetail Studios|Everglow Energy|Foxglove Press|Granite Peak Bank|"
        "Harbourline Shipping|Ironbark Construction|Juniper Health|Kingfisher Airways|Lanternworks|Meadowlark Foods|"
        "Nightjar Software|Orchard Mutual|Pebblestone Museum|Quarry Hill School|Riverbend Hospital|"
        "Silverleaf Hotels|Tidewater Observatory|Willowmere Library",
        "{s} is employed by {v}.|{s} works at {v}.|{ps} employer is {v}.|{s} joined {v} some years ago.",
        "Who employs {n}?|Which company does {n} work for?|Where is the {p} {n} employed?|"
        "Which organisation pays the salary of {n}?",
        "{n} employer company name|{p} {n} workplace organisation|who {n} works for",
    ),
    "colour": (
        "amber|crimson|teal|ochre|violet|scarlet|emerald|indigo|saffron|turquoise|magenta|maroon|olive|silver|"
        "charcoal|coral",
        "{ps} favourite colour is {v}.|{s} loves anything painted {v}.|{s} always wears something {v}.|"
        "Friends know that {s} adores the colour {v}.",
        "What is the favourite colour of {n}?|Which colour does {n} like best?|What colour does the {p} {n} prefer?",
        "{n} favourite colour preference|{p} {n} favorite color",
    ),
    "instrument": (
        "accordion|bassoon|cello|clarinet|banjo|harp|harmonica|mandolin|oboe|piano|trombone|trumpet|ukulele|viola|"
        "xylophone|flute",
        "{s} plays the {v}.|In the evenings, {s} practises the {v}.|Since childhood, {s} has played the {v}.|"
        "{ps} instrument of choice is the {v}.",
        "Which instrument does {n} play?|What musical instrument does the {p} {n} practise?|"
        "Does {n} play any instrument, and which one?",
        "{n} musical instrument played|{p} {n} instrument",
    ),
    "pet": (
        "parrot|tortoise|ferret|iguana|hedgehog|rabbit|goldfish|beagle|tabby cat|chinchilla|gecko|canary|hamster|"
        "corgi|axolotl|cockatoo",
        "{s} keeps {av} as a pet.|{s} shares the house with {av}.|{ps} pet is {av}.|{s} adopted {av} last spring.",
        "What kind of pet does {n} have?|Which animal lives with the {p} {n}?|What species is the pet of {n}?",
        "{n} pet animal species|{p} {n} pet",
    ),
}
_ATTRS: dict[str, dict[str, tuple[str, ...]]] = {
    attr: {
        key: tuple(part.split("|")) for key, part in zip(("values", "doc", "question", "keyword"), parts, strict=True)
    }
    for attr, parts in _RAW_ATTRS.items()
}
# Words the templates and vocabularies use; generated names avoid them so name matching stays unambiguous.
_RESERVED = {
    w.lower() for spec in _ATTRS.values() for texts in spec.values() for t in texts for w in re.findall(r"\w+", t)
}
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
    body = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2))
    return (body + rng.choice(_CODAS) if rng.random() < 0.6 else body).capitalize()


def _token_pools(rng: random.Random, sizes: list[int]) -> list[list[str]]:
    """Disjoint pools of unique name tokens, one per size, so the splits share no names."""
    seen: set[str] = set()
    pools: list[list[str]] = []
    for size in sizes:
        pool: list[str] = []
        while len(pool) < size:
            tok = _token(rng)
            if tok not in seen and tok.lower() not in _RESERVED:
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
        anchor = {a: rng.choice(spec["values"]) for a, spec in _ATTRS.items()}
        family: list[_Entity] = []
        while len(family) < min(size, n - len(people)):
            first = rng.choice(firsts)
            if any(p.name.startswith(first + " ") for p in family) or f"{first} {surname}" in exclude:
                continue
            attrs = {a: v if rng.random() < 0.5 else rng.choice(_ATTRS[a]["values"]) for a, v in anchor.items()}
            for optional in _OPTIONAL_ATTRS:
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
        text = _ATTRS[attr]["doc"][tpl].format(s=subject, ps=possessive, v=value, av=f"{article} {value}")
        sentences.append(text[0].upper() + text[1:])
    return " ".join(sentences)


def _items(rng: random.Random, ent: _Entity, attrs: list[str]) -> list[_Item]:
    return [(a, rng.randrange(len(_ATTRS[a]["doc"])), ent.attrs[a]) for a in attrs]


def _query(rng: random.Random, ent: _Entity, attr: str, kind: str) -> str:
    text = rng.choice(_ATTRS[attr][kind]).format(n=ent.name, p=ent.attrs["profession"])
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
        (a, (t + rng.randrange(1, len(_ATTRS[a]["doc"]))) % len(_ATTRS[a]["doc"]), v) for a, t, v in query_items
    ]
    if rng.random() < 0.5:
        pos_items.reverse()
    sib = _sibling(rng, ent, attr)
    if sib is not None and rng.random() < 0.5:
        negative = _render(rng, sib, [(a, t, sib.attrs[a]) for a, t, _ in pos_items if a in sib.attrs])
    else:
        wrong = rng.choice([v for v in _ATTRS[attr]["values"] if v != ent.attrs[attr]])
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
