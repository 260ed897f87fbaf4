"""`--help` of the Hydra console scripts: the program's usage, the groups its own config uses, its config."""

from __future__ import annotations

import sys

import pytest

import bireco.cli as cli
from bireco.app_help import app_help, help_overrides, usage_lines


def test_eval_help_lists_only_the_groups_bireco_eval_reads() -> None:
    text = app_help("eval", "bireco-eval", [], sweeps=True)
    assert text.startswith("bireco-eval (conf/eval.yaml)\n\n  Evaluate with mteb:")
    groups = text.split("== Configuration groups (group=option; [chosen]) ==\n")[1].split("\n\n")[0].splitlines()
    assert [g.partition(":")[0] for g in groups] == ["eval", "hydra/launcher", "model", "pooling", "template"]
    assert "eval: [local], mteb_en, none" in groups and "hydra/launcher: [basic], slurm" in groups
    assert "\npipeline:" not in text and "\ntrainer:" not in text  # Hydra's help offered every group of the folder
    assert "\nrun_dir: null\n" in text and "; -m key=a,b runs a sweep) ==" in text


def test_the_command_line_is_applied() -> None:
    text = app_help("train", "bireco-train", ["model=stories260k", "pipeline=baseline", "seed=7"], sweeps=True)
    [model_line] = [line for line in text.splitlines() if line.startswith("model: ")]
    assert "[stories260k]" in model_line and " tiny" in model_line and "[tiny]" not in model_line
    [pipeline_line] = [line for line in text.splitlines() if line.startswith("pipeline: ")]
    assert "[baseline]" in pipeline_line and " bireco" in pipeline_line
    assert "experiment: demo, paper_table, reproduce_tiny  (none chosen)" in text
    assert "\nseed: 7\n" in text and "  name: stories260k\n" in text
    assert "stage@stages.reconstruction: contrastive, [reconstruction], warmup" in text


def test_flags_and_their_values_are_not_overrides_and_a_sweep_shows_its_first_job() -> None:
    """`-m seed=1,2 --help` said "add --multirun" (it was there); `--cfg job --help` read `job` as an override."""
    text = app_help("train", "bireco-train", ["-m", "seed=1,2", "--cfg", "job", "-cn", "train", "--help"], True)
    assert "== Sweep: seed=1,2 (the config below is its first job) ==" in text and "\nseed: 1\n" in text
    assert help_overrides(["--cfg", "job", "pipeline=baseline", "-m", "--help"]) == (["pipeline=baseline"], [])


def test_a_program_without_sweeps_offers_no_launcher_and_no_m() -> None:
    text = app_help("reconstruct", "bireco-reconstruct", [])
    assert "hydra/launcher" not in text and "-m key=a,b" not in text
    assert "Configuration groups" not in text  # it composes no group at all
    assert usage_lines("reconstruct")[0] == "Decode text back from a run's embeddings (bireco/reconstruct):"


def test_help_flags_print_it_and_a_bad_override_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for flag in ("--help", "-h"):
        monkeypatch.setattr(sys, "argv", ["bireco-encode", "kind=query", flag])
        assert cli.encode() is None  # the console script exits 0
        out = capsys.readouterr().out
        assert out.startswith("bireco-encode (conf/encode.yaml)\n") and "\nkind: query\n" in out
    monkeypatch.setattr(sys, "argv", ["bireco-train", "modle=tiny", "--help"])
    with pytest.raises(SystemExit) as info:
        cli.train()
    err = capsys.readouterr().err.splitlines()
    line = "bireco-train: error: Could not override 'modle'. To append to your config use +modle=tiny"
    assert info.value.code == 2 and err == [line]
