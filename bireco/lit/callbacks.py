"""Callbacks shared by the stages: periodic evaluations (retrieval probe, mteb probe) and parameter counts."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from bireco.eval.probe import RetrievalTask, retrieval_probe
from bireco.lit.compute import outside_training_time
from bireco.utils.io import atomic_write_text

log = logging.getLogger(__name__)


class PeriodicEval(L.Callback):
    """Evaluates every `every_n_steps` optimizer steps, before the first and after the last step.

    Scores go to the loggers at the global step and to a jsonl file in the stage folder (the convergence curve
    the report plots). A resumed stage keeps the records it had before the interruption.
    """

    prefix = "eval"

    def __init__(self, every_n_steps: int, out_file: str | Path) -> None:
        self.every = every_n_steps
        self.out_file = Path(out_file)
        self.history: list[dict] = (
            [json.loads(line) for line in self.out_file.read_text().splitlines() if line.strip()]
            if self.out_file.is_file()
            else []
        )
        self._last_step = self.history[-1]["step"] if self.history else -1

    def evaluate(self, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        raise NotImplementedError

    @rank_zero_only
    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        with outside_training_time(trainer):
            metrics = self.evaluate(pl_module, step)
        self.history = [r for r in self.history if r["step"] < step]
        self.history.append({"step": step, "stage": pl_module.stage, **metrics})
        for lg in trainer.loggers:
            lg.log_metrics({f"{self.prefix}/{k}": v for k, v in metrics.items()}, step=step)
        atomic_write_text(self.out_file, "".join(json.dumps(r) + "\n" for r in self.history))
        log.info("%s @ step %d: %s", self.prefix, step, {k: round(v, 4) for k, v in metrics.items()})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._run(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run(trainer, pl_module)


class RetrievalProbe(PeriodicEval):
    """recall@1 / MRR@10 on a BEIR folder (the embedded default writes its held-out split as one): `probe/*`.

    Args:
        task_dir: BEIR folder.
        instruction: query instruction for the probe's queries.
        every_n_steps: 0 = only before and after training.
        out_file: the stage's `probe.jsonl`.
    """

    prefix = "probe"

    def __init__(
        self,
        task_dir: str | Path,
        instruction: str | None,
        every_n_steps: int,
        out_file: str | Path,
        max_queries: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(every_n_steps, out_file)
        self.task = RetrievalTask.load(task_dir, max_queries)
        self.instruction = instruction
        self.batch_size = batch_size

    def evaluate(self, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        per = retrieval_probe(pl_module.encoder, self.task, self.instruction, self.batch_size, per_query=True)
        self.last_per_query = {"step": step, "query_ids": self.task.query_ids, **per}
        return {k: sum(v) / max(len(v), 1) for k, v in per.items()}

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # the final weights' per-query scores: what a paired comparison across pipelines and seeds resamples
        if getattr(self, "last_per_query", None) is not None:
            atomic_write_text(self.out_file.with_name("probe_queries.json"), json.dumps(self.last_per_query))


class MtebProbe(PeriodicEval):
    """A short mteb task list through mteb's own evaluators (`mteb/<task>`, ×100), recomputed every time.

    The paper evaluates Stage II every 25 steps to show that Stage I makes it converge faster.

    Args:
        data_root: folder of task folders (`eval=local` layout).
        instructions: task name -> query instruction.
    """

    prefix = "mteb"

    def __init__(
        self,
        data_root: str | Path,
        instructions: dict[str, str | None],
        every_n_steps: int,
        out_file: str | Path,
        instruction_separator: str = ": ",
        batch_size: int = 64,
    ) -> None:
        from bireco.eval.local_tasks import discover_tasks

        super().__init__(every_n_steps, out_file)
        self.tasks = discover_tasks(Path(data_root))
        self.instructions = instructions
        self.separator = instruction_separator
        self.batch_size = batch_size

    def evaluate(self, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        import mteb
        from mteb.cache import ResultCache

        from bireco.eval.mteb_wrapper import MtebEncoder

        wrapper = MtebEncoder(
            pl_module.encoder,
            f"bireco/{pl_module.stage}",
            f"step-{step}",
            self.instructions,
            self.separator,
            self.batch_size,
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = mteb.evaluate(
                wrapper,
                self.tasks,
                cache=ResultCache(cache_path=tmp),
                overwrite_strategy="always",
                encode_kwargs={"batch_size": self.batch_size},
                show_progress_bar=False,
            )
        return {r.task_name: 100.0 * r.get_score() for r in result.task_results}


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
