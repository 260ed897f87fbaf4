"""The progress bar names the stage instead of Lightning's "Epoch 0/-2" (stages run by steps, max_epochs=-1)."""

from __future__ import annotations

from bireco.data.prepare import prepare_data
from bireco.factory import build_trainer_and_module
from bireco.lit.progress import StageProgressBar
from tests.helpers import compose_cfg


def test_the_description_names_the_stage() -> None:
    bar = StageProgressBar("reconstruction")
    assert bar._get_train_description(0).strip() == "reconstruction epoch 0"
    assert len(StageProgressBar("a")._get_train_description(3)) == len(bar.validation_description)


def test_the_trainer_uses_it_when_bars_are_on_and_none_when_off(make_tiny_model, tiny_tokenizer, tmp_path) -> None:
    init = tmp_path / "model"
    make_tiny_model().save_pretrained(init)
    tiny_tokenizer.save_pretrained(init)
    for enabled in (True, False):
        cfg = compose_cfg([f"trainer.enable_progress_bar={str(enabled).lower()}"])
        trainer, *_ = build_trainer_and_module(
            cfg, "contrastive", str(init), tmp_path / f"stage-{enabled}", prepare_data(cfg), "t"
        )
        bar = trainer.progress_bar_callback
        assert isinstance(bar, StageProgressBar) if enabled else bar is None
        if enabled:
            assert bar.stage == "contrastive" and "-2" not in bar._get_train_description(0)
