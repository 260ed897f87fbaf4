"""Matryoshka widths wider than the embedding are refused before the first stage (`bireco.pipeline`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlamaConfig

from bireco.errors import ConfigError
from bireco.pipeline import check_embedding_widths
from tests.helpers import compose_cfg


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "stages.contrastive.loss.matryoshka_dims=[64,9999]",
            r"stages\.contrastive\.loss\.matryoshka_dims=\[64, 9999\]",
        ),
        ("eval.dims=[4096]", r"eval\.dims=\[4096\]"),
        ("eval.dims=4096", r"eval\.dims=\[4096\]"),
    ],
)
def test_a_width_above_the_tiny_models_is_refused(override: str, line: str) -> None:
    """It was found by the loss after Stage I, or by the evaluation after the whole training."""
    cfg = compose_cfg([override, "eval=local"])
    with pytest.raises(ConfigError, match=rf"^{line}: the embedding has 192 dimensions$"):
        check_embedding_widths(cfg, "unused: the tiny preset states its width")


def test_widths_that_fit_and_no_widths_pass() -> None:
    check_embedding_widths(compose_cfg(["stages.contrastive.loss.matryoshka_dims=[16,192]"]), "unused")
    check_embedding_widths(compose_cfg([]), "unused")


def test_a_pretrained_base_is_read_from_its_config_alone(tmp_path: Path) -> None:
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    cfg = compose_cfg(["model=stories260k", f"model.pretrained={tmp_path}", "eval.dims=[128]", "eval=local"])
    with pytest.raises(ConfigError, match=r"^eval\.dims=\[128\]: the embedding has 64 dimensions$"):
        check_embedding_widths(cfg, tmp_path)
    check_embedding_widths(cfg, tmp_path / "missing")  # unreadable here: the first stage reports the load
