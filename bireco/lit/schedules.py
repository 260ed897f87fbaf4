"""Learning-rate schedules a stage's YAML can name (`scheduler: {_target_: ..., _partial_: true}`): each takes
the optimizer and the stage's optimizer-step count and returns a per-step scheduler.

Plain torch (transformers' `get_linear_schedule_with_warmup`, step for step — tested): config validation builds
the schedule on a dummy parameter, and importing transformers for it made every config error wait ~5 s."""

from __future__ import annotations

from functools import partial

import torch


def _linear_warmup_decay_factor(step: int, *, warmup_steps: int, horizon: int) -> float:
    """lr multiplier at optimizer step `step`: 0 → 1 over the warm-up, then 1 → 0 at `horizon`, 0 after."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    return max(0.0, float(horizon - step) / float(max(1, horizon - warmup_steps)))


def warmup_note(warmup_steps: int, max_steps: int | None) -> str | None:
    """What a warm-up at least as long as the stage does to its learning rate (e.g. a smoke run's max_steps=10
    under the paper's 300 warm-up steps), for the stage builder to log once; None when the warm-up ends in time."""
    if max_steps is None or warmup_steps < max_steps:
        return None
    peak = 100 * (max_steps - 1) / warmup_steps  # the factor at the last trained step, max_steps - 1
    return (
        f"scheduler.warmup_steps={warmup_steps} >= the stage's {max_steps} optimizer steps: the learning rate rises "
        f"for the whole stage and peaks at {peak:.0f}% of optimizer.lr"
    )


def linear_warmup_decay(
    optimizer: torch.optim.Optimizer, max_steps: int | None, *, warmup_steps: int, schedule_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then linear decay to 0 at `schedule_steps` (None = at `max_steps`).

    The paper decays over 3 nominal epochs but stops at max_steps = 2,000, so the horizon is its own setting.
    """
    horizon = schedule_steps or max_steps
    if horizon is None or horizon <= 0:
        raise ValueError("set the stage's max_steps or scheduler.schedule_steps for the learning-rate schedule")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"scheduler.warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    if schedule_steps and warmup_steps >= schedule_steps:
        raise ValueError(
            f"scheduler.warmup_steps={warmup_steps} >= scheduler.schedule_steps={schedule_steps}: the learning rate "
            f"would be 0 from step {warmup_steps} on; make the schedule longer than its warm-up"
        )
    # a partial, like transformers': a checkpoint's scheduler state has the same shape either way
    factor = partial(_linear_warmup_decay_factor, warmup_steps=warmup_steps, horizon=horizon)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
