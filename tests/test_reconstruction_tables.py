"""Reconstruction F1 per stage in the demo report (`bireco-report`) and in `bireco-table`'s output."""

from __future__ import annotations

import json
from pathlib import Path

from bireco.results.cli import report_main as main
from bireco.results.cli import write_table
from bireco.results.reconstruction import reconstruction_scores, reconstruction_table

PNG = b"\x89PNG\r\n\x1a\n"


def _score(stage: str, f1: float) -> dict:
    return {
        "stage": stage,
        "q2d": {"f1": f1, "f1_shuffled": f1 / 2, "loss": 2.0, "loss_shuffled": 3.0},
        "d2q": {"f1": f1 + 0.1, "f1_shuffled": f1 / 4, "loss": 1.5, "loss_shuffled": 2.5},
    }


def _run(root: Path, stages: list[str], f1s: list[float]) -> Path:
    """A run whose base is a warm-up folder with its own score, then one score per stage."""
    warm = root / "cache" / "warmup"
    (warm / "artifact").mkdir(parents=True)
    (warm / "reconstruction.json").write_text(json.dumps(_score("warmup", 0.125)))
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"model:\n  name: tiny\npipeline:\n  name: bireco\n  stages: [{', '.join(stages)}]\n"
    )
    res = {"model": "tiny", "pipeline": "bireco", "stages": stages, "stage_results": [], "probe": None, "seed": 42}
    (run / "results.json").write_text(json.dumps(res))
    for i, (stage, f1) in enumerate(zip(stages, f1s, strict=True)):
        d = run / "stages" / f"{i}-{stage}"
        d.mkdir(parents=True)
        init = str(warm / "artifact") if i == 0 else "prev"
        (d / "stage_done.json").write_text(json.dumps({"stage": stage, "init_from": init}))
        (d / "reconstruction.json").write_text(json.dumps(_score(stage, f1)))
    return run


def test_scores_in_stage_order_with_the_warm_up_first(tmp_path: Path) -> None:
    run = _run(tmp_path, ["reconstruction", "contrastive"], [0.5, 0.25])
    scores = reconstruction_scores(run)
    assert [s for s, _ in scores] == ["warmup", "reconstruction", "contrastive"]
    assert reconstruction_table([("bireco", scores)]).splitlines() == [
        "| run | after | q2d F1 | q2d F1 shuffled | d2q F1 | d2q F1 shuffled | q2d loss | d2q loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        "| bireco | warmup | 0.1250 | 0.0625 | 0.2250 | 0.0312 | 2.0000 | 1.5000 |",
        "| bireco | reconstruction | 0.5000 | 0.2500 | 0.6000 | 0.1250 | 2.0000 | 1.5000 |",
        "| bireco | contrastive | 0.2500 | 0.1250 | 0.3500 | 0.0625 | 2.0000 | 1.5000 |",
    ]


def test_report_prints_the_table_and_bireco_table_writes_it_with_a_plot(tmp_path: Path, capsys) -> None:
    run = _run(tmp_path, ["reconstruction", "contrastive"], [0.5, 0.25])
    main([str(run)])
    printed = capsys.readouterr().out
    assert "| bireco seed 42 | reconstruction | 0.5000 | 0.2500 |" in printed
    write_table([run], tmp_path / "out")
    assert (tmp_path / "out" / "reconstruction.md").read_text().splitlines()[3].startswith("| tiny / bireco | recon")
    assert (tmp_path / "out" / "plots" / "reconstruction.png").read_bytes().startswith(PNG)


def test_runs_without_scores_print_no_table(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    (run / "stages" / "0-contrastive").mkdir(parents=True)
    (run / "stages" / "0-contrastive" / "stage_done.json").write_text("{}")
    (run / "results.json").write_text(
        json.dumps({"pipeline": "baseline", "stages": ["contrastive"], "stage_results": [], "seed": 1})
    )
    assert reconstruction_scores(run) == []
    main([str(run)])
    assert "Reconstruction" not in capsys.readouterr().out
