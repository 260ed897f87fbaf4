from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bireco.results.cli import table_main as main
from bireco.results.cli import write_table
from bireco.results.records import collect_runs, read_run
from bireco.results.render import render_latex
from bireco.results.table import build_rows, load_paper_table

CATS = ["Retrieval", "Reranking", "Clustering", "PairClassification", "Classification", "STS", "Summarization"]
# paper numbers + 1.00 (baseline) and − 0.50 (bireco): ours − paper is exact by hand
BASELINE = [51.06, 55.94, 45.38, 83.71, 73.17, 82.27, 30.94, 61.99]
BIRECO = [52.10, 56.15, 44.25, 84.98, 71.97, 81.60, 30.37, 61.74]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(root: Path, model: str, pipeline: str, stages: list[str], results: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(
        f"model:\n  name: {model}\npipeline:\n  name: {pipeline}\n  stages: [{', '.join(stages)}]\nseed: 42\n"
    )
    (root / ".hydra").mkdir()  # Hydra's own config.yaml must not make a second run
    (root / ".hydra" / "config.yaml").write_text("model: {name: decoy}\n")
    if results:
        stage_results = [{"stage": s, "steps": 10, "metrics": {}, "probe": None} for s in stages]
        res = {"model": model, "pipeline": pipeline, "stages": stages, "stage_results": stage_results, "seed": 42}
        (root / "results.json").write_text(json.dumps(res))
    return root


def _summary(run: Path, categories: dict[str, float], average: float) -> None:
    tasks = {f"{c}Task": {"category": c, "main_score": v, "metric": "m"} for c, v in categories.items()}
    summary = {"tasks": tasks, "categories": categories, "average": average, "settings": {}}
    (run / "eval").mkdir()
    (run / "eval" / "summary.json").write_text(json.dumps(summary))


def _curves(run: Path, stages: list[str], r1: list[float]) -> None:
    for i, stage in enumerate(stages):
        d = run / "stages" / f"{i}-{stage}"
        (d / "logs").mkdir(parents=True)
        (d / "stage_done.json").write_text("{}")
        if stage == "reconstruction":
            rows = ["epoch,step,train/loss,train/loss_d2q,train/loss_q2d,val/anchor_gain,val/loss"]
            rows += [f"0,{s},{6 - s / 10},{5 - s / 10},{7 - s / 10},," for s in (4, 9)] + ["0,9,,,,0.5,4.0"]
        else:
            rows = ["epoch,lr-AdamW,step,train/loss", ",0.001,4,", "0,,4,3.5", "0,,9,2.5"]
        (d / "logs" / "metrics.csv").write_text("\n".join(rows) + "\n")
        probe = [{"step": 5 * k, "stage": stage, "recall@1": v, "mrr@10": v + 0.1} for k, v in enumerate(r1)]
        (d / "probe.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probe))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep with two ok paper rows, a 2-category tiny run, a failed, an unevaluated and nested layouts."""
    root = tmp_path / "sweep"
    base = _run(root / "llama3.2-1b" / "baseline" / "2025-01-01_00-00-00", "llama3.2-1b", "baseline", ["contrastive"])
    _summary(base, dict(zip(CATS, BASELINE[:7], strict=True)), BASELINE[7])
    _curves(base, ["contrastive"], [0.1, 0.2, 0.3])
    bireco = _run(
        root / "llama3.2-1b" / "bireco" / "2025-01-01_00-00-00",
        "llama3.2-1b",
        "bireco",
        ["reconstruction", "contrastive"],
    )
    _summary(bireco, dict(zip(CATS, BIRECO[:7], strict=True)), BIRECO[7])
    _curves(bireco, ["reconstruction", "contrastive"], [0.2, 0.4, 0.5])
    tiny = _run(root / "multirun" / "model=tiny", "tiny", "bireco", ["reconstruction", "contrastive"])
    _summary(tiny, {"Retrieval": 41.95, "STS": 60.5}, 51.23)
    failed = _run(root / "multirun" / "q2d", "llama3.2-1b", "only_q2d", ["reconstruction", "contrastive"], False)
    err = {"error": "CUDA out of memory", "stage": "reconstruction", "traceback": "..."}
    (failed / "failed.json").write_text(json.dumps(err))
    _run(root / "multirun" / "d2q", "llama3.2-1b", "only_d2q", ["reconstruction", "contrastive"])
    return root


EXPECTED_MD = """\
## MTEB (test)

| model | pipeline | Retr | Rerank | Clust | PairCls | Class | STS | Summ | Avg | note |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
| llama3.2-1b | baseline | 51.06 | 55.94 | 45.38 | 83.71 | 73.17 | 82.27 | 30.94 | 61.99 | one seed (42) |
|  | ↳ paper | 50.06 | 54.94 | 44.38 | 82.71 | 72.17 | 81.27 | 29.94 | 60.99 |  |
|  | ↳ ours − paper | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 |  |
| llama3.2-1b | bireco | 52.10 | 56.15 | 44.25 | 84.98 | 71.97 | 81.60 | 30.37 | 61.74 | one seed (42) |
|  | ↳ paper | 52.60 | 56.65 | 44.75 | 85.48 | 72.47 | 82.10 | 30.87 | 62.24 |  |
|  | ↳ ours − paper | -0.50 | -0.50 | -0.50 | -0.50 | -0.50 | -0.50 | -0.50 | -0.50 |  |
|  | Δ bireco − baseline | +1.04 | +0.21 | -1.13 | +1.27 | -1.20 | -0.67 | -0.57 | -0.25 [-0.81, +0.55]† | paired over 1 seed and the tasks |
| llama3.2-1b | only_q2d | — | — | — | — | — | — | — | — | failed: CUDA out of memory (stage reconstruction) (seed 42) |
|  | ↳ paper | — | — | — | — | — | — | — | 61.62 |  |
| llama3.2-1b | only_d2q | — | — | — | — | — | — | — | — | missing: no eval/summary.json (training finished) (seed 42) |
|  | ↳ paper | — | — | — | — | — | — | — | 61.38 |  |
| qwen2.5-1.5b | bireco | — | — | — | — | — | — | — | — | missing: no run directory |
|  | ↳ paper | 53.62 | 57.63 | 43.19 | 85.77 | 74.51 | 82.74 | 31.61 | 62.86 |  |
| tiny | bireco | 41.95 | — | — | — | — | 60.50 | — | 51.23 | one seed (42) |

mean ± sd over seeds; Δ = pipeline − baseline with a paired 95% bootstrap interval (seeds, then the column's tasks, resampled; none from fewer than 5 seed × task pairs); † the interval includes 0.
"""


def test_markdown_exact(sweep: Path, tmp_path: Path) -> None:
    md = write_table([sweep], tmp_path / "out", expect=["qwen2.5-1.5b:bireco"], title="MTEB (test)")
    assert md == EXPECTED_MD
    assert (tmp_path / "out" / "table.md").read_text() == EXPECTED_MD


def test_csv_exact(sweep: Path, tmp_path: Path) -> None:
    import csv

    write_table([sweep], tmp_path / "out", expect=["qwen2.5-1.5b:bireco"])
    run = sweep.resolve()
    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    cols = ["Retr", "Rerank", "Clust", "PairCls", "Class", "STS", "Summ", "Avg"]
    got = [(r["kind"], r["model"], r["pipeline"], r["n_seeds"], *(r[c] for c in cols), r["reason"]) for r in rows]
    assert got == [
        (
            "ours",
            "llama3.2-1b",
            "baseline",
            "1",
            "51.06",
            "55.94",
            "45.38",
            "83.71",
            "73.17",
            "82.27",
            "30.94",
            "61.99",
            "one seed (42)",
        ),
        (
            "paper",
            "llama3.2-1b",
            "baseline",
            "",
            "50.06",
            "54.94",
            "44.38",
            "82.71",
            "72.17",
            "81.27",
            "29.94",
            "60.99",
            "",
        ),
        ("ours_minus_paper", "llama3.2-1b", "baseline", "", *["1.00"] * 8, ""),
        (
            "ours",
            "llama3.2-1b",
            "bireco",
            "1",
            "52.10",
            "56.15",
            "44.25",
            "84.98",
            "71.97",
            "81.60",
            "30.37",
            "61.74",
            "one seed (42)",
        ),
        (
            "paper",
            "llama3.2-1b",
            "bireco",
            "",
            "52.60",
            "56.65",
            "44.75",
            "85.48",
            "72.47",
            "82.10",
            "30.87",
            "62.24",
            "",
        ),
        ("ours_minus_paper", "llama3.2-1b", "bireco", "", *["-0.50"] * 8, ""),
        (
            "delta",
            "llama3.2-1b",
            "Δ bireco − baseline",
            "1",
            "1.04",
            "0.21",
            "-1.13",
            "1.27",
            "-1.20",
            "-0.67",
            "-0.57",
            "-0.25",
            "paired over 1 seed and the tasks",
        ),
        ("failed", "llama3.2-1b", "only_q2d", "", *[""] * 8, "CUDA out of memory (stage reconstruction) (seed 42)"),
        ("paper", "llama3.2-1b", "only_q2d", "", *[""] * 7, "61.62", ""),
        ("missing", "llama3.2-1b", "only_d2q", "", *[""] * 8, "no eval/summary.json (training finished) (seed 42)"),
        ("paper", "llama3.2-1b", "only_d2q", "", *[""] * 7, "61.38", ""),
        ("missing", "qwen2.5-1.5b", "bireco", "", *[""] * 8, "no run directory"),
        (
            "paper",
            "qwen2.5-1.5b",
            "bireco",
            "",
            "53.62",
            "57.63",
            "43.19",
            "85.77",
            "74.51",
            "82.74",
            "31.61",
            "62.86",
            "",
        ),
        ("ours", "tiny", "bireco", "1", "41.95", "", "", "", "", "60.50", "", "51.23", "one seed (42)"),
    ]
    assert rows[0]["run_dir"] == f"{run}/llama3.2-1b/baseline/2025-01-01_00-00-00"
    delta = rows[6]
    assert (delta["Avg_lo"], delta["Avg_hi"]) == ("-0.81", "0.55") and delta["Retr_lo"] == ""  # one task: none


def test_seeds_are_averaged_with_sd_and_the_delta_is_paired(tmp_path: Path) -> None:
    """Three baseline seeds, two bireco seeds (one failed): mean ± sd, the missing seed named, a paired Δ."""
    tasks = ["A", "B", "C", "D"]
    for seed, shift in ((1, 0.0), (2, 2.0), (3, 4.0)):
        base = _run(tmp_path / "baseline" / f"seed-{seed}", "tiny", "baseline", ["contrastive"])
        _tasks_summary(base, {t: 50.0 + shift + i for i, t in enumerate(tasks)}, seed)
        rec = _run(
            tmp_path / "bireco" / f"seed-{seed}", "tiny", "bireco", ["reconstruction", "contrastive"], seed != 3
        )
        _set_seed(rec, seed)
        if seed == 3:
            (rec / "failed.json").write_text(json.dumps({"error": "boom", "stage": "contrastive"}))
        else:
            _tasks_summary(rec, {t: 53.0 + shift + i + (0.5 if i % 2 else -0.5) for i, t in enumerate(tasks)}, seed)
    md = write_table([tmp_path], tmp_path / "out", paper_table=tmp_path / "absent.csv")
    lines = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ")}
    assert "| tiny | baseline | 53.50 ± 2.00 |" in lines["baseline"] and "3 seeds (1, 2, 3)" in lines["baseline"]
    assert "| tiny | bireco | 55.50 ± 1.41 |" in lines["bireco"]
    assert "2 seeds (1, 2); missing seeds 3 (failed)" in lines["bireco"]
    delta = lines["Δ bireco − baseline"]
    # per seed: +3 on every task, ±0.5 alternating -> Δ +3.00; resampling only moves it by the ±0.5 pattern
    cell = delta.split(" | ")[2]  # "+3.00 [lo, hi]": the ±0.5 task pattern is all the resampling can move
    lo, hi = (float(x) for x in cell.split("[")[1].rstrip("]").split(", "))
    assert cell.startswith("+3.00 [") and 2.5 <= lo < 3.0 < hi <= 3.5 and "†" not in cell
    assert "paired over 2 seeds and the tasks" in delta


def _set_seed(run: Path, seed: int) -> None:
    text = (run / "config.yaml").read_text().replace("seed: 42", f"seed: {seed}")
    (run / "config.yaml").write_text(text)
    if (run / "results.json").is_file():
        res = json.loads((run / "results.json").read_text())
        (run / "results.json").write_text(json.dumps({**res, "seed": seed}))


def _tasks_summary(run: Path, scores: dict[str, float], seed: int) -> None:
    _set_seed(run, seed)
    tasks = {t: {"category": "Retrieval", "main_score": v, "metric": "m"} for t, v in scores.items()}
    avg = sum(scores.values()) / len(scores)
    (run / "eval").mkdir()
    (run / "eval" / "summary.json").write_text(
        json.dumps({"tasks": tasks, "categories": {"Retrieval": avg}, "average": avg, "settings": {}})
    )


def test_latex(sweep: Path, tmp_path: Path) -> None:
    write_table([sweep], tmp_path / "out", expect=["qwen2.5-1.5b:bireco"])
    tex = (tmp_path / "out" / "table.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llrrrrrrrrl}", r"\end{tabular}"):
        assert rule in tex
    assert r" & ours $-$ paper & $-$0.50 & $-$0.50 & " in tex
    assert r" & $\Delta$ bireco $-$ baseline & +1.04 & +0.21 & $-$1.13 & " in tex
    assert r"llama3.2-1b & only\_q2d & -- & " in tex
    assert "—" not in tex and "↳" not in tex and "Δ" not in tex
    assert r"\& 50\% \_ \{\}" in render_latex([], title="& 50% _ {}")


def test_plots(sweep: Path, tmp_path: Path) -> None:
    write_table([sweep], tmp_path / "out")
    plots = tmp_path / "out" / "plots"
    names = {"delta_by_category.png", "convergence.png", "curves_llama3.2-1b_baseline.png"}
    names |= {"curves_llama3.2-1b_bireco.png"}
    assert {p.name for p in plots.iterdir()} == names  # runs without logs get no curves
    for name in names:
        assert (plots / name).read_bytes()[:8] == PNG


def test_finished_runs_without_an_evaluation_are_named_with_the_fix(sweep: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING"):
        write_table([sweep], tmp_path / "out")
    unevaluated = (sweep / "multirun" / "d2q").resolve()
    assert (
        f"1 finished run(s) have no eval/summary.json, e.g. {unevaluated}: "
        "bireco-eval run_dir=RUN hydra.run.dir=RUN/eval writes it there"
    ) in caplog.text


def test_no_delta_plot_without_pair(tmp_path: Path, caplog) -> None:
    run = _run(tmp_path / "r", "tiny", "bireco", ["contrastive"])
    _summary(run, {"STS": 50.0}, 50.0)
    with caplog.at_level("INFO"):
        write_table([run], tmp_path / "out", paper_table=tmp_path / "absent.csv")
    assert not (tmp_path / "out" / "plots" / "delta_by_category.png").exists()
    assert "skipping delta_by_category.png" in caplog.text


def test_main_finds_nested_runs(sweep: Path, tmp_path: Path, capsys) -> None:
    main([str(sweep), "--out", str(tmp_path / "out"), "--expect", "qwen2.5-1.5b:bireco", "--title", "MTEB (test)"])
    assert capsys.readouterr().out == EXPECTED_MD
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"table.md", "table.tex", "table.csv", "plots"}


def test_run_states(tmp_path: Path) -> None:
    started = _run(tmp_path / "started", "tiny", "bireco", ["reconstruction", "contrastive"], results=False)
    (started / "stages" / "0-reconstruction").mkdir(parents=True)
    (started / "stages" / "0-reconstruction" / "stage_done.json").write_text("{}")
    rec = read_run(started)
    assert (rec.status, rec.reason) == ("missing", "no results.json (training did not finish; 1/2 stages done)")
    # a rerun that succeeded after a crash: the summary is newer than failed.json
    (started / "failed.json").write_text(json.dumps({"error": "boom", "stage": None}))
    _summary(started, {"STS": 50.0}, 50.0)
    assert read_run(started).status == "ok"
    # the same run directory given twice (directly and through its parent) is one run
    assert len(collect_runs([started, tmp_path])) == 1
    with pytest.raises(ValueError, match="MODEL:PIPELINE"):
        collect_runs([], expect=["tiny"])
    # an unreadable run is a row that says so, not a crash
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{")
    (rec,) = collect_runs([broken])
    assert (rec.status, rec.reason.split(":")[0]) == ("missing", "unreadable run directory")


def test_main_rejects_absent_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "typo"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert err[0].startswith("bireco-table: error: ") and "no such run or sweep directory" in err[0]


def test_paper_table_transcribed() -> None:
    paper = load_paper_table()
    assert len(paper) == 12
    assert paper[("llama3.1-8b", "bireco")]["Avg"] == 65.30
    assert paper[("mistral-7b", "baseline")]["Rerank"] == 57.98
    assert paper[("llama3.2-1b", "only_d2q")] == {**dict.fromkeys(paper[("llama3.2-1b", "only_d2q")]), "Avg": 61.38}


def test_duplicate_runs_use_the_newest_ok(tmp_path: Path) -> None:
    old = _run(tmp_path / "a", "tiny", "bireco", ["contrastive"])
    _summary(old, {"STS": 40.0}, 40.0)
    crashed = _run(tmp_path / "b", "tiny", "bireco", ["contrastive"], results=False)
    (crashed / "failed.json").write_text(json.dumps({"error": "boom"}))
    (row,) = build_rows(collect_runs([tmp_path]), {})
    assert (row.kind, row.values["STS"], row.reason) == ("ours", 40.0, "one seed (42); newest ok of 2 runs")


def test_table_and_plots_are_logged_to_wandb_as_an_artifact(sweep: Path, tmp_path: Path, monkeypatch) -> None:
    import wandb

    logged: dict = {"log": [], "artifacts": []}

    class FakeRun:
        def log(self, data: dict) -> None:
            logged["log"].append(data)

        def log_artifact(self, artifact) -> None:
            logged["artifacts"].append(artifact)

        def finish(self) -> None:
            logged["finished"] = True

    monkeypatch.setattr(wandb, "init", lambda **kw: logged.update(init=kw) or FakeRun())
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "out"
    main([str(sweep), "--out", str(out), "--wandb-project", "bireco", "--wandb-group", "sweep-x"])
    assert logged["init"]["group"] == "sweep-x" and logged["init"]["mode"] == "offline"
    table = logged["log"][0]["table"]
    csv_header = (out / "table.csv").read_text().splitlines()[0].split(",")
    assert table.columns == csv_header and {"model", "pipeline", "kind"} <= set(table.columns)
    assert any(k.startswith("plots/") for k in logged["log"][1])
    (artifact,) = logged["artifacts"]
    assert artifact.type == "results-table"
    names = set(artifact.manifest.entries)
    assert {"table.md", "table.tex", "table.csv"} <= names and any(n.startswith("plots/") for n in names)
    assert logged["finished"]


def test_score_by_dims_plot(tmp_path: Path) -> None:
    """Runs evaluated at several Matryoshka widths (`eval.dims`) get a score-vs-width plot; others do not."""
    run = _run(tmp_path / "r", "tiny", "bireco", ["contrastive"])
    (run / "eval").mkdir()
    dims = {str(d): {"average": a, "tasks": {}, "categories": {}} for d, a in ((16, 20.0), (64, 31.0), (192, 35.0))}
    (run / "eval" / "summary.json").write_text(
        json.dumps({"average": 35.0, "categories": {}, "tasks": {}, "dims": dims})
    )
    write_table([run], tmp_path / "out", paper_table=tmp_path / "absent.csv")
    assert (tmp_path / "out" / "plots" / "score_by_dims.png").read_bytes()[:8] == PNG
    plain = _run(tmp_path / "p", "tiny", "baseline", ["contrastive"])
    _summary(plain, {"STS": 50.0}, 50.0)
    write_table([plain], tmp_path / "out2", paper_table=tmp_path / "absent.csv")
    assert not (tmp_path / "out2" / "plots" / "score_by_dims.png").exists()


def _refused(argv: list[str], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> str:
    """`bireco-table ARGV` refused: exit status 2 and nothing logged (the console script logs to stderr too, so
    its stderr is the one line); returns stderr."""
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and not caplog.records
    return capsys.readouterr().err


def _one_run(tmp_path: Path) -> Path:
    run = _run(tmp_path / "run", "tiny", "bireco", ["contrastive"])
    _summary(run, {"STS": 50.0}, 50.0)
    return run


HEADER = "model,pipeline,Retr,Rerank,Clust,PairCls,Class,STS,Summ,Avg"


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("bad.jsonl", b'{"model": "x", "pipeline": "y"}\n{"model": "z", "pipeline": "w"}\n', f"no header {HEADER}"),
        (
            "short.csv",
            b"model,Retr,Avg\nx,1,2\n",
            "the header lacks pipeline, Rerank, Clust, PairCls, Class, STS, Summ",
        ),
        ("empty.csv", b"", "the file is empty"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\xff", "not UTF-8 text (byte 0)"),
    ],
    ids=["jsonl", "columns-missing", "empty", "binary"],
)
def test_main_refuses_a_paper_table_that_is_not_its_csv(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content: bytes,
    why: str,
) -> None:
    """Was a `KeyError: 'model'` traceback (or a line without the file): one line naming the file, nothing written."""
    bad = tmp_path / name
    bad.write_bytes(content)
    err = _refused(
        [str(_one_run(tmp_path)), "--out", str(tmp_path / "tbl"), "--paper-table", str(bad)], capsys, caplog
    )
    assert err == f"bireco-table: error: {bad}: not the paper table's CSV: {why}\n"
    assert not (tmp_path / "tbl").exists()


def test_main_refuses_a_paper_table_cell_that_is_not_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "paper.csv"
    bad.write_text(f"{HEADER}\ntiny,bireco,1,2,3,4,5,6,7,8\ntiny,baseline,n/a,,,,,,,8\n")
    err = _refused(
        [str(_one_run(tmp_path)), "--out", str(tmp_path / "tbl"), "--paper-table", str(bad)], capsys, caplog
    )
    assert err == f"bireco-table: error: {bad}, line 3: Retr is 'n/a', not a number\n"
    assert not (tmp_path / "tbl").exists()


def test_main_refuses_an_absent_paper_table_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a warning and a table without paper rows (exit 0); the packaged default, absent, still is that."""
    run = _one_run(tmp_path)
    for given, why in ((tmp_path / "nosuch.csv", "no such file"), (tmp_path, "is not a file")):
        err = _refused([str(run), "--out", str(tmp_path / "tbl"), "--paper-table", str(given)], capsys, caplog)
        assert err == f"bireco-table: error: --paper-table {given}: {why}\n"
        assert not (tmp_path / "tbl").exists()
    monkeypatch.setattr("bireco.results.cli.DEFAULT_PAPER_TABLE", tmp_path / "gone.csv")
    with caplog.at_level(logging.WARNING):
        main([str(run), "--out", str(tmp_path / "tbl")])
    assert f"{tmp_path / 'gone.csv'} not found: the table has no paper rows" in caplog.text
    assert "↳ paper" not in (tmp_path / "tbl" / "table.md").read_text()


def test_main_refuses_an_out_that_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """Was a FileExistsError traceback."""
    run = _one_run(tmp_path)
    existing = tmp_path / "existing_file"
    existing.write_text("mine\n")
    err = _refused([str(run), "--out", str(existing)], capsys, caplog)
    assert err == f"bireco-table: error: --out {existing}: exists and is not a folder\n"
    err = _refused([str(run), "--out", str(existing / "tbl")], capsys, caplog)
    assert err == f"bireco-table: error: --out {existing / 'tbl'}: {existing} exists and is not a folder\n"
    assert existing.read_text() == "mine\n"


def test_main_refuses_folders_without_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """Was a warning and an empty table (exit 0); one empty folder next to runs is still only a warning."""
    empty, other = tmp_path / "empty", tmp_path / "other"
    (other / "not-a-run").mkdir(parents=True)
    empty.mkdir()
    err = _refused([str(empty), str(other), "--out", str(tmp_path / "tbl"), "--expect", "tiny:bireco"], capsys, caplog)
    where = f"{empty}, {other}"
    assert err == f"bireco-table: error: no run directory under {where} (looked for run folders up to 3 levels down)\n"
    assert not (tmp_path / "tbl").exists()
    with pytest.raises(ValueError, match="no run directory under"):
        write_table([empty], tmp_path / "tbl")
    with caplog.at_level(logging.WARNING):
        main([str(empty), str(_one_run(tmp_path)), "--out", str(tmp_path / "tbl")])
    assert f"{empty}: no run directory found" in caplog.text and (tmp_path / "tbl" / "table.md").is_file()


def test_a_record_that_is_not_json_is_a_row_naming_it(tmp_path: Path) -> None:
    """A truncated results.json: the table goes on, its row says which file and where (was a bare
    JSONDecodeError message without the file)."""
    run = _run(tmp_path / "r", "tiny", "bireco", ["contrastive"])
    (run / "results.json").write_text('{"model": "tiny", ')
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    table = (tmp_path / "out" / "table.md").read_text()
    assert f"{run / 'results.json'}: not valid JSON (Expecting property name" in table


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the user gave is one line: any other ValueError was shown as one, hiding the bug."""
    import bireco.results.cli as results_cli

    _run(tmp_path / "r", "tiny", "bireco", ["contrastive"])

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(results_cli, "build_rows", broken)
    with pytest.raises(ValueError, match="a bug"):
        main([str(tmp_path), "--out", str(tmp_path / "out")])


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_sweep_job_refused_before_its_config_is_its_own_failed_row(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Refused by validation, the job had failed.json but no config.yaml: the table showed model `?`, pipeline
    `seed-1`, and the real row as "missing: no run directory"."""
    import sys

    import bireco.cli as cli

    argv = ["bireco-train", "-m", "pipeline=bireco", "seed=1", "stages.contrastive.loss.mask_duplicates=foo"]
    sweep = ["hydra.sweep.dir=" + str(tmp_path / "sweep"), "hydra.sweep.subdir=${pipeline.name}/seed-${seed}"]
    monkeypatch.setattr(sys, "argv", argv + sweep)
    with pytest.raises(SystemExit):  # the sweep's only job was refused
        cli.train()
    capsys.readouterr()
    job = tmp_path / "sweep" / "bireco" / "seed-1"
    assert (job / "failed.json").is_file() and not (job / "config.yaml").exists()
    [run] = collect_runs([tmp_path / "sweep"], expect=["tiny:bireco"])
    assert (run.model, run.pipeline, run.seed, run.status) == ("tiny", "bireco", 1, "failed")
    assert "mask_duplicates" in run.reason


@pytest.mark.parametrize(("n_tasks", "shown"), [(2, False), (4, False), (5, True)])
def test_a_delta_from_fewer_than_five_pairs_gets_no_interval(tmp_path: Path, n_tasks: int, shown: bool) -> None:
    """One seed and two STS tasks printed "−1.66 [−2.83, −0.49]" without †: the two differences' range, read as
    a 95% interval."""
    for pipeline, shift in (("baseline", 0.0), ("bireco", -1.0)):
        run = _run(tmp_path / pipeline, "tiny", pipeline, ["contrastive"])
        tasks = {
            f"t{i}": {"category": "STS", "main_score": 50.0 + i + shift * (1 + i), "metric": "m"}
            for i in range(n_tasks)
        }
        summary = {"tasks": tasks, "categories": {"STS": 50.0}, "average": 50.0, "settings": {}}
        (run / "eval").mkdir()
        (run / "eval" / "summary.json").write_text(json.dumps(summary))
    [delta] = [r for r in build_rows(collect_runs([tmp_path]), {}) if r.kind == "delta"]
    assert (delta.intervals["Avg"] is not None) == shown and (delta.intervals["STS"] is not None) == shown
