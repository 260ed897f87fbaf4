"""The compute report's clock: training time only, so tokens/s and MFU are not diluted by probes and validation."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from bireco.lit.compute import ComputeReport, outside_training_time

PROBE_S = 0.3


def _report_after(work) -> float:
    """The seconds a report window counts around `work(trainer)`, which also spends a little training time."""
    report = ComputeReport(every_n_steps=1)
    report.device = torch.device("cpu")
    report.peak = None
    trainer = SimpleNamespace(callbacks=[report], is_global_zero=True, loggers=[])
    report._reset_totals()
    work(trainer, report)
    report._report(trainer, step=1)
    return report.total["seconds"]


def test_a_probe_inside_the_loop_is_not_training_time() -> None:
    def probe(trainer, report) -> None:
        with outside_training_time(trainer):
            time.sleep(PROBE_S)

    assert _report_after(probe) < PROBE_S / 3


def test_without_the_pause_the_probe_counts() -> None:
    """The control: the same sleep outside the context is counted, so the test above can fail."""
    assert _report_after(lambda trainer, report: time.sleep(PROBE_S)) >= PROBE_S


def test_a_probe_inside_validation_does_not_restart_the_clock() -> None:
    """Validation pauses the clock; a probe inside it must not resume it when it ends."""

    def validation_with_probe(trainer, report) -> None:
        report.on_validation_start(trainer, None)
        with outside_training_time(trainer):
            time.sleep(0.01)
        time.sleep(PROBE_S)  # still validation
        report.on_validation_end(trainer, None)

    assert _report_after(validation_with_probe) < PROBE_S / 3


def test_a_stage_without_a_report_runs_the_probe_unchanged() -> None:
    ran = []
    with outside_training_time(SimpleNamespace(callbacks=[])):
        ran.append(True)
    assert ran == [True]
