"""A CSV logger that a resumed stage appends to, instead of deleting the interrupted run's rows.

Lightning's CSVLogger removes an existing `metrics.csv` when it starts, so a stage resumed after a kill would
lose the curve up to its checkpoint. Here the file is kept (with its header); rows are flushed every step, and
readers keep the last row per step (steps after the checkpoint are logged again by the resumed run).
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """`CSVLogger` that appends to the stage's `metrics.csv` across resumes."""

    @property
    @rank_zero_experiment  # as the base class: other ranks get a no-op writer and never touch the file
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
