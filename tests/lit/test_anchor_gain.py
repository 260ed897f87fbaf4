"""Stage I's anchor-gain monitor: it measures the batch before the step trains on it, never changes training,
stops on an optimizer-step boundary once the recent mean reaches `stop_at`, and says so in the stage record."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from bireco.config import ConfigError, validate_config
from bireco.data.collate import PairCollator, WindowCollator
from bireco.lit.anchor_gain import AnchorGainMonitor
from bireco.lit.module import StageModule
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.pipeline import run_pipeline
from bireco.stage_settings import AnchorGainSettings
from tests.helpers import compose_cfg, stage_module
from tests.models.conftest import sentences

ROWS = [
    {"query": q, "positive": d, "negative": None, "source": "s"}
    for q, d in zip(sentences(24, seed=5), sentences(24, seed=6), strict=True)
]


def _batches(tokenizer, size: int = 4) -> list[dict]:
    collator = PairCollator(Template().bind(tokenizer), {"s": None}, tokenizer.pad_token_id, 64, with_negatives=False)
    return [collator(ROWS[i : i + size]) for i in range(0, len(ROWS), size)]


def _module(make_tiny_model, tokenizer) -> StageModule:
    torch.manual_seed(0)
    enc = TextEncoder(make_tiny_model().train(), tokenizer, Template(), "eos", 64)
    return stage_module(enc, "reconstruction", **{"loss.alpha": 0.5, "optimizer.lr": 1e-2})


def _fit(module: StageModule, batches: list, max_steps: int, monitor=None, accumulate: int = 1) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accumulate_grad_batches=accumulate,
        callbacks=[monitor] if monitor else [],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return trainer


def _gain(module: StageModule, batch: dict) -> float:
    module.eval()
    with torch.no_grad():
        g = float(module.objective.validation(module.encoder, batch)["anchor_gain"])
    module.train()
    return g


def test_it_measures_the_batch_before_the_step_trains_on_it(make_tiny_model, tiny_tokenizer) -> None:
    batches = _batches(tiny_tokenizer)
    monitor = AnchorGainMonitor(AnchorGainSettings(every_n_steps=2))
    _fit(_module(make_tiny_model, tiny_tokenizer), batches, 6, monitor)
    assert [s for s, _ in monitor.history] == [0, 2, 4]
    # the same numbers from modules trained 0 / 2 / 4 steps without the monitor, on the batch each step trains on
    for step, got in monitor.history:
        ref = _module(make_tiny_model, tiny_tokenizer)
        if step:
            _fit(ref, batches, step)
        assert got == pytest.approx(_gain(ref, batches[step]), rel=1e-6, abs=1e-7), step
    assert monitor.stopped_at is None and monitor.summary()["stopped_at"] is None


def test_training_is_the_same_with_and_without_it(make_tiny_model, tiny_tokenizer) -> None:
    batches = _batches(tiny_tokenizer)
    plain, watched = _module(make_tiny_model, tiny_tokenizer), _module(make_tiny_model, tiny_tokenizer)
    _fit(plain, batches, 5)
    _fit(watched, batches, 5, AnchorGainMonitor(AnchorGainSettings(every_n_steps=1)))
    for (name, a), (_, b) in zip(plain.named_parameters(), watched.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_the_measurement_leaves_every_module_in_its_own_mode(make_tiny_model, tiny_tokenizer) -> None:
    module = _module(make_tiny_model, tiny_tokenizer)
    module.train()
    next(m for m in module.modules() if isinstance(m, torch.nn.Embedding)).eval()  # one module kept in eval
    before = {n: m.training for n, m in module.named_modules()}
    trainer = SimpleNamespace(
        global_step=0,
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
        loggers=[],
        callbacks=[],
        precision_plugin=SimpleNamespace(forward_context=contextlib.nullcontext),
    )
    monitor = AnchorGainMonitor(AnchorGainSettings(every_n_steps=1))
    monitor.on_train_batch_start(trainer, module, _batches(tiny_tokenizer)[0], 0)
    assert len(monitor.history) == 1
    assert {n: m.training for n, m in module.named_modules()} == before


def test_it_stops_after_the_step_where_the_recent_mean_reaches_stop_at(make_tiny_model, tiny_tokenizer) -> None:
    batches = _batches(tiny_tokenizer)
    # every gain is above -100: the mean of the last 2 checks exists at step 1, so the stage ends after step 1
    monitor = AnchorGainMonitor(AnchorGainSettings(every_n_steps=1, stop_at=-100.0, window=2))
    trainer = _fit(_module(make_tiny_model, tiny_tokenizer), batches, 6, monitor)
    assert trainer.global_step == 2 and monitor.stopped_at == 2
    assert [s for s, _ in monitor.history] == [0, 1]
    assert monitor.summary()["mean"] == pytest.approx(sum(g for _, g in monitor.history) / 2)
    # never reached: max_steps ends it
    never = AnchorGainMonitor(AnchorGainSettings(every_n_steps=1, stop_at=100.0, window=2))
    trainer = _fit(_module(make_tiny_model, tiny_tokenizer), batches, 4, never)
    assert trainer.global_step == 4 and never.stopped_at is None


def test_under_accumulation_it_measures_once_per_step_and_stops_on_its_boundary(make_tiny_model, tiny_tokenizer):
    collator = PairCollator(
        Template().bind(tiny_tokenizer), {"s": None}, tiny_tokenizer.pad_token_id, 64, with_negatives=False
    )
    micro = [b for i in range(0, len(ROWS), 8) for b in WindowCollator(collator, 2)(ROWS[i : i + 8])]
    monitor = AnchorGainMonitor(AnchorGainSettings(every_n_steps=1, stop_at=-100.0, window=1))
    module = _module(make_tiny_model, tiny_tokenizer)
    first = _gain(_module(make_tiny_model, tiny_tokenizer), micro[0])
    trainer = _fit(module, micro, 3, monitor, accumulate=2)
    # stopped after both micro-batches of step 0 were applied, not between them
    assert trainer.global_step == 1 and monitor.stopped_at == 1
    assert [s for s, _ in monitor.history] == [0]
    assert monitor.history[0][1] == pytest.approx(first, rel=1e-6, abs=1e-7)


def test_its_state_resumes_and_a_stage_resumed_after_the_stop_stays_stopped() -> None:
    monitor = AnchorGainMonitor(AnchorGainSettings(every_n_steps=5, stop_at=0.1, window=2))
    monitor.history, monitor.stopped_at = [(0, 0.0), (5, 0.08), (10, 0.14)], 11
    resumed = AnchorGainMonitor(AnchorGainSettings(every_n_steps=5, stop_at=0.1, window=2))
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))  # what a checkpoint carries
    assert resumed.history == monitor.history and resumed.recent_mean() == pytest.approx(0.11)
    trainer = SimpleNamespace(should_stop=False)
    resumed.on_train_start(trainer, None)
    assert trainer.should_stop is True


def test_a_checkpoint_saved_at_the_stop_before_it_was_recorded_resumes_into_the_same_stop() -> None:
    """A preemption checkpoint is written in `on_train_batch_end` before the monitor's own hook records the stop
    (and a kill during the final validation leaves it as the stage's last state): the stop is due from the state."""
    settings = AnchorGainSettings(every_n_steps=2, stop_at=0.1, window=2)
    saved = {"history": [(0, 0.05), (2, 0.2)], "stopped_at": None}  # mean 0.125 >= 0.1, measured at step 2
    resumed = AnchorGainMonitor(settings)
    resumed.load_state_dict(saved)
    trainer = SimpleNamespace(should_stop=False, global_step=3)
    resumed.on_train_start(trainer, SimpleNamespace(stage="reconstruction"))
    assert trainer.should_stop is True and resumed.stopped_at == 3  # where the uninterrupted stage stopped
    below = AnchorGainMonitor(settings)
    below.load_state_dict({"history": [(0, 0.0), (2, 0.05)], "stopped_at": None})
    trainer = SimpleNamespace(should_stop=False, global_step=3)
    below.on_train_start(trainer, SimpleNamespace(stage="reconstruction"))
    assert trainer.should_stop is False and below.stopped_at is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "stages.reconstruction.anchor_gain={every_n_steps: 0}",
            "stages.reconstruction.anchor_gain.every_n_steps must",
        ),
        (
            "stages.reconstruction.anchor_gain={every_n_steps: 5, stop_at: high}",
            "reconstruction.anchor_gain.stop_at must",
        ),
        (
            "stages.reconstruction.anchor_gain={every_n_steps: 5, patience: 3}",
            "reconstruction.anchor_gain: .*patience",
        ),
        ("stages.reconstruction.anchor_gain=7", "stages.reconstruction.anchor_gain must be a mapping"),
        ("+stages.contrastive.anchor_gain={every_n_steps: 5}", "stages.contrastive.anchor_gain: the stage's loss"),
    ],
)
def test_bad_settings_are_one_config_error_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg([override]))


