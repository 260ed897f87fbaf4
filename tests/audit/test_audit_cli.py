"""`bireco-audit` end to end on small folders: audit.json, the table, run_dir, and one-line user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from bireco.audit import contamination_by_task
from bireco.cli import audit as main
from bireco.runs import AUDIT_FILE, Run
from tests.audit.fixtures import Planted, write_jsonl

QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def _run(monkeypatch: pytest.MonkeyPatch, out: Path, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bireco-audit", *args, f"hydra.run.dir={out}", *QUIET])
    main()


def _error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, out: Path, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _run(monkeypatch, out, *args)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    # what is left on screen: a cleared progress bar is overwritten (\r) by the error line
    err = [shown for line in stderr.split("\n") if (shown := line.rsplit("\r", 1)[-1]).strip()]
    assert len(err) == 1 and err[0].startswith("bireco-audit: error: "), stderr  # one line, no traceback
    return err[0]


def test_the_planted_overlap_is_in_audit_json_and_the_table(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    _run(monkeypatch, out, "data=local", f"data.path={planted.train}", f"eval.data_root={planted.tasks}")
    audit = json.loads((out / AUDIT_FILE).read_text())
    assert contamination_by_task(audit) == {
        "qa": {
            "n_queries": 2,
            "exact_queries": 1,
            "near_queries": 0,
            "n_corpus": 2,
            "exact_corpus": 0,
            "near_corpus": 1,
        },
        "sts": {
            "n_queries": 2,
            "exact_queries": 1,
            "near_queries": 0,
            "n_corpus": 2,
            "exact_corpus": 0,
            "near_corpus": 0,
        },
    }
    assert audit["train"]["rows"] == 2 and audit["train"]["rows_by_source"] == {"books": 1, "facts": 1}
    assert audit["train"]["texts_by_field"] == {"query": 2, "positive": 2, "negative": 1}
    s = audit["settings"]
    assert (s["library"], s["shingle_words"], s["jaccard_threshold"]) == ("datasketch", 5, 0.8)
    assert audit["eval"]["task_root"] == str(planted.tasks)
    # local tasks named like no mteb task: listed, never dropped; data=local names no mteb task for these sources
    assert audit["training_datasets"] == {
        "declared": [],
        "reasons": {},
        "overlapping_tasks_without_mteb_name": ["qa", "sts"],
    }
    printed = capsys.readouterr().out
    assert "│ qa " in printed and "│ sts " in printed and f"wrote {out / AUDIT_FILE}" in printed


def test_with_run_dir_it_audits_the_runs_data_into_the_run_folder(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    data = {"kind": "local", "name": "local", "path": str(planted.train), "sources": {"books": {"mteb_tasks": ["NQ"]}}}
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    _run(
        monkeypatch,
        tmp_path / "out",
        f"run_dir={run}",
        f"eval.data_root={planted.tasks}",
        "+audit.mteb_names.qa=SciFact",
    )
    audit = Run(run).audit()
    # the audit went into the run: Hydra's own folder for the invocation (only .hydra/) is not left behind
    assert audit is not None and not (tmp_path / "out").exists()
    assert audit["training_datasets"]["declared"] == ["NQ", "SciFact"]
    assert audit["training_datasets"]["overlapping_tasks_without_mteb_name"] == ["sts"]
    err = _error(
        monkeypatch, capsys, tmp_path / "out", f"run_dir={run}", "data=echo_e5", f"eval.data_root={planted.tasks}"
    )
    assert "audits the data that run trained on" in err and "data=echo_e5" in err
    err = _error(monkeypatch, capsys, tmp_path / "out", f"run_dir={tmp_path}", f"eval.data_root={planted.tasks}")
    assert f"run_dir={tmp_path}: not a bireco run" in err


def test_bad_input_ends_in_one_line_naming_the_file(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    bad = write_jsonl(tmp_path / "bad" / "train.jsonl", [{"query": "q", "positive": "p"}, {"query": "q"}])
    out = tmp_path / "out"
    err = _error(monkeypatch, capsys, out, "data=local", f"data.path={bad}", f"eval.data_root={planted.tasks}")
    assert f"{bad}:2: field 'positive'" in err
    assert "needs data.path" in _error(monkeypatch, capsys, out, "data=local", f"eval.data_root={planted.tasks}")
    missing = tmp_path / "nowhere"
    assert str(missing) in _error(
        monkeypatch, capsys, out, "data=local", f"data.path={planted.train}", f"eval.data_root={missing}"
    )
    assert "nothing to audit" in _error(
        monkeypatch, capsys, out, "data=local", f"data.path={planted.train}", "eval=none"
    )
    err = _error(
        monkeypatch,
        capsys,
        out,
        "data=local",
        f"data.path={planted.train}",
        f"eval.data_root={planted.tasks}",
        "+audit.mteb_names.qa=NotATask",
    )
    assert "not mteb task names: ['NotATask']" in err


def test_mteb_tasks_offline_end_in_the_hub_line(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    err = _error(monkeypatch, capsys, tmp_path / "out", "data=local", f"data.path={planted.train}", "eval=mteb_en")
    assert "task ArguAna: its data could not be reached" in err and "HF_HUB_OFFLINE" in err


def test_synthetic_data_is_audited_against_its_own_held_out_split(
    bireco_cache: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bireco-audit` alone: the generated world's training rows vs its held-out people (none is trained on)."""
    out = tmp_path / "out"
    small = ["data.world.n_train_entities=20", "data.world.n_heldout_entities=8", "data.world.n_heldout_queries=8"]
    _run(monkeypatch, out, f"paths.cache_dir={bireco_cache}", *small, "data.world.n_distractor_entities=2")
    audit = json.loads((out / AUDIT_FILE).read_text())
    assert audit["train"]["kind"] == "synthetic" and audit["train"]["rows"] > 0
    assert list(audit["tasks"]) == ["retrieval"] and audit["eval"]["task_root"].endswith("heldout")
    fields = audit["tasks"]["retrieval"]["fields"]
    assert fields["queries"]["n"] == 8 and fields["corpus"]["n"] > 0
    assert all(fields[f]["exact"] + fields[f]["near"] == 0 for f in ("queries", "corpus"))  # held-out: unseen names
