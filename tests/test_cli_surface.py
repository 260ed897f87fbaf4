"""The console scripts are one surface: thin functions in `bireco.cli`, named arguments for what to load (never a
rewritten command line), one line for a user error, no side effects on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import bireco.cli as cli
from tests.export.fixtures import ExportedRun, build_exported_run

REPO = Path(__file__).resolve().parents[1]
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]


def test_every_console_script_is_a_function_of_bireco_cli() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) == 10
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert module == "bireco.cli", name
        assert callable(getattr(cli, function)), name


def test_importing_the_cli_changes_nothing() -> None:
    code = "import bireco.cli; from omegaconf import OmegaConf; print(OmegaConf.has_resolver('bireco_dirname'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def _eval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bireco-eval", *args, f"hydra.run.dir={tmp_path}", *QUIET])
    cli.evaluate()


def test_a_plain_model_must_name_its_template(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        _eval(monkeypatch, tmp_path, "model.pretrained=meta-llama/Llama-3.2-1B-Instruct")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bireco-eval: error: model.pretrained= names a plain model")
    assert "template=llama3|qwen2|mistral|plain" in err[0] and "artifact=DIR" in err[0]


def test_a_copy_of_a_preset_keeps_its_template(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """`model=<preset> model.pretrained=<its folder>` is a local copy of a preset: its template comes along, so
    the check lets it through — the run stops at the next missing setting (no task folder), one line."""
    with pytest.raises(SystemExit) as info:
        _eval(monkeypatch, tmp_path, "model=stories260k", f"model.pretrained={tmp_path / 'missing'}")
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0] == "bireco-eval: error: eval=local needs eval.data_root=DIR (a folder of task folders)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run_dir={missing}"], "{missing}: not a finished pipeline run (needs results.json and config.yaml)"),
        (["eval.data_root={missing}"], "say what to evaluate: run_dir=<pipeline output>, artifact=<stage artifact>"),
        # a missing artifact folder was looked up on the hub as a model name (OSError traceback), and without
        # eval.data_root the message was about the data root, not the artifact
        (["artifact={missing}"], "artifact={missing}: no such folder (a stage artifact: RUN/stages/<i>-<stage>/"),
        (["model=stories260k", "eval.data_root={tmp}"], "eval.data_root={tmp}: no task folders found"),
    ],
    ids=["unfinished-run", "nothing-named", "missing-artifact", "no-task-folders"],
)
def test_what_to_evaluate_is_checked_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], line: str
) -> None:
    """A run folder that is not a finished run, or no model at all, was a FileNotFoundError / ValueError
    traceback (exit 1)."""
    names = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        _eval(monkeypatch, tmp_path, *(a.format(**names) for a in args))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"bireco-eval: error: {line.format(**names)}")


def test_a_folder_given_as_model_is_not_reinterpreted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`model` is the preset group: Hydra refuses a folder there and lists the presets (no silent rewrite)."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "bireco-eval"), f"model={tmp_path}", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "Could not find 'model/" in proc.stderr and "llama3.2-1b" in proc.stderr


def test_an_unset_required_setting_is_one_line_naming_it(capsys: pytest.CaptureFixture) -> None:
    """Any job that reads a `???` key it was not given (OmegaConf raises where it is first read)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from bireco.console import exit_on_user_error

    cfg = OmegaConf.create({"model_dir": "???", "kind": "document"})
    try:
        _ = cfg.model_dir
    except MissingMandatoryValue as e:
        with pytest.raises(SystemExit) as info:
            exit_on_user_error(e, "bireco-x")
    assert info.value.code == 2
    assert capsys.readouterr().err == "bireco-x: error: model_dir= is required (the config has no default for it)\n"
    exit_on_user_error(RuntimeError("a bug"), "bireco-x")  # anything else propagates: it returns, the caller raises


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_refused_command_leaves_no_run_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """Hydra creates the run folder (`.hydra/`, the job log) before the job runs: a one-line refusal used to leave
    that empty-looking run behind in `runs/` on every try."""
    run = tmp_path / "runs" / "eval" / "2026-12-04_20-00-00"
    monkeypatch.setattr(sys, "argv", ["bireco-eval", "run_dir=/nowhere", f"hydra.run.dir={run}"])
    with pytest.raises(SystemExit) as info:
        cli.evaluate()
    assert info.value.code == 2 and "not a finished pipeline run" in capsys.readouterr().err
    assert not run.exists()
    assert (tmp_path / "runs" / "eval").is_dir()  # only the invocation's own folder goes


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_refused_command_keeps_a_folder_that_holds_anything_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    monkeypatch.setattr(sys, "argv", ["bireco-eval", "run_dir=/nowhere", f"hydra.run.dir={tmp_path}"])
    with pytest.raises(SystemExit):
        cli.evaluate()
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "cli.log", "notes.txt"]


