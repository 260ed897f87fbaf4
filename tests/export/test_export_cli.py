"""`bireco-export` as users call it, clear errors for unexportable runs, and all-or-nothing writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bireco.export.huggingface as hf_export
from bireco.export import ExportError, _swap_into_place, export_run, run_prompts


def test_a_folder_without_results_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=rf"{tmp_path}: not a finished pipeline run \({tmp_path}/results.json"):
        export_run(tmp_path, tmp_path / "out")


def test_a_run_whose_last_stage_did_not_finish_is_refused_naming_the_artifact(tmp_path: Path) -> None:
    artifact = tmp_path / "stages" / "1-contrastive" / "artifact"
    (tmp_path / "results.json").write_text(json.dumps({"final_artifact": str(artifact)}))
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ExportError, match=rf"final artifact {artifact} has no artifact.json"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _finished_run(root: Path) -> Path:
    """The files `finished_run` reads: enough to reach the checks made before any weights are loaded."""
    artifact = root / "stages" / "1-contrastive" / "artifact"
    artifact.mkdir(parents=True)
    (artifact / "artifact.json").write_text(json.dumps({"kind": "full"}))
    (root / "results.json").write_text(json.dumps({"final_artifact": str(artifact)}))
    (root / "config.yaml").write_text("seed: 1\n")
    return root


@pytest.mark.parametrize("out", [".", "stages", "stages/1-contrastive/artifact/st", ".."], ids=str)
def test_an_export_over_its_own_run_is_refused_and_the_run_kept(tmp_path: Path, out: str) -> None:
    """`out=RUN overwrite=true` replaced the run folder with the export: results, weights and checkpoints gone."""
    run = _finished_run(tmp_path / "run")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ExportError, match=r"out=.*: overlaps (the run|its final artifact) .*outside it"):
        export_run(run, run / out, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_export_over_the_adapters_base_model_is_refused(tmp_path: Path) -> None:
    """hf/base is read from the adapter's local base: replacing that folder would delete the model."""
    run = _finished_run(tmp_path / "run")
    base = tmp_path / "cache" / "warmup"
    base.mkdir(parents=True)
    meta = run / "stages" / "1-contrastive" / "artifact" / "artifact.json"
    meta.write_text(json.dumps({"kind": "adapter", "base": str(base)}))
    with pytest.raises(ExportError, match="overlaps the adapter's base model"):
        export_run(run, base, overwrite=True)
    assert base.is_dir()


def test_overwrite_must_be_a_boolean(tmp_path: Path) -> None:
    """`overwrite=no` arrives from the command line as the string "no", which was taken as permission."""
    with pytest.raises(ExportError, match="overwrite=no: must be true or false"):
        export_run(_finished_run(tmp_path / "run"), tmp_path / "out", overwrite="no")


def test_swap_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    (tmp_path / ".out.export-tmp").mkdir()
    (tmp_path / ".out.export-tmp" / "new.txt").write_text("new")
    _swap_into_place(tmp_path / ".out.export-tmp", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]


def test_prompts_of_a_run() -> None:
    run_cfg = {
        "template": {"instruction_separator": "; "},
        "data": {"sources": {"nq": {"instruction": "find passages"}, "quora": {"instruction": None}}},
        "probe": {"instruction": None},
    }
    eval_cfg = {
        "kind": "mteb",
        "instruction_separator": ": ",
        "categories": {"Retrieval": {"NQ": {"instruction": "retrieve"}}, "STS": {"STS12": {"instruction": "similar"}}},
    }
    prompts = {k: (p.instruction, p.separator) for k, p in run_prompts(run_cfg, eval_cfg).items()}
    assert prompts == {"nq": ("find passages", "; "), "NQ-query": ("retrieve", ": "), "STS12": ("similar", ": ")}
    with_default = run_prompts(run_cfg, eval_cfg, query_instruction="search")
    assert (with_default["query"].instruction, with_default["query"].separator) == ("search", ": ")


@pytest.mark.integration
def test_existing_output_is_refused_and_a_failed_export_leaves_nothing(exported_run, tmp_path, monkeypatch) -> None:
    with pytest.raises(
        ExportError, match=rf"{exported_run.export} exists; choose another out= or pass overwrite=true"
    ):
        export_run(exported_run.run, exported_run.export)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_export, "write_merged", boom)
    with pytest.raises(OSError, match="disk full"):
        export_run(exported_run.run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no half-written export, no temp folder


@pytest.mark.integration
def test_cli_writes_only_the_export_folder(exported_run, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [f"run_dir={exported_run.run}", "out=exported", "eval=none", "hf_merged=false"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "bireco-export"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no outputs/, .hydra/ or *.log
    out = tmp_path / "exported"
    assert (out / "modules.json").is_file() and (out / "hf" / "adapter").is_dir()
    assert not (out / "hf" / "merged").exists()
    prompts = json.loads((out / "bireco_export.json").read_text())["prompts"]
    assert "ArguAna-query" not in prompts and "query" in prompts  # eval=none: no task prompts


@pytest.mark.parametrize(("args", "unset"), [([], "run_dir= and out="), (["run_dir=/r"], "out=")])
def test_what_to_export_is_one_line_naming_what_is_unset(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], unset: str
) -> None:
    """It was a bare SystemExit message (exit 1, no `error:`), unlike every other console script."""
    import bireco.cli as cli

    monkeypatch.setattr(sys, "argv", ["bireco-export", *args, "hydra/job_logging=none", "hydra/hydra_logging=none"])
    with pytest.raises(SystemExit) as info:
        cli.export()
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"bireco-export: error: say what to export and where: run_dir=RUN out=DIR ({unset} not set)\n"
    )