@pytest.mark.parametrize("minimum", ["min_steps", "min_epochs"])
def test_a_stop_with_a_minimum_length_is_refused(minimum: str) -> None:
    stop = "stages.reconstruction.anchor_gain={every_n_steps: 5, stop_at: 0.1}"
    with pytest.raises(ConfigError, match=rf"^stages.reconstruction.anchor_gain.stop_at with trainer.{minimum}:"):
        validate_config(compose_cfg([stop, f"+trainer.{minimum}=10"]))
    validate_config(compose_cfg(["stages.reconstruction.anchor_gain={every_n_steps: 5}", "+trainer.min_steps=10"]))


def test_a_batch_of_one_and_fsdp_are_refused() -> None:
    on = "stages.reconstruction.anchor_gain={every_n_steps: 5}"
    with pytest.raises(ConfigError, match=r"anchor_gain needs batch_size >= 2"):
        validate_config(compose_cfg([on, "stages.reconstruction.batch_size=1"]))
    with pytest.raises(ConfigError, match=r"stages.reconstruction.anchor_gain with trainer.strategy=fsdp"):
        big = ["model=mistral-7b", "trainer=ddp", "stages.reconstruction.batch_size=2"]  # its own: 1 per device
        validate_config(compose_cfg([*big, on], fast=False))
    validate_config(compose_cfg([on]))  # the same setting on one device is fine


@pytest.mark.integration
def test_the_stage_record_says_the_stop_ended_stage1(tmp_path: Path, bireco_cache) -> None:
    over = [
        "pipeline=stage1_only",
        "stages.reconstruction.max_steps=3",
        "stages.reconstruction.probe=false",
        "stages.reconstruction.anchor_gain={every_n_steps: 1, window: 1, stop_at: -100}",
    ]
    results = run_pipeline(compose_cfg(over), tmp_path / "run")
    (rec,) = results["stage_results"]
    assert rec["steps"] == 1
    assert rec["anchor_stop"]["stopped_at"] == 1 and rec["anchor_stop"]["stop_at"] == -100
    rows = (tmp_path / "run" / "stages" / "0-reconstruction").rglob("metrics.csv")
    assert any("train/anchor_gain" in p.read_text().splitlines()[0] for p in rows)
