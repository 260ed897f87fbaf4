"""bireco.runs: the run-folder layout, read back the same way by every tool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bireco.runs import Run, RunError, find_runs, read_artifact_meta


def _stage(run: Path, index: int, name: str, finished: bool = True) -> Path:
    d = run / "stages" / f"{index}-{name}"
    (d / "artifact").mkdir(parents=True)
    if finished:
        (d / "artifact" / "artifact.json").write_text(json.dumps({"kind": "full", "stage": name}))
        rec = {"stage": name, "artifact": str(d / "artifact"), "init_from": f"from-{index}"}
        (d / "stage_done.json").write_text(json.dumps(rec))
    return d


def test_stages_are_in_numeric_order_and_only_finished_ones_count(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for i in (10, 2, 9):
        _stage(run, i, f"s{i}")
    _stage(run, 11, "pending", finished=False)
    (run / "stages" / "notes-x").mkdir()  # not a stage folder
    r = Run(run)
    assert [s.index for s in r.stages()] == [2, 9, 10, 11]  # 10 after 9: numbers, not text
    assert [s.name for s in r.finished_stages()] == ["s2", "s9", "s10"]
    assert r.find_stage(None).name == "s10" and r.find_stage("9-s9").name == "s9"
    with pytest.raises(RunError, match=r"no finished stage 'pending'; choose one of \['s2', 's9', 's10'\]"):
        r.find_stage("pending")
    assert r.base() == "from-2"  # what the first stage started from


def test_an_unfinished_run_is_named_not_guessed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 3\npipeline: {name: baseline}\n")
    r = Run(run)
    assert r.is_run and r.config()["seed"] == 3 and r.results() is None
    with pytest.raises(RunError, match="not a finished pipeline run"):
        r.final_artifact()
    with pytest.raises(RunError, match="not a bireco run"):
        Run(tmp_path / "nothing").config()


def test_recorded_heldout_folder_and_runs_found_without_descending(tmp_path: Path) -> None:
    run = tmp_path / "sweep" / "bireco" / "seed-1"
    _stage(run, 0, "reconstruction")
    data = {"probe_dir": str(tmp_path / "world" / "heldout" / "retrieval")}
    (run / "results.json").write_text(json.dumps({"final_artifact": "a", "data": data, "seed": 1}))
    (run / "config.yaml").write_text("{}")
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text("{}")  # inside a run: never a second run
    assert Run(run).heldout_dir() == tmp_path / "world" / "heldout"
    assert [r.path for r in find_runs(tmp_path / "sweep")] == [run]
    assert read_artifact_meta(run / "stages" / "0-reconstruction" / "artifact") == {
        "kind": "full",
        "stage": "reconstruction",
    }


def test_importing_it_loads_no_training_stack() -> None:
    code = (
        "import sys, bireco.runs; print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.fixture(scope="module")
def exported_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.export.fixtures import build_exported_run

    return build_exported_run(bireco_cache, tmp_path_factory)  # shared with tests/test_encode.py's (same folder)


def test_a_copied_run_loads_its_own_weights_and_opens_once_the_original_is_gone(exported_run, tmp_path: Path) -> None:
    """results.json and the Stage II adapter's artifact.json hold the original's absolute paths: a copy loaded
    the original's weights while it existed and failed once it was gone ("the last stage did not finish")."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from bireco.eval.models import load_encoder, resolve_model
    from tests.export.fixtures import compose_conf

    def embed(run: Path) -> torch.Tensor:
        return load_encoder(resolve_model(compose_conf("eval", [f"run_dir={run}"]))).encode(["who is the painter"])

    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(exported_run.run, copy)
    final = Run(copy).final_artifact()
    assert final == copy / "stages" / "1-contrastive" / "artifact"
    assert read_artifact_meta(final)["base"] == str(copy / "stages" / "0-reconstruction" / "artifact")
    original = embed(exported_run.run)
    assert torch.allclose(embed(copy), original)
    weights = copy / "stages" / "0-reconstruction" / "artifact" / "model.safetensors"
    save_file({k: v * 1.01 for k, v in load_file(weights).items()}, weights)  # the copy's own Stage I weights
    altered = embed(copy)
    assert not torch.allclose(altered, original, atol=1e-4)
    shutil.copytree(copy, moved)
    shutil.rmtree(copy)  # the copy's first place is gone: the moved one still opens, from itself
    assert Run(moved).final_artifact() == moved / "stages" / "1-contrastive" / "artifact"
    assert torch.allclose(embed(moved), altered)  # its own (altered) Stage I under its own adapter


def test_base_in_run_is_only_for_a_stage_of_the_same_run(tmp_path: Path) -> None:
    from bireco.runs import base_in_run

    stages = tmp_path / "run" / "stages"
    (stages / "0-reconstruction" / "artifact").mkdir(parents=True)
    (tmp_path / "hub-model").mkdir()
    artifact = stages / "1-contrastive" / "artifact"
    assert base_in_run(artifact, stages / "0-reconstruction" / "artifact") == {
        "base_in_run": "../../0-reconstruction/artifact"
    }
    assert base_in_run(artifact, tmp_path / "hub-model") == {}
    assert base_in_run(artifact, "meta-llama/Llama-3.2-1B-Instruct") == {}


def test_base_in_run_is_read_as_the_file_system_resolves_it(tmp_path: Path) -> None:
    """Through a symlinked artifact folder `..` is the link target's parent: the base read back must be the
    folder that was checked (normpath gave the textual path, which did not exist)."""
    store = tmp_path / "store" / "stages"
    (store / "0-reconstruction" / "artifact").mkdir(parents=True)
    (store / "0-reconstruction" / "artifact" / "artifact.json").write_text(json.dumps({"kind": "full"}))
    (store / "1-contrastive" / "artifact").mkdir(parents=True)
    meta = {
        "kind": "adapter",
        "base": "/gone/0-reconstruction/artifact",
        "base_in_run": "../../0-reconstruction/artifact",
    }
    (store / "1-contrastive" / "artifact" / "artifact.json").write_text(json.dumps(meta))
    run = tmp_path / "run" / "stages" / "1-contrastive"
    run.mkdir(parents=True)
    (run / "artifact").symlink_to(store / "1-contrastive" / "artifact")  # only the artifact lives elsewhere
    base = Path(read_artifact_meta(run / "artifact")["base"])
    assert (base / "artifact.json").is_file() and base == (store / "0-reconstruction" / "artifact").resolve()


def test_a_copied_run_resumes_from_its_own_stages(exported_run, tmp_path: Path) -> None:
    """Stage II of a copy whose Stage I is done started from the record's `artifact`: the original's folder."""
    import shutil

    from bireco.pipeline import run_pipeline
    from tests.helpers import compose_cfg

    copy = tmp_path / "copy"
    shutil.copytree(exported_run.run, copy)
    shutil.rmtree(copy / "stages" / "1-contrastive")
    (copy / "results.json").unlink()
    done_before = (copy / "stages" / "0-reconstruction" / "stage_done.json").read_text()
    quiet = ["stages.reconstruction.probe=false", "stages.contrastive.probe=false", "++trainer.limit_val_batches=0"]
    run_pipeline(compose_cfg(["pipeline=bireco", *quiet]), copy)  # the fixture's config
    assert (copy / "stages" / "0-reconstruction" / "stage_done.json").read_text() == done_before  # skipped
    stage2 = json.loads((copy / "stages" / "1-contrastive" / "stage_done.json").read_text())
    assert stage2["init_from"] == str(copy / "stages" / "0-reconstruction" / "artifact")
