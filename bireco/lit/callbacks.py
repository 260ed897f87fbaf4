"""Callbacks shared by the stages: the retrieval probe and the parameter-count record."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from bireco.eval.probe import RetrievalTask, retrieval_probe
from bireco.utils.io import atomic_write_text

log = logging.getLogger(__name__)


class RetrievalProbe(L.Callback):
    """Scores retrieval every `every_n_steps` optimizer steps (and before the first and after the last step).

    Results go to the loggers as `probe/<metric>` at the global step and to `probe.jsonl` in the stage folder,
    which the report and the convergence plot read.

    Args:
        task_dir: BEIR folder (the embedded default writes its held-out split as one).
        instruction: query instruction for the probe's queries.
        every_n_steps: 0 = only before and after training.
        out_file: where to append results.
    """

    def __init__(
        self,
        task_dir: str | Path,
        instruction: str | None,
        every_n_steps: int,
        out_file: str | Path,
        max_queries: int | None = None,
        batch_size: int = 64,
    ) -> None:
        self.task = RetrievalTask.load(task_dir, max_queries)
        self.instruction = instruction
        self.every = every_n_steps
        self.out_file = Path(out_file)
        self.batch_size = batch_size
        # a resumed stage keeps the curve it had before the interruption
        self.history: list[dict] = (
            [json.loads(line) for line in self.out_file.read_text().splitlines() if line.strip()]
            if self.out_file.is_file()
            else []
        )
        self._last_step = self.history[-1]["step"] if self.history else -1

    @rank_zero_only
    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        self.history = [r for r in self.history if r["step"] < step]
        metrics = retrieval_probe(pl_module.encoder, self.task, self.instruction, self.batch_size)
        record = {"step": step, "stage": pl_module.stage, **metrics}
        self.history.append(record)
        for lg in trainer.loggers:
            lg.log_metrics({f"probe/{k}": v for k, v in metrics.items()}, step=step)
        atomic_write_text(self.out_file, "".join(json.dumps(r) + "\n" for r in self.history))
        log.info("probe @ step %d: %s", step, {k: round(v, 4) for k, v in metrics.items()})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._run(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run(trainer, pl_module)


class ParamCounts(L.Callback):
    """Logs total / trainable parameter counts once, as hyperparameters (wandb summary, CSV hparams)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        counts = pl_module.param_counts()
        for lg in trainer.loggers:
            lg.log_hyperparams(counts)
        log.info(
            "%s: %s parameters, %s trainable",
            pl_module.stage,
            f"{counts['params/total']:,}",
            f"{counts['params/trainable']:,}",
        )
