"""The linear warm-up/decay schedule is transformers' one, step for step, and resumes from its state."""

from __future__ import annotations

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from bireco.lit.schedules import linear_warmup_decay, warmup_note


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)


@pytest.mark.parametrize(("warmup", "max_steps", "schedule_steps"), [(0, 10, None), (3, 10, None), (30, 40, 100)])
def test_every_step_equals_transformers_schedule(warmup: int, max_steps: int, schedule_steps: int | None) -> None:
    ours = linear_warmup_decay(_optimizer(), max_steps, warmup_steps=warmup, schedule_steps=schedule_steps)
    theirs = get_linear_schedule_with_warmup(_optimizer(), warmup, schedule_steps or max_steps)
    steps = (schedule_steps or max_steps) + 5  # past the horizon the lr stays 0
    assert _lrs(ours, steps) == _lrs(theirs, steps)


def test_a_resumed_schedule_continues_where_it_stopped() -> None:
    first = linear_warmup_decay(_optimizer(), 20, warmup_steps=4, schedule_steps=None)
    _lrs(first, 7)
    resumed = linear_warmup_decay(_optimizer(), 20, warmup_steps=4, schedule_steps=None)
    resumed.load_state_dict(first.state_dict())
    assert _lrs(resumed, 13) == _lrs(first, 13)


@pytest.mark.parametrize(("max_steps", "warmup", "message"), [(None, 3, "max_steps"), (10, -1, "warmup_steps")])
def test_bad_settings_name_the_setting(max_steps: int | None, warmup: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        linear_warmup_decay(_optimizer(), max_steps, warmup_steps=warmup, schedule_steps=None)


def test_a_checkpoint_of_transformers_schedule_resumes_into_this_one() -> None:
    """Checkpoints written before the schedule was plain torch hold transformers' LambdaLR state."""
    theirs = get_linear_schedule_with_warmup(_optimizer(), 4, 20)
    _lrs(theirs, 7)
    ours = linear_warmup_decay(_optimizer(), 20, warmup_steps=4, schedule_steps=None)
    ours.load_state_dict(theirs.state_dict())
    assert _lrs(ours, 13) == _lrs(theirs, 13)


def test_a_warm_up_longer_than_the_stage_is_noted_with_the_peak_it_reaches() -> None:
    # a smoke run (max_steps=10) under the paper's 300 warm-up steps trains at <= 3 % of the learning rate
    lrs = _lrs(linear_warmup_decay(_optimizer(), 10, warmup_steps=300, schedule_steps=None), 10)
    assert max(lrs) == pytest.approx(3e-3 * 9 / 300)
    note = warmup_note(300, 10)
    assert note == (
        "scheduler.warmup_steps=300 >= the stage's 10 optimizer steps: the learning rate rises for the whole stage "
        "and peaks at 3% of optimizer.lr"
    )
    assert warmup_note(20, 21) is None
    assert warmup_note(20, None) is None


def test_a_schedule_no_longer_than_its_warm_up_is_refused() -> None:
    # the learning rate would climb for 300 steps, then be 0 for the rest of a 1,000-step stage
    with pytest.raises(ValueError, match=r"warmup_steps=300 >= scheduler.schedule_steps=100: .* 0 from step 300 on"):
        linear_warmup_decay(_optimizer(), 1000, warmup_steps=300, schedule_steps=100)
