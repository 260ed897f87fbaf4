from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from omegaconf import OmegaConf

from bireco.utils.tracking import log_final_metrics, wandb_mode


def test_wandb_mode_is_offline_without_a_key(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x")
    assert wandb_mode(None) == "online"
    assert wandb_mode("disabled") == "disabled"


def _cfg() -> object:
    return OmegaConf.create(
        {
            "logger": {"wandb": {"project": "bireco-test", "entity": None, "group": None, "mode": None}},
            "run_name": None,
            "run_group": "sweep-1",
            "model": {"name": "tiny"},
            "pipeline": {"name": "bireco"},
        }
    )


RESULTS = {
    "probe": {"step": 3, "stage": "contrastive", "recall@1": 0.25, "mrr@10": 0.5},
    "eval": {"tasks": {"scifact": {"main_score": 61.5}}, "categories": {"Retrieval": 61.5}, "average": 61.5},
}


def test_final_metrics_go_to_the_summary_of_a_run_in_the_sweep_group(tmp_path: Path, monkeypatch) -> None:
    import wandb

    captured: dict = {}

    class FakeRun:
        summary: ClassVar[dict] = {}

        def finish(self) -> None:
            captured["finished"] = True

    def fake_init(**kwargs):
        captured["init"] = kwargs
        return FakeRun()

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(wandb, "init", fake_init)
    log_final_metrics(_cfg(), tmp_path, RESULTS)
    assert captured["init"]["group"] == "sweep-1" and captured["init"]["name"] == "tiny-bireco/final"
    assert captured["init"]["mode"] == "offline" and captured["finished"]
    assert FakeRun.summary == {
        "probe/step": 3,
        "probe/recall@1": 0.25,
        "probe/mrr@10": 0.5,
        "mteb/scifact": 61.5,
        "mteb_category/Retrieval": 61.5,
        "mteb/average": 61.5,
    }


def test_offline_wandb_run_is_written_without_a_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    log_final_metrics(_cfg(), tmp_path, RESULTS)
    assert len(list(tmp_path.rglob("offline-run-*/run-*.wandb"))) == 1  # `wandb sync` uploads it later


def test_no_wandb_logger_means_no_wandb_run(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"logger": {"csv": {}}, "model": {"name": "t"}, "pipeline": {"name": "p"}})
    log_final_metrics(cfg, tmp_path, {})
    assert not list(tmp_path.rglob("wandb*"))
