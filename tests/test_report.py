from __future__ import annotations

import json
from pathlib import Path

from bireco.report import comparison_table, load_result, main


def _result(pipeline: str, stages: list[str], r1: float, mrr: float, gain: float | None) -> dict:
    stage_results = []
    if "reconstruction" in stages:
        stage_results.append({"stage": "reconstruction", "steps": 300, "metrics": {"val/anchor_gain": gain}})
    stage_results.append({"stage": "contrastive", "steps": 200, "metrics": {}})
    return {
        "pipeline": pipeline,
        "stages": stages,
        "stage_results": stage_results,
        "probe": {"recall@1": r1, "mrr@10": mrr},
    }


def test_comparison_table_exact(tmp_path: Path) -> None:
    table = comparison_table(
        [
            _result("bireco", ["reconstruction", "contrastive"], 0.25, 0.375, 0.0123),
            _result("baseline", ["contrastive"], 0.125, 0.2, None),
            load_result(tmp_path / "absent"),
        ]
    )
    assert table.splitlines() == [
        "| pipeline | stages | recall@1 | MRR@10 | Stage I anchor gain | Stage II steps |",
        "|---|---|---|---|---|---|",
        "| bireco | reconstruction → contrastive | 0.2500 | 0.3750 | 0.0123 | 200 |",
        "| baseline | contrastive | 0.1250 | 0.2000 | — | 200 |",
        f"| absent | missing: no results.json in {tmp_path / 'absent'} | | | | |",
    ]


def test_main_reads_run_dirs(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_result("baseline", ["contrastive"], 0.5, 0.5, None)))
    main([str(run)])
    assert "| baseline | contrastive | 0.5000 | 0.5000 |" in capsys.readouterr().out


def test_mteb_average_column_when_bireco_eval_ran(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(_result("bireco", ["reconstruction", "contrastive"], 0.5, 0.5, 0.1)))
    (run / "eval" / "summary.json").write_text(json.dumps({"average": 41.9491, "tasks": {}}))
    table = comparison_table([load_result(run), load_result(tmp_path / "gone")])
    assert table.splitlines()[0].endswith("| Stage II steps | mteb average |")
    assert table.splitlines()[2].endswith("| 0.1000 | 200 | 41.95 |")
    assert table.splitlines()[3].endswith("| | | | | |")
