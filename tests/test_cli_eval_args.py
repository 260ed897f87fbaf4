from __future__ import annotations

from pathlib import Path

import pytest

from bireco.cli import _eval_argv
from bireco.utils.io import atomic_write_json


def test_presets_pass_through() -> None:
    assert _eval_argv(["model=llama3.2-1b", "eval=mteb_en"]) == ["model=llama3.2-1b", "eval=mteb_en"]


def test_a_stage_artifact_becomes_artifact(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "artifact.json", {"kind": "full", "stage": "reconstruction"})
    assert _eval_argv([f"model={tmp_path}"]) == [f"artifact={tmp_path}"]


def test_a_hub_name_needs_its_template() -> None:
    with pytest.raises(SystemExit, match="template=llama3"):
        _eval_argv(["model=meta-llama/Llama-3.2-1B-Instruct"])
    assert _eval_argv(["model=meta-llama/Llama-3.2-1B-Instruct", "template=llama3"]) == [
        "model.pretrained=meta-llama/Llama-3.2-1B-Instruct",
        "template=llama3",
    ]
