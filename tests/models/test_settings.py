"""`model.pretrained`: an existing folder is recorded as its absolute path, a path-like name that is no folder is
one line before anything loads, a hub name stays as given."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bireco.errors import ConfigError
from bireco.models.settings import check_model_settings, local_or_hub_name
from tests.helpers import compose_cfg


def test_a_folder_becomes_absolute_and_a_hub_name_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models")
    for name in ("m", "./m", "../models/m", str(tmp_path / "models" / "m")):
        assert local_or_hub_name(name) == str((tmp_path / "models" / "m").resolve())
    assert local_or_hub_name("meta-llama/Llama-3.2-1B-Instruct") == "meta-llama/Llama-3.2-1B-Instruct"
    assert local_or_hub_name("gpt2") == "gpt2"


def test_a_path_that_is_no_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    for name, why in (
        (str(tmp_path / "stories260k-lama"), "no such folder"),
        ("../no/such/model", "no such folder"),
        (str(tmp_path / "weights.bin"), "is a file, not a model folder"),
    ):
        with pytest.raises(ConfigError, match=f"^model.pretrained={name}: {why} "):
            local_or_hub_name(name)


def test_the_config_check_refuses_a_missing_folder_before_loading(tmp_path: Path) -> None:
    cfg = compose_cfg(["model=stories260k", f"model.pretrained={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="no such folder"):
        check_model_settings(cfg.model)


def test_a_max_length_past_the_folder_s_context_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 512}')
    cfg = compose_cfg(["model=stories260k", f"model.pretrained={tmp_path}", "model.max_length=1024"])
    with caplog.at_level(logging.WARNING):
        check_model_settings(cfg.model)
    assert "model.max_length=1024 exceeds" in caplog.text and "max_position_embeddings=512" in caplog.text
    caplog.clear()
    check_model_settings(cfg.model)  # validation runs twice per run (the entry point, the pipeline): said once
    assert not caplog.text
    cfg = compose_cfg(["model=stories260k", f"model.pretrained={tmp_path}", "model.max_length=512"])
    check_model_settings(cfg.model)
    assert not caplog.text
    assert os.path.isabs(local_or_hub_name(os.path.relpath(tmp_path)))
