"""Command-line values are checked against the type of the setting they replace (`bireco.override_types`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import bireco.cli as cli
from bireco.conf import CONF_DIR
from bireco.override_types import OverrideTypeError, check_override_types, mismatch


@pytest.mark.parametrize(
    ("default", "value", "need"),
    [
        (False, "no", "true or false"),
        (True, 1, "true or false"),
        (True, False, None),
        (42, "abc", "a whole number (default 42)"),
        (42, True, "a whole number (default 42)"),
        (200, 0.5, None),  # Lightning's val_check_interval: a float is a fraction of an epoch
        (2e-3, "abc", "a number (default 0.002)"),
        (2e-3, 1, None),
        (None, "abc", None),  # a null default says nothing about the type
        ("plain", 3, None),
        (5, None, None),  # null turns a setting off
    ],
)
def test_mismatch(default, value, need) -> None:
    assert mismatch(default, value) == need


def test_only_wrongly_typed_settings_are_refused_and_all_are_named() -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        check_override_types(
            "train",
            ["model=tiny", "seed=3", "stages.contrastive.val_check_interval=0.5", "data.name=mine", "+extra=abc"],
        )
        with pytest.raises(OverrideTypeError) as info:
            check_override_types(
                "train",
                [
                    "experiment=demo",
                    "seed=abc",
                    "stages.reconstruction.loss.detach_anchor=maybe",
                    "probe.every_n_steps=9",
                ],
            )
    assert str(info.value) == (
        "seed=abc: must be a whole number (default 42); "
        "stages.reconstruction.loss.detach_anchor=maybe: must be true or false"
    )


@pytest.mark.parametrize(
    "override",
    [
        "trainer.devices=auto",  # Lightning's, not bireco's: its type is Lightning's to decide
        "trainer.deterministic=warn",
        "logger.wandb.log_model=all",
        "seed=${oc.env:SLURM_ARRAY_TASK_ID,3}",  # an interpolation's type is known when it resolves
        "stages.contrastive.max_steps=${stages.reconstruction.max_steps}",
    ],
)
def test_values_whose_type_is_not_bireco_s_to_check_pass(override: str) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        check_override_types("train", ["logger=wandb", override])


def test_a_config_that_cannot_be_composed_here_is_left_to_the_job() -> None:
    """An experiment from a `hydra.searchpath` folder that is gone: best effort, the check does not refuse."""
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        check_override_types("train", ["experiment=mine", "seed=abc"], ["hydra.searchpath=[file:///nowhere]"])


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_wrongly_typed_value_is_one_line_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """`seed=abc` was a StageError traceback ten seconds into the run, leaving a run folder with failed.json."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bireco-train", "seed=abc"])
    with pytest.raises(SystemExit) as info:
        cli.train()
    assert info.value.code == 2
    assert capsys.readouterr().err == "bireco-train: error: seed=abc: must be a whole number (default 42)\n"
    assert _left(tmp_path) == []  # the run folder is gone (its empty parents stay: who made them is unknown)


@pytest.mark.usefixtures("hydra_logging_restored")
def test_overwrite_no_is_refused_instead_of_replacing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """`overwrite=no` was the truthy string "no": an existing export folder was replaced."""
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "mine.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    argv = ["bireco-export", "run_dir=run", "out=exported", "overwrite=no"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        cli.export()
    assert info.value.code == 2
    assert capsys.readouterr().err == "bireco-export: error: overwrite=no: must be true or false\n"
    assert (tmp_path / "exported" / "mine.txt").read_text() == "keep"


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_sweep_job_with_a_wrongly_typed_value_is_recorded_as_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """In a sweep the job is refused like any failing job (failed.json) and the sweep goes on."""
    monkeypatch.setattr(
        sys, "argv", ["bireco-train", "-m", "seed=abc", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=job"]
    )
    with pytest.raises(SystemExit) as info:  # its only job was refused: the sweep as a whole fails
        cli.train()
    assert info.value.code == 1
    failed = json.loads((tmp_path / "job" / "failed.json").read_text())
    assert failed["error"] == "OverrideTypeError: seed=abc: must be a whole number (default 42)"
    # the log says it in one line (Hydra's console log): a traceback for the user's typo read like a crash
    out = capsys.readouterr()
    assert "[ERROR] - job refused: seed=abc: must be a whole number (default 42) (recorded in" in out.out
    assert "Traceback" not in out.out + out.err


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_run_refused_for_its_data_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """Refused once the pipeline read its data: the folder held .hydra/, cli.log, config.yaml and failed.json."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bireco-train", "data=local", f"data.path={tmp_path / 'nosuch'}"])
    with pytest.raises(SystemExit) as info:
        cli.train()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("bireco-train: error: "), err
    assert _left(tmp_path) == []


@pytest.mark.usefixtures("hydra_logging_restored")
def test_the_working_folder_is_never_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`hydra.run.dir=.` makes the working folder the run folder: it holds only this try's files, and stays."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["bireco-train", "hydra.run.dir=.", "seed=abc"])
    with pytest.raises(SystemExit):
        cli.train()
    assert work.is_dir() and (work / ".hydra").is_dir()


def _left(root: Path) -> list[Path]:
    """What a command left under `root`: files and Hydra records (empty folders aside)."""
    return [p for p in root.rglob("*") if p.is_file() or p.name == ".hydra"]


def test_a_null_seed_is_refused_before_training() -> None:
    """`seed=null` passes the type check (null turns settings off) and failed inside the sampler, mid-stage."""
    from bireco.config import validate_config
    from bireco.errors import ConfigError

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["seed=null"])
    with pytest.raises(ConfigError, match=r"^seed=None: must be a whole number"):
        validate_config(cfg)
