"""The audit of the shared training pairs against the shared task folders: structural truths of what it measures.

The measured counts themselves are reported in docs/audit.md, not asserted here (the data may be refreshed).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import mteb
import pytest

from bireco.audit import contamination_by_task
from bireco.audit.overlap import normal_form
from bireco.cli import audit as main
from bireco.eval.contamination import contaminated
from bireco.runs import AUDIT_FILE
from tests.shared_files import DATA


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as fh:
        return [line for line in fh if line.strip()]


@pytest.fixture(scope="module")
def shared_audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (DATA / "train_pairs").is_dir():
        pytest.skip(f"{DATA} not present: the shared training pairs and task folders live in ../shared/data")
    out = tmp_path_factory.mktemp("audit")
    argv = ["bireco-audit", "data=local", f"data.path={DATA / 'train_pairs'}", f"eval.data_root={DATA}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [*argv, f"hydra.run.dir={out}", "hydra/job_logging=none", "hydra/hydra_logging=none"])
        main()
    return json.loads((out / AUDIT_FILE).read_text())


def test_every_task_folder_is_audited_with_all_its_texts(shared_audit: dict) -> None:
    folders = {p.name for p in DATA.iterdir() if p.is_dir()} - {"train_pairs"}
    assert folders <= set(shared_audit["tasks"]) and set(contamination_by_task(shared_audit)) == set(
        shared_audit["tasks"]
    )
    if (DATA / "scifact" / "queries.jsonl").is_file():
        scifact = shared_audit["tasks"]["scifact"]["fields"]
        assert scifact["queries"]["n"] == len(_lines(DATA / "scifact" / "queries.jsonl"))
        assert scifact["corpus"]["n"] == len(_lines(DATA / "scifact" / "corpus.jsonl.gz"))
    for task in shared_audit["tasks"].values():
        for field in task["fields"].values():
            assert 0 <= field["exact"] + field["near"] <= field["n"]
            assert all(0 < k <= field["exact"] + field["near"] for k in field["by_source"].values())


def test_the_training_side_is_every_row_of_the_shared_pairs(shared_audit: dict) -> None:
    rows = [json.loads(line) for line in _lines(DATA / "train_pairs" / "train.jsonl.gz")]
    train = shared_audit["train"]
    assert train["rows"] == len(rows) and set(train["rows_by_source"]) == {r["source"] for r in rows}
    assert train["texts_by_field"]["negative"] == sum(1 for r in rows if r.get("negative"))
    for task in shared_audit["tasks"].values():
        for field in task["fields"].values():
            assert set(field["by_source"]) <= set(train["rows_by_source"])


def test_examples_are_what_their_kind_says(shared_audit: dict) -> None:
    threshold = shared_audit["settings"]["jaccard_threshold"]
    for task in shared_audit["tasks"].values():
        for field in task["fields"].values():
            for ex in field["examples"]:
                if ex["match"] == "exact" and not ex["text"].endswith("…"):
                    assert normal_form(ex["text"]) == normal_form(ex["train_text"])
                else:
                    assert ex["match"] == "exact" or threshold <= ex["jaccard"] < 1.0


def test_the_declaration_covers_every_overlap_and_uses_mteb_names(shared_audit: dict) -> None:
    decl = shared_audit["training_datasets"]
    for name in decl["declared"]:
        mteb.get_task(name)  # a real mteb task name
    for name, task in shared_audit["tasks"].items():
        if contaminated(task):
            assert task["mteb_name"] in decl["declared"] or name in decl["overlapping_tasks_without_mteb_name"]
    # data=local names the mteb origin of the shared mixture's sources: declared whenever the source has rows
    assert {"TwitterURLCorpus", "ClimateFEVER", "STSBenchmark"} <= set(decl["declared"])
