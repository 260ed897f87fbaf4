"""The stage builder (`bireco.factory.build_trainer_and_module`): the notes it logs once per stage, with the step
count the Trainer runs."""

from __future__ import annotations

import logging

import pytest

from bireco.data.prepare import prepare_data
from bireco.factory import build_trainer_and_module
from tests.helpers import compose_cfg


@pytest.mark.parametrize(("warmup", "noted"), [(1, False), (6, True)])
def test_a_warm_up_as_long_as_the_stage_is_noted_with_the_trainers_steps(
    make_tiny_model, tiny_tokenizer, tmp_path, caplog: pytest.LogCaptureFixture, warmup: int, noted: bool
) -> None:
    init = tmp_path / "model"
    make_tiny_model().save_pretrained(init)
    tiny_tokenizer.save_pretrained(init)
    # the same-budget control runs Stage I's 3 + Stage II's 3 steps: the note must count 6, not max_steps' 3
    cfg = compose_cfg(["pipeline=baseline_budget", f"stages.contrastive.scheduler.warmup_steps={warmup}"])
    with caplog.at_level(logging.WARNING, logger="bireco.factory"):
        trainer, *_ = build_trainer_and_module(
            cfg, "contrastive", str(init), tmp_path / "stage", prepare_data(cfg), "t"
        )
    assert trainer.max_steps == 6
    notes = [r.getMessage() for r in caplog.records if "warmup_steps" in r.getMessage()]
    expected = (
        "stage 'contrastive': scheduler.warmup_steps=6 >= the stage's 6 optimizer steps: the learning rate rises for "
        "the whole stage and peaks at 83% of optimizer.lr"
    )
    assert notes == ([expected] if noted else [])


@pytest.mark.parametrize("global_zero", [True, False])
def test_the_smaller_candidate_pool_is_noted_by_rank_zero_only(
    make_tiny_model,
    tiny_tokenizer,
    tmp_path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    global_zero: bool,
) -> None:
    import lightning as L

    init = tmp_path / "model"
    make_tiny_model().save_pretrained(init)
    tiny_tokenizer.save_pretrained(init)
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda _: global_zero))
    over = ["stages.contrastive.accumulate_grad_batches=2", "stages.contrastive.pool=micro_batch"]
    cfg = compose_cfg(["pipeline=baseline", *over])
    with caplog.at_level(logging.WARNING, logger="bireco.factory"):
        build_trainer_and_module(cfg, "contrastive", str(init), tmp_path / "stage", prepare_data(cfg), "t")
    notes = [r.getMessage() for r in caplog.records if "pool=micro_batch" in r.getMessage()]
    batch = cfg.stages.contrastive.batch_size
    expected = (
        "stages.contrastive.pool=micro_batch: with accumulate_grad_batches=2 each query is scored against "
        f"{batch} rows of a global batch of {2 * batch}"
    )
    assert notes == ([expected] if global_zero else [])
