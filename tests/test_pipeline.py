"""The two-stage method end to end on the tiny model (a few steps each), in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bireco.factory import build_encoder
from bireco.models.backbone import BackboneSpec, load_backbone, read_artifact_meta
from bireco.pipeline import run_pipeline
from tests.helpers import compose_cfg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bireco_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bireco_run")
    cfg = compose_cfg(["pipeline=bireco"])
    return out, run_pipeline(cfg, out)


@pytest.fixture(scope="module")
def baseline_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("baseline_run")
    return out, run_pipeline(compose_cfg(["pipeline=baseline"]), out)


def test_bireco_runs_both_stages_and_writes_artifacts(bireco_run) -> None:
    out, results = bireco_run
    assert results["stages"] == ["reconstruction", "contrastive"]
    s1, s2 = out / "stages" / "0-reconstruction", out / "stages" / "1-contrastive"
    for stage_dir, kind in ((s1, "full"), (s2, "adapter")):
        done = json.loads((stage_dir / "stage_done.json").read_text())
        assert done["steps"] == 3
        assert read_artifact_meta(stage_dir / "artifact")["kind"] == kind
        assert (stage_dir / "logs" / "metrics.csv").is_file()
        assert (stage_dir / "probe.jsonl").is_file()
    # Stage I logs both directions and the anchor gain; Stage II's adapter sits on Stage I's weights
    s1_metrics = json.loads((s1 / "stage_done.json").read_text())["metrics"]
    assert {"train/loss_q2d", "train/loss_d2q", "val/anchor_gain", "val/loss"} <= set(s1_metrics)
    assert read_artifact_meta(s2 / "artifact")["base"] == str(s1 / "artifact")
    # LoRA artifact: adapter only, far smaller than the full Stage I weights
    adapter_bytes = sum(f.stat().st_size for f in (s2 / "artifact").glob("*.safetensors"))
    full_bytes = sum(f.stat().st_size for f in (s1 / "artifact").glob("*.safetensors"))
    assert 0 < adapter_bytes < full_bytes / 4
    probe = results["probe"]
    assert set(probe) >= {"recall@1", "mrr@10"} and 0.0 <= probe["recall@1"] <= 1.0


def test_each_stage_records_its_compute_report(bireco_run) -> None:
    """results.json carries tokens/s, the real-token fraction, peak memory and model FLOPs with their convention;
    no MFU on CPU (no dense bf16 peak), said so."""
    _, results = bireco_run
    reports = {r["stage"]: r["compute"] for r in results["stage_results"]}
    assert set(reports) == {"reconstruction", "contrastive"}
    for stage, c in reports.items():
        assert c["steps"] == 3 and c["seconds"] > 0, stage
        assert c["tokens_per_s"] > 0 and 0 < c["real_token_fraction"] <= 1
        assert c["model_flops"] > 0 and c["model_tflops_per_s"] > 0
        assert c["peak_memory_bytes"] > 0 and c["peak_memory_source"] == "process peak RSS"
        assert c["mfu"] is None and "no MFU" in c["mfu_note"]
        assert "6N" in c["flop_convention"]
    assert reports["reconstruction"]["training"] == "full fine-tuning"
    assert reports["contrastive"]["training"].startswith("LoRA")
    # Stage I runs four passes (two encoder, two decoder + LM head) per row, Stage II three lighter ones
    assert reports["reconstruction"]["model_flops"] > reports["contrastive"]["model_flops"]


def test_bireco_and_baseline_start_from_the_same_warmed_up_model(bireco_run, baseline_run) -> None:
    assert bireco_run[1]["base"] == baseline_run[1]["base"]
    assert "warmup" in bireco_run[1]["base"]
    base_done = json.loads((Path(bireco_run[1]["base"]).parent / "stage_done.json").read_text())
    assert base_done["stage"] == "warmup" and base_done["steps"] == 4
    assert baseline_run[1]["stages"] == ["contrastive"]
    s2 = baseline_run[0] / "stages" / "0-contrastive" / "artifact"
    assert read_artifact_meta(s2)["base"] == bireco_run[1]["base"]


def test_stage2_starts_from_exactly_the_stage1_weights(bireco_run) -> None:
    out, _ = bireco_run
    cfg = compose_cfg(["pipeline=bireco"])
    s1_artifact = out / "stages" / "0-reconstruction" / "artifact"
    stage1_model, _ = load_backbone(BackboneSpec(str(s1_artifact)))
    encoder = build_encoder(cfg, cfg.stages.contrastive, str(s1_artifact))
    base = encoder.model.get_base_model()
    s1_state = stage1_model.state_dict()
    compared = 0
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        assert torch.equal(tensor, s1_state[key]), name
        compared += 1
    assert compared == len(s1_state)
    # a fresh adapter (B = 0) changes nothing: Stage II's first forward equals Stage I's model
    encoder.model.eval()
    stage1_model.eval()
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.allclose(encoder.model(ids).logits, stage1_model(ids).logits, atol=1e-6)


def test_rerun_skips_finished_stages(bireco_run) -> None:
    out, first = bireco_run
    marker = out / "stages" / "0-reconstruction" / "stage_done.json"
    before = marker.stat().st_mtime_ns
    again = run_pipeline(compose_cfg(["pipeline=bireco"]), out)
    assert marker.stat().st_mtime_ns == before
    assert again["probe"] == first["probe"]


def test_rerun_with_another_config_in_the_same_dir_is_refused(bireco_run) -> None:
    out, _ = bireco_run
    from bireco.pipeline import RunFolderTaken

    with pytest.raises(RunFolderTaken, match="finished with another configuration"):
        run_pipeline(compose_cfg(["pipeline=bireco", "stages.reconstruction.loss.alpha=0.3"]), out)


def test_a_finished_stage_reused_after_its_data_files_changed_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The config hash covers data.path, not the files: an in-place edit reused the finished stage silently."""
    import json
    import os

    from bireco.pipeline import data_files_stamp, run_stage, stage_config_hash

    data = tmp_path / "pairs"
    data.mkdir()
    rows = data / "qa.jsonl"
    rows.write_text('{"query": "q", "positive": "d", "source": "qa"}\n')
    cfg = compose_cfg(["data=local", f"data.path={data}", "pipeline=baseline"])
    stage = tmp_path / "run" / "stages" / "0-contrastive"
    (stage / "artifact").mkdir(parents=True)
    (stage / "artifact" / "artifact.json").write_text("{}")
    record = {
        "stage": "contrastive",
        "config_hash": stage_config_hash(cfg, "contrastive"),
        "data_files": data_files_stamp(cfg),
    }
    (stage / "stage_done.json").write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        run_stage(cfg, "contrastive", "base", stage, None, "run")  # same files: reused quietly
        assert not caplog.records
        rows.write_text(rows.read_text() * 2)
        os.utime(rows, ns=(1, 1))
        assert run_stage(cfg, "contrastive", "base", stage, None, "run")["data_files"] == record["data_files"]
    assert "was trained before the data files under data.path changed" in caplog.text
    assert data_files_stamp(compose_cfg(["pipeline=baseline"])) is None  # the generated world: its own cache key