@pytest.mark.usefixtures("hydra_logging_restored")
def test_a_refused_command_keeps_the_empty_folder_the_user_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """`hydra.run.dir=` an existing empty folder: only what this try wrote into it goes (the folder was removed)."""
    mine = tmp_path / "my-eval"
    mine.mkdir()
    monkeypatch.setattr(sys, "argv", ["bireco-eval", "run_dir=/nowhere", f"hydra.run.dir={mine}"])
    with pytest.raises(SystemExit) as info:
        cli.evaluate()
    assert info.value.code == 2 and "not a finished pipeline run" in capsys.readouterr().err
    assert mine.is_dir() and list(mine.iterdir()) == []


@pytest.fixture(scope="module")
def exported_run(bireco_cache: str, tmp_path_factory: pytest.TempPathFactory) -> ExportedRun:
    return build_exported_run(bireco_cache, tmp_path_factory)  # shared with tests/test_encode.py's (same folder)


@pytest.mark.usefixtures("hydra_logging_restored")
def test_bireco_eval_of_a_run_says_where_the_table_looks(
    exported_run: ExportedRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`bireco-eval run_dir=RUN` writes into its own Hydra folder, where `bireco-table RUN` does not look: it says
    so, with the setting that puts the summary where the table reads it."""
    run = exported_run.run
    monkeypatch.setattr(sys, "argv", ["bireco-eval", f"run_dir={run}", "batch_size=8", f"hydra.run.dir={tmp_path}"])
    cli.evaluate()
    job_log = (tmp_path / "cli.log").read_text()  # Hydra's job log: what the user sees on the console
    assert f"summary: {tmp_path / 'summary.json'}" in job_log
    assert f"bireco-table {run} reads {run}/eval/summary.json: hydra.run.dir={run}/eval writes it there" in job_log


def test_an_evaluation_inside_the_run_is_named_by_its_subfolder(tmp_path: Path) -> None:
    """make eval-shared writes RUN/eval-shared on purpose: the hint is --eval-subdir, not to overwrite RUN/eval."""
    (tmp_path / "run" / "eval-shared").mkdir(parents=True)
    hint = cli.table_hint(tmp_path / "run", tmp_path / "run" / "eval-shared")
    assert hint == f"bireco-table {tmp_path / 'run'} --eval-subdir eval-shared reads this evaluation"
    assert cli.table_hint(tmp_path / "run", tmp_path / "run" / "eval") is None  # where the table reads anyway


@pytest.mark.usefixtures("hydra_logging_restored")
@pytest.mark.parametrize("program", ["train", "evaluate"])
def test_a_mistyped_model_folder_is_one_line(
    program: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """Was the hub's "Repo id must be in the form ..." traceback (exit 1; bireco-train also kept failed.json)."""
    missing, run = tmp_path / "stories260k-lama", tmp_path / "run"
    args = ["model=stories260k", f"model.pretrained={missing}", f"hydra.run.dir={run}"]
    if program == "evaluate":  # one STS task folder, so the model is what is wrong
        (tmp_path / "tasks" / "sts").mkdir(parents=True)
        row = '{"sentence1": "a", "sentence2": "b", "score": 1.0}\n'
        (tmp_path / "tasks" / "sts" / "test.jsonl").write_text(row * 3)
        args.append(f"eval.data_root={tmp_path / 'tasks'}")
    monkeypatch.setattr(sys, "argv", ["bireco", *args])
    with pytest.raises(SystemExit) as info:
        getattr(cli, program)()
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    why = "no such folder" if program == "train" else "neither an existing folder nor a hub name"
    assert str(missing) in err[0] and why in err[0], err[0]  # train: before loading; eval: the hub's check named
    assert not run.exists()


@pytest.mark.parametrize(
    ("program", "args", "line"),
    [
        (
            "train",
            ["modle=tiny"],
            "bireco-train: error: Could not override 'modle'. To append to your config use +modle",
        ),
        ("train", ["pipeline=bireko"], "bireco-train: error: In 'train': Could not find 'pipeline/bireko'; Available"),
        ("train", ["seed=1,2"], "bireco-train: error: Ambiguous value for argument 'seed=1,2'"),
        ("evaluate", ["eval=locl"], "bireco-eval: error: In 'eval': Could not find 'eval/locl'; Available options"),
        ("encode", ["model=EXP"], "bireco-encode: error: Could not override 'model'."),
    ],
)
def test_a_command_line_that_does_not_compose_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, program: str, args, line: str
) -> None:
    """Hydra's own report was several lines (and a HYDRA_FULL_ERROR hint) with exit 1; nothing is written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bireco", *args])
    with pytest.raises(SystemExit) as info:
        getattr(cli, program)()
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith(line), err
    assert list(tmp_path.iterdir()) == []
    if program == "encode":
        assert err[0].endswith("bireco-encode names its model folder with model_dir=DIR")


def test_flags_are_left_to_hydra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """-m, --cfg ... are Hydra's (`--help` is bireco's, tests/test_app_help.py): the pre-check composes plain
    key=value command lines only."""
    monkeypatch.setattr(sys, "argv", ["bireco-train", "seed=7", "--cfg", "job"])
    cli.train()
    assert capsys.readouterr().out.startswith("seed: 7\n")
