"""The demo's comparison over seeds: spreads, paired intervals against bireco, missing seeds, the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from bireco.results.compare import collect, paired, render, summary_rows, verdict
from tests.results_fixtures import write_run

Q = 8  # held-out queries per run


@pytest.fixture
def runs(tmp_path: Path):
    for seed, shift in ((1, 0.0), (2, 0.1), (3, -0.1)):
        base = [0.2 + shift] * Q
        bireco_mrr = [min(1.0, x + 0.3) for x in base]
        stage1 = {"gain": 0.2 + shift, "stage1_hit": 0.3 + shift, "stage1_steps": 300 + int(500 * shift)}
        if seed == 3:  # its q2d F1 loses to the shuffled control
            stage1["f1"] = {"q2d": (0.25, 0.3), "d2q": (0.4, 0.1)}
        write_run(tmp_path, "bireco", seed, bireco_mrr, mteb=40 + 10 * shift, **stage1)
        write_run(tmp_path, "baseline", seed, base, mteb=30 + 10 * shift)
    # one seed only: identical to bireco seed 1 at the end, at chance after Stage I
    write_run(tmp_path, "anchor_control", 1, [0.5] * Q, gain=0.001, stage1_hit=0.0, stage1_steps=600)
    return collect(tmp_path)


def test_each_pipeline_reports_mean_sd_and_its_seeds(runs) -> None:
    rows = {r["pipeline"]: r for r in summary_rows(runs)}
    assert list(runs) == ["bireco", "baseline", "anchor_control"]  # the method first, then its comparisons
    assert rows["bireco"]["mrr@10"].mean == pytest.approx(0.5) and rows["bireco"]["mrr@10"].sd == pytest.approx(0.1)
    assert rows["bireco"]["anchor_gain"].n == 3 and rows["baseline"]["anchor_gain"] is None
    assert rows["anchor_control"]["missing_seeds"] == [2, 3]
    assert rows["baseline"]["mteb"].mean == pytest.approx(30.0)
    assert rows["bireco"]["stage1_hit@1"].mean == pytest.approx(0.3) and rows["bireco"]["stage1_hit@1"].n == 3
    assert rows["anchor_control"]["stage1_hit@1"].mean == 0.0 and rows["baseline"]["stage1_hit@1"] is None
    # Stage I's length per seed (the anchor-gain stop can end it before max_steps)
    assert (rows["bireco"]["stage1_steps"].mean, rows["bireco"]["stage1_steps"].sd) == pytest.approx((300, 50))
    assert rows["anchor_control"]["stage1_steps"].mean == 600 and rows["baseline"]["stage1_steps"] is None
    # counted per seed: seed 3's q2d loses although the mean over seeds wins (0.417 vs 0.233)
    assert rows["bireco"]["f1_q2d_wins"] == (2, 3) and rows["bireco"]["f1_d2q_wins"] == (3, 3)
    assert rows["baseline"]["f1_q2d_wins"] == (0, 0)


def test_differences_are_paired_over_seeds_and_queries(runs) -> None:
    d = paired(runs, "bireco", "baseline", "mrr@10")
    assert d.delta == pytest.approx(0.3) and (d.low, d.high) == pytest.approx((0.3, 0.3)) and not d.includes_zero
    assert (d.seeds, d.units) == (3, Q)
    same = paired(runs, "bireco", "anchor_control", "mrr@10")
    assert same.seeds == 1 and same.delta == pytest.approx(0.0) and same.includes_zero


def test_rendered_table_labels_one_seed_lists_missing_ones_and_states_the_verdict(runs) -> None:
    text = render(runs)
    assert "| anchor_control | 1 (1) — one seed; missing [2, 3] |" in text
    bireco = "| bireco | 3 (1, 2, 3) | 0.000 ± 0.000 | 0.500 ± 0.100 | 300 ± 50 | 0.300 ± 0.100 | 0.2000 ± 0.1000 |"
    assert bireco in text
    assert "| baseline | 3 (1, 2, 3) | 0.000 ± 0.000 | 0.200 ± 0.100 | — | — | — | — | — |" in text
    assert "| q2d 2 of 3, d2q 3 of 3 |" in text
    assert "| baseline | 3 × 8 | +0.300 [95% CI +0.300, +0.300] |" in text
    assert "| anchor_control | 1 × 8 | +0.000 [95% CI +0.000, +0.000] (includes 0) |" in text
    assert verdict(runs) in text
    assert verdict(runs).startswith("Verdict: bireco is better than baseline: Δ MRR@10 = +0.300")


def test_no_common_seed_is_said_not_guessed(tmp_path: Path) -> None:
    write_run(tmp_path, "bireco", 1, [0.5] * Q, gain=0.1)
    write_run(tmp_path, "baseline", 2, [0.2] * Q)
    assert "no bireco and baseline runs on common seeds" in verdict(collect(tmp_path))


def test_the_reconstruction_gap_is_paired_over_seeds_and_held_out_pairs(tmp_path: Path) -> None:
    """Seed 1's rows gain 0.1 each, seed 2's 0.3: the gap is 0.2 and resampling seeds can only give 0.1, 0.2 or 0.3;
    the control's rows gain +0.25 and −0.25 in turn (mean 0, as a greedy decode that carries nothing)."""
    rows = 8
    for seed, gain in ((1, 0.1), (2, 0.3)):
        q2d = ([0.2 + gain] * rows, [0.2] * rows)
        write_run(tmp_path, "bireco", seed, [0.5] * Q, gain=0.2, f1_rows={"q2d": q2d, "d2q": q2d})
    noise = ([0.75, 0.25] * (rows // 2), [0.5] * rows)
    write_run(tmp_path, "anchor_control", 1, [0.5] * Q, gain=0.001, f1_rows={"q2d": noise, "d2q": noise})
    write_run(tmp_path, "baseline", 1, [0.2] * Q)
    runs = collect(tmp_path)
    by = {r["pipeline"]: r for r in summary_rows(runs)}
    gap = by["bireco"]["f1_q2d_gap"]
    assert gap.delta == pytest.approx(0.2) and (gap.low, gap.high) == pytest.approx((0.1, 0.3))
    assert (gap.seeds, gap.units) == (2, rows) and not gap.includes_zero
    assert by["bireco"]["f1_d2q_gap_by_seed"] == pytest.approx({1: 0.1, 2: 0.3})
    control = by["anchor_control"]["f1_q2d_gap"]
    assert control.delta == pytest.approx(0.0) and control.includes_zero and control.low < 0 < control.high
    assert by["baseline"]["f1_q2d_gap"] is None
    text = render(runs)
    assert "| bireco | 2 × 8 | +0.200 [95% CI +0.100, +0.300] | +0.200 [95% CI +0.100, +0.300] | " in text
    assert "1: +0.100 / +0.100; 2: +0.300 / +0.300 |" in text
    gap_table = text.split("F1 from the true embedding")[1]
    control_line = next(line for line in gap_table.splitlines() if line.startswith("| anchor_control |"))
    assert (
        control_line.startswith("| anchor_control | 1 × 8 | +0.000 [95% CI ")
        and control_line.count("(includes 0)") == 2
    )
    assert "| baseline |" not in gap_table


def test_runs_without_per_row_scores_show_no_gap_table(runs) -> None:
    assert "F1 from the true embedding" not in render(runs)
