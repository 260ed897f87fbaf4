"""The real-model path end to end on a really pretrained Llama (stories260K from ../shared/models): its own
SentencePiece tokenizer, `from_pretrained` loading, no warm-up — Stage I, Stage II, eval, export, reconstruct."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bireco.pipeline import run_pipeline
from tests.export.fixtures import compose_conf
from tests.helpers import compose_cfg
from tests.shared_files import shared_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stories(tmp_path_factory: pytest.TempPathFactory, bireco_cache: str) -> dict[str, Path]:
    """bireco and baseline runs of a few steps each, from the pretrained weights."""
    model = shared_model("stories260k-llama")
    root = tmp_path_factory.mktemp("stories260k")
    runs = {}
    for pipeline in ("bireco", "baseline"):
        cfg = compose_cfg(["model=stories260k", f"model.pretrained={model}", f"pipeline={pipeline}"])
        results = run_pipeline(cfg, root / pipeline)
        assert results["base"] == str(model) and results["model"] == "stories260k"
        runs[pipeline] = root / pipeline
    return runs


def test_both_pipelines_train_from_the_pretrained_weights(stories: dict[str, Path]) -> None:
    for pipeline, stages in (("bireco", ["reconstruction", "contrastive"]), ("baseline", ["contrastive"])):
        results = json.loads((stories[pipeline] / "results.json").read_text())
        assert results["stages"] == stages
        for i, stage in enumerate(stages):
            done = json.loads((stories[pipeline] / "stages" / f"{i}-{stage}" / "stage_done.json").read_text())
            assert done["steps"] == 3
            assert all(math.isfinite(v) for v in done["metrics"].values()), done["metrics"]
    rec = json.loads((stories["bireco"] / "stages" / "0-reconstruction" / "stage_done.json").read_text())
    # a pretrained LM reconstructs far below the uniform 512-way guess (ln 512 = 6.24 nats) from the start
    assert rec["metrics"]["val/loss"] < 6.0


def test_eval_export_and_reconstruct_run_on_it(stories: dict[str, Path], tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from bireco.eval.models import load_encoder, resolve_model
    from bireco.eval.runner import run_eval
    from bireco.export import export_run
    from bireco.reconstruct.cli import run

    run_dir = stories["bireco"]
    summary = run_eval(compose_conf("eval", [f"run_dir={run_dir}", "batch_size=8", "embedding_cache=false"]), tmp_path)
    assert 0.0 <= summary["average"] <= 100.0 and summary["tasks"]
    out = export_run(run_dir, tmp_path / "export", compose_conf("export", []).eval)
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    texts = ["Once upon a time, there was a girl named Lily.", "Who plays the violin?"]
    enc = load_encoder(resolve_model(compose_conf("eval", [f"run_dir={run_dir}"])))
    assert torch.allclose(torch.as_tensor(st.encode(texts)), enc.encode(texts), atol=1e-5)
    over = [f"run_dir={run_dir}", "stage_name=reconstruction", f"text={texts[1]}", "source=fact_qa"]
    res = run(compose_conf("reconstruct", [*over, "decode.max_new_tokens=8"]))
    assert isinstance(res["generated"], str) and res["stage"] == "reconstruction"


def test_a_relative_model_folder_opens_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bireco_cache: str
) -> None:
    """The preset's default is `../shared/models/stories260k-llama`: a baseline run's adapter recorded that
    string as its base, so the run opened only from the folder it was launched in (a traceback elsewhere)."""
    from bireco.eval.models import load_encoder, resolve_model
    from bireco.runs import read_artifact_meta

    model = shared_model("stories260k-llama")
    monkeypatch.chdir(model.parent)
    cfg = compose_cfg(["model=stories260k", "model.pretrained=./stories260k-llama", "pipeline=baseline"])
    results = run_pipeline(cfg, tmp_path / "run")
    assert results["base"] == str(model.resolve())
    meta = read_artifact_meta(tmp_path / "run" / "stages" / "0-contrastive" / "artifact")
    assert meta["base"] == str(model.resolve()) and "base_in_run" not in meta
    monkeypatch.chdir(tmp_path)
    enc = load_encoder(resolve_model(compose_conf("eval", [f"run_dir={tmp_path / 'run'}"])))
    assert enc.encode(["Once upon a time"]).shape[0] == 1
