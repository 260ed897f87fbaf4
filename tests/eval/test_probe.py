"""The probe's ranking metrics, computed by hand on a tiny score matrix (one query has two relevant documents)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bireco.eval.probe import ranking_metrics


def test_metrics_are_what_their_names_say() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.1, 0.0],  # relevant {0, 1}: top doc relevant -> hit 1, recall 1/2, rr 1
            [0.1, 0.9, 0.8, 0.0],  # relevant {2}: ranked second -> hit 0, recall 0, rr 1/2
            [0.0, 0.1, 0.2, 0.9],  # relevant {0}: ranked last (4th) -> hit 0, recall 0, rr 1/4 within k=10
        ]
    )
    got = ranking_metrics(scores, [{0, 1}, {2}, {0}])
    assert got["hit@1"] == pytest.approx(1 / 3)
    assert got["recall@1"] == pytest.approx((1 / 2) / 3)
    assert got["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    # a cutoff below the first relevant rank scores 0 for that query
    assert ranking_metrics(scores, [{0, 1}, {2}, {0}], k=2)["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)


@pytest.mark.integration
def test_the_probe_interval_does_not_change_training(bireco_cache: str, tmp_path: Path) -> None:
    """The probe encodes in eval mode and draws no random numbers, so how often it runs (the demo's curve
    resolution) leaves the trained weights bit-identical — also with LoRA dropout drawing masks every step."""
    from bireco.pipeline import run_pipeline
    from tests.helpers import artifact_weights, compose_cfg

    weights = []
    for every in (1, 0):  # every step / only before and after training
        out = tmp_path / f"every-{every}"
        overrides = ["pipeline=bireco", f"probe.every_n_steps={every}", "stages.contrastive.peft.dropout=0.3"]
        run_pipeline(compose_cfg(overrides), out)
        weights.append({s: artifact_weights(out / "stages" / s) for s in ("0-reconstruction", "1-contrastive")})
    for stage, got in weights[0].items():
        assert got.keys() == weights[1][stage].keys() and got
        assert all(torch.equal(got[k], weights[1][stage][k]) for k in got), stage
