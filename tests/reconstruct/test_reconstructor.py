"""End to end on the trained tiny model: embeddings decode back to their pair's other side."""

from __future__ import annotations

import pytest

from bireco.reconstruct.generate import DecodeConfig
from bireco.reconstruct.reconstructor import Reconstructor, summarize
from tests.reconstruct.helpers import ALL_SEGMENTS


@pytest.fixture
def rec(trained) -> Reconstructor:
    return Reconstructor(trained[0], DecodeConfig(max_new_tokens=32), ALL_SEGMENTS)


@pytest.mark.parametrize("direction", ["q2d", "d2q"])
def test_each_embedding_decodes_to_its_own_pair(trained, rec: Reconstructor, direction: str) -> None:
    _, pairs = trained
    records = rec.run(pairs, direction)
    refs = [p.positive if direction == "q2d" else p.query for p in pairs]
    assert [r["generated"] for r in records] == refs
    assert [r["f1"] for r in records] == [1.0] * len(pairs)
    assert all(r["loss"] < 0.05 for r in records), [r["loss"] for r in records]


@pytest.mark.parametrize("direction", ["q2d", "d2q"])
def test_another_texts_vector_decodes_to_that_texts_pair(trained, rec: Reconstructor, direction: str) -> None:
    """Decoding from a vector of a different text changes the output: to exactly the other text's partner."""
    _, pairs = trained
    embedded = [(p.query, p.instruction) if direction == "q2d" else (p.positive, None) for p in pairs]
    anchors = rec.embed([t for t, _ in embedded], [i for _, i in embedded])
    refs = [p.positive if direction == "q2d" else p.query for p in pairs]
    shuffled = rec.run(pairs, direction, anchors=anchors.roll(1, dims=0))
    assert [r["generated"] for r in shuffled] == refs[-1:] + refs[:-1]
    own = summarize(rec.run(pairs, direction, anchors=anchors))
    control = summarize(shuffled)
    assert own["f1"] == 1.0 and control["f1"] < 0.5
    # measured: 0.49 vs 0.003 nats/token (q2d); the mean includes template tokens the anchor does not decide
    assert control["loss"] > own["loss"] + 0.25


def test_summarize_exact() -> None:
    records = [
        {"f1": 1.0, "loss_sum": 2.0, "tokens": 4},
        {"f1": 0.5, "loss_sum": 6.0, "tokens": 4},
    ]
    assert summarize(records) == {"rows": 2, "f1": 0.75, "loss": 1.0, "tokens": 8}
    with pytest.raises(ValueError, match="no rows"):
        summarize([])


def test_unknown_direction_is_rejected(trained, rec: Reconstructor) -> None:
    with pytest.raises(ValueError, match="direction must be one of"):
        rec.run(trained[1][:1], "q2q")
