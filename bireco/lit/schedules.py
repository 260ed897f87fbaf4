"""Learning-rate schedules a stage's YAML can name (`scheduler: {_target_: ..., _partial_: true}`): each takes
the optimizer and the stage's optimizer-step count and returns a per-step scheduler."""

from __future__ import annotations

import torch
from transformers import get_linear_schedule_with_warmup


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
    return get_linear_schedule_with_warmup(optimizer, warmup_steps, horizon)
