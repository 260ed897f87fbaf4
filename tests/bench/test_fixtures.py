"""The bench composes the packaged config (`make bench` must not depend on where the repository's files are)."""

from __future__ import annotations

from benchmarks import fixtures as fx


def test_bench_composes_the_training_config() -> None:
    cfg = fx.compose_cfg(["model=tiny"])
    assert cfg.model.name == "tiny"
    assert cfg.stages.contrastive.loss.mask_duplicates == "token_ids"
