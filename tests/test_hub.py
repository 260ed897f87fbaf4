"""Hub access: the library never switches it off, and an unreachable hub ends in one line that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bireco.errors import HubUnreachable
from bireco.models.backbone import BackboneSpec, load_backbone, load_tokenizer

BIN = Path(sys.executable).parent


def test_importing_the_entry_points_leaves_hf_variables_alone() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    code = (
        "import os, bireco.cli, bireco.reconstruct.cli, bireco.export.cli, bireco.encode, bireco.sweep_plan;"
        "print(sorted(k for k in os.environ if k.startswith(('HF_', 'TRANSFORMERS_'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("load", [load_tokenizer, lambda spec: load_backbone(spec)], ids=["tokenizer", "model"])
def test_a_hub_name_that_cannot_be_fetched_names_the_model_and_the_offline_settings(load, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachable) as info:
        load(BackboneSpec("meta-llama/Llama-3.2-1B-Instruct", revision="main"))
    msg = str(info.value)
    assert "'meta-llama/Llama-3.2-1B-Instruct' at revision main" in msg
    assert "HF_HUB_OFFLINE is set" in msg and "local folder" in msg
    assert "\n" not in msg


def test_the_hint_without_offline_mode_names_the_variable(monkeypatch) -> None:
    from bireco.errors import offline_hint

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "HF_HUB_OFFLINE=1" in offline_hint() and "HF_DATASETS_OFFLINE=1" in offline_hint()


def test_a_missing_local_folder_is_not_reported_as_a_hub_problem(tmp_path: Path) -> None:
    """Only hub failures are translated; anything else keeps its own error."""
    bad = tmp_path / "model"
    bad.mkdir()
    with pytest.raises(Exception) as info:
        load_tokenizer(BackboneSpec(str(bad)))
    assert not isinstance(info.value, HubUnreachable)


@pytest.mark.integration
def test_bireco_train_on_an_unreachable_hub_prints_one_line(tmp_path: Path, bireco_cache: str) -> None:
    env = {**os.environ, "BIRECO_CACHE": bireco_cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [str(BIN / "bireco-train"), "model=llama3.2-1b", "pipeline=baseline", f"hydra.run.dir={tmp_path / 'run'}"]
    cmd += ["data.world.n_train_entities=40", "data.world.n_heldout_entities=10", "data.world.n_heldout_queries=8"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bireco-train: error:")]
    assert len(errors) == 1 and "'meta-llama/Llama-3.2-1B-Instruct'" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_a_config_error_is_one_line_without_traceback(tmp_path: Path, bireco_cache: str) -> None:
    env = {**os.environ, "BIRECO_CACHE": bireco_cache, "HF_HUB_OFFLINE": "1"}
    cmd = [str(BIN / "bireco-train"), "stages.reconstruction.loss.alpha=1.5", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    assert "bireco-train: error: stages.reconstruction.loss.alpha must be a number in [0, 1], got 1.5" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_a_trainer_this_machine_cannot_run_is_one_line(tmp_path: Path, bireco_cache: str) -> None:
    """`trainer=gpu` on a CPU machine was Lightning's MisconfigurationException traceback (exit 1)."""
    env = {**os.environ, "BIRECO_CACHE": bireco_cache, "HF_HUB_OFFLINE": "1"}
    cmd = [str(BIN / "bireco-train"), "trainer=gpu", "pipeline=baseline", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bireco-train: error:")]
    assert errors == ["bireco-train: error: trainer settings (accelerator=gpu): No supported gpu backend found!"]
    assert "Traceback" not in proc.stderr
