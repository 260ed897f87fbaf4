"""`bireco-report RUNS_DIR`: the demo's printed comparison (machine, seeds table, paired Δ, verdict)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bireco.results.cli import report
from bireco.results.cli import report_main as main
from bireco.results.records import TableInputError
from tests.results_fixtures import write_run


def test_main_prints_machine_table_and_verdict(tmp_path: Path, capsys) -> None:
    for seed in (1, 2):
        write_run(tmp_path, "bireco", seed, [0.5, 1.0, 0.25, 1.0], gain=0.12, mteb=40.0)
        write_run(tmp_path, "baseline", seed, [0.5, 0.5, 0.25, 0.0], mteb=30.0)
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert out.startswith("Machine: ") and " cores, torch " in out.splitlines()[0]
    assert "| bireco | 2 (1, 2) | 0.500 ± 0.000 | 0.688 ± 0.000 | 10 ± 0 | — | 0.1200 ± 0.0000 |" in out
    assert "| baseline | 2 × 4 | +0.375 [95% CI" in out
    assert "Verdict: bireco is better than baseline" in out or "no difference shown" in out


def test_main_refuses_a_folder_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One line each, `bireco-report: error: ...`, exit status 2 (was exit 1 without `error:`)."""
    for folder, line in (
        (tmp_path, f"no finished run (results.json) under {tmp_path}"),
        (tmp_path / "absent", f"{tmp_path / 'absent'}: no such folder"),
    ):
        with pytest.raises(SystemExit) as info:
            main([str(folder)])
        assert info.value.code == 2 and capsys.readouterr().err == f"bireco-report: error: {line}\n"
    with pytest.raises(SystemExit) as usage:  # argparse: the usage on stderr, exit status 2
        main([])
    assert usage.value.code == 2


def test_the_library_function_raises_instead_of_exiting(tmp_path: Path) -> None:
    """`report()` is importable: a folder without runs is an exception the caller can catch (was SystemExit)."""
    with pytest.raises(TableInputError, match="no finished run"):
        report(tmp_path)
    write_run(tmp_path, "baseline", 1, [0.5])
    assert report(tmp_path).startswith("Machine: ")


def test_with_out_the_curves_per_seed_are_drawn_next_to_the_report(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for seed in (1, 2):
        run = write_run(runs, "bireco", seed, [0.5, 1.0], gain=0.12)
        write_run(runs, "baseline", seed, [0.5, 0.5])
        logs = run / "stages" / "0-reconstruction" / "logs"
        logs.mkdir()
        (logs / "metrics.csv").write_text("epoch,step,train/anchor_gain\n0,0,0.0\n0,10,0.05\n0,20,0.12\n")
        (run / "stages" / "1-contrastive" / "probe.jsonl").write_text(
            '{"step": 0, "mrr@10": 0.2}\n{"step": 10, "mrr@10": 0.5}\n'
        )
    out = tmp_path / "report" / "report.md"
    out.parent.mkdir()
    main([str(runs), "--out", str(out)])
    png = out.with_name("curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Curves (one line per seed): {png}" in out.read_text()
    # without curves to draw (no logs), no figure and no line
    bare = tmp_path / "bare"
    write_run(bare, "baseline", 1, [0.5])
    main([str(bare), "--out", str(tmp_path / "bare.md")])
    assert not (tmp_path / "curves.png").exists() and "Curves" not in (tmp_path / "bare.md").read_text()


def test_main_refuses_an_out_that_cannot_be_the_report_before_drawing_the_curves(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Was an IsADirectoryError traceback after `curves.png` had been written next to --out."""
    runs = tmp_path / "runs"
    run = write_run(runs, "bireco", 1, [0.5, 1.0], gain=0.12)
    logs = run / "stages" / "0-reconstruction" / "logs"
    logs.mkdir()
    (logs / "metrics.csv").write_text("epoch,step,train/anchor_gain\n0,0,0.0\n0,10,0.12\n")
    folder, file = tmp_path / "existing_dir", tmp_path / "a_file"
    folder.mkdir()
    file.write_text("mine\n")
    before = sorted(tmp_path.rglob("*"))
    for out, line in (
        (folder, f"--out {folder}: is a folder (the report is a file: name it, e.g. {folder / 'report.md'})"),
        (file / "report.md", f"--out {file / 'report.md'}: {file} exists and is not a folder"),
    ):
        with pytest.raises(SystemExit) as info:
            main([str(runs), "--out", str(out)])
        assert info.value.code == 2 and capsys.readouterr().err == f"bireco-report: error: {line}\n"
    assert sorted(tmp_path.rglob("*")) == before and file.read_text() == "mine\n"
