"""Stage I's anchor gain on the training stream (`train/anchor_gain`), and a stop once the anchor carries the text.

Stage I's mechanism is a phase transition (docs/results.md): the anchor gain — how much worse a text is decoded
from another pair's embedding than from its own — sits at 0 until the decoder starts reading the embedding, then
rises. When the transition comes depends on the seed and on the CPU's kernels, so a fixed `max_steps` either stops
before it or spends steps after it. `AnchorGainMonitor` measures the gain every `every_n_steps` optimizer steps on
the training batch *about to be trained on* (no gradients, dropout off, under the trainer's precision): in the
first epoch rows the model has not yet stepped on (later ones it has, an epoch earlier), and no held-out data —
the held-out people are the retrieval probe's, so a stop decided on them would select the model on the probe.
With `stop_at` set, the stage ends after the step at which the mean of the last `window` measurements reaches
it; `max_steps` is then the cap. The stage record says which ended it.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from bireco.lit.compute import outside_training_time
from bireco.stage_settings import AnchorGainSettings

log = logging.getLogger(__name__)


class AnchorGainMonitor(L.Callback):
    """Logs `train/anchor_gain` (nats/token, α-weighted over the directions) and, with `stop_at`, ends the stage
    once the mean of the last `window` measurements reaches it. Needs a loss with `anchor_gain(encoder, batch)`
    (`BidirectionalReconstruction`). Under DDP the gain is averaged over ranks, so every rank stops at the same
    step; under accumulation the first micro-batch of an optimizer step is measured. It calls the encoder outside
    the strategy's wrapper, so FSDP is refused (`bireco.config`).

    Args:
        settings: `stages.<name>.anchor_gain` (every_n_steps, stop_at, window).
    """

    def __init__(self, settings: AnchorGainSettings) -> None:
        self.settings = settings
        self.history: list[tuple[int, float]] = []  # (optimizer step, gain) — the steps before they trained
        self.stopped_at: int | None = None

    @property
    def state_key(self) -> str:
        return "AnchorGainMonitor"

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(g)) for s, g in state["history"]]
        self.stopped_at = state["stopped_at"]

    def recent_mean(self) -> float | None:
        """Mean gain over the last `window` measurements; None until there are that many."""
        w = self.settings.window
        return sum(g for _, g in self.history[-w:]) / w if len(self.history) >= w else None

    def _stop_due(self, step: int) -> bool:
        """The last measurement's step has been applied (never mid-accumulation) and the recent mean reached
        `stop_at`. Read from the state alone, so a checkpoint saved between the measurement and the stop (a
        preemption at that step) resumes into the same stop."""
        mean = self.recent_mean()
        stop_at = self.settings.stop_at
        return (
            self.stopped_at is None
            and stop_at is not None
            and mean is not None
            and step > self.history[-1][0]
            and mean >= stop_at
        )

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped_at = trainer.global_step
        trainer.should_stop = True
        log.info(
            "stage '%s': anchor gain %.4f (mean of the last %d checks) >= %s: stopping after %d steps",
            pl_module.stage,
            self.recent_mean(),
            self.settings.window,
            self.settings.stop_at,
            self.stopped_at,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopped_at is not None:  # resumed from a checkpoint written after the stop
            trainer.should_stop = True
        elif self._stop_due(trainer.global_step):  # resumed from one written at the stop, before it was recorded
            self._stop(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.settings.every_n_steps or (self.history and self.history[-1][0] >= step):
            return
        with outside_training_time(trainer):
            modes = {m: m.training for m in pl_module.modules()}  # restored module by module (some may be in eval)
            pl_module.eval()
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                gain = pl_module.objective.anchor_gain(pl_module.encoder, batch).detach().float()
            for m, training in modes.items():
                m.training = training
            gain = float(trainer.strategy.reduce(gain, reduce_op="mean"))
        self.history.append((step, gain))
        for lg in trainer.loggers:
            lg.log_metrics({"train/anchor_gain": gain}, step=step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._stop_due(trainer.global_step):
            self._stop(trainer, pl_module)

    def summary(self) -> dict[str, Any]:
        """What the stage record keeps: the settings, where it stopped (None = max_steps) and the last mean."""
        return {
            "every_n_steps": self.settings.every_n_steps,
            "stop_at": self.settings.stop_at,
            "window": self.settings.window,
            "stopped_at": self.stopped_at,
            "mean": self.recent_mean(),
            "last": self.history[-1][1] if self.history else None,
        }
