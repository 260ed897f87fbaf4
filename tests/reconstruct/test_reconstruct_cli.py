"""`bireco-reconstruct` on a run folder holding the trained tiny model (its pairs decode exactly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bireco.conf import CONF_DIR
from bireco.data.formats import DataFormatError
from bireco.models.backbone import save_artifact
from bireco.reconstruct.cli import ReconstructError, quote_free_texts, resolve_stage, run
from tests.reconstruct.helpers import ALL_SEGMENTS, INSTRUCTION


@pytest.fixture(scope="module")
def run_dir(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout `bireco-train` writes: config.yaml + stages/<i>-<name>/{artifact, stage_done.json}."""
    enc, _ = trained
    root = tmp_path_factory.mktemp("run")
    base = save_artifact(enc.model, enc.tokenizer, root / "base", {"stage": "init"})
    stage_dir = root / "stages" / "0-reconstruction"
    meta = {"stage": "reconstruction", "base": str(base), "template": enc.template.to_dict(), "pooling": "eos"}
    artifact = save_artifact(enc.model, enc.tokenizer, stage_dir / "artifact", {**meta, "max_length": 64})
    done = {"stage": "reconstruction", "init_from": str(base), "artifact": str(artifact), "steps": 300}
    (stage_dir / "stage_done.json").write_text(json.dumps(done))
    cfg = {
        "template": enc.template.to_dict(),
        "pooling": {"name": "eos"},
        "model": {"max_length": 64, "dtype": "float32"},
        "data": {"sources": {"pairs": {"instruction": INSTRUCTION}, "other": {"instruction": "x"}}},
        "stages": {"reconstruction": {"loss": {"target_segments": list(ALL_SEGMENTS)}}},
    }
    OmegaConf.save(OmegaConf.create(cfg), root / "config.yaml")
    return root


def _cfg(overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("reconstruct", overrides=overrides)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("direction", ["q2d", "d2q"])
def test_one_text_decodes_to_its_pair(run_dir: Path, trained, direction: str) -> None:
    pair = trained[1][2]
    text, other = (pair.query, pair.positive) if direction == "q2d" else (pair.positive, pair.query)
    ref = f"reference={other}"
    out = run(_cfg([f"run_dir={run_dir}", f"text={text}", f"direction={direction}", "source=pairs", ref]))
    assert out == {
        "stage": "reconstruction",
        "direction": direction,
        "generated": other,
        "f1": 1.0,
        "loss": out["loss"],
    }
    assert out["loss"] < 0.05


def test_several_sources_and_no_instruction_is_refused(run_dir: Path, trained) -> None:
    with pytest.raises(ReconstructError, match=r"source=<one of \['other', 'pairs'\]>"):
        run(_cfg([f"run_dir={run_dir}", f"text={trained[1][0].query}"]))


def test_batch_mode_writes_rows_and_summary(run_dir: Path, trained, tmp_path: Path) -> None:
    pairs = trained[1]
    rows = [{"query": p.query, "positive": p.positive} for p in pairs]
    src = _write(tmp_path / "pairs.jsonl", rows)  # no "source": the file stem `pairs` names it
    summary = run(_cfg([f"run_dir={run_dir}", f"input={src}", f"output={tmp_path / 'out.jsonl'}", "batch_size=3"]))
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["generated"] for r in written] == [p.positive for p in pairs]
    assert [r["query"] for r in written] == [p.query for p in pairs] and {r["f1"] for r in written} == {1.0}
    on_disk = json.loads((tmp_path / "out.summary.json").read_text())
    assert summary["rows"] == on_disk["rows"] == len(pairs) and summary["f1"] == on_disk["f1"] == 1.0
    assert summary["loss"] == pytest.approx(
        sum(r["loss_sum"] for r in written) / sum(r["tokens"] for r in written), rel=1e-9
    )


def test_empty_input_is_an_error_and_writes_nothing(run_dir: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "pairs.jsonl", ["", "  "])
    with pytest.raises(DataFormatError, match=r"pairs\.jsonl: no rows \(empty file\)"):
        run(_cfg([f"run_dir={run_dir}", f"input={src}", f"output={tmp_path / 'out.jsonl'}"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["text=hi", "decode.max_new_tokens=0"], r"^decode\.max_new_tokens must be >= 1, got 0$"),
        (["text=hi", "decode.temperature=-1"], r"^decode\.temperature must be > 0, got -1"),
        (["input=x.jsonl", "output={tmp}"], r"^output=.*: is a folder; output= is the \.jsonl file to write$"),
    ],
    ids=["no-tokens", "temperature", "output-folder"],
)
def test_impossible_settings_are_refused_before_decoding(
    run_dir: Path, tmp_path: Path, monkeypatch, args: list[str], message: str
) -> None:
    """Were a ValueError traceback (max_new_tokens, and transformers' for temperature) or an IsADirectoryError
    after every row was decoded."""
    import bireco.reconstruct.cli as rcli

    monkeypatch.setattr(rcli, "load_reconstructor", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ReconstructError, match=message):
        run(_cfg([f"run_dir={run_dir}", *(a.format(tmp=tmp_path) for a in args)]))


def test_a_missing_input_is_named_before_the_model_loads(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """It was a bare `[Errno 2] ... 'nosuch.jsonl'`, after the model had loaded."""
    import bireco.reconstruct.cli as rcli

    monkeypatch.setattr(rcli, "load_reconstructor", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ReconstructError, match=r"^input=nosuch\.jsonl: no such file$"):
        run(_cfg([f"run_dir={run_dir}", "input=nosuch.jsonl", f"output={tmp_path / 'out.jsonl'}"]))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"query": "w1 w2"}, r"pairs\.jsonl:2: .*'positive'.*missing"),
        ("{not json", r"pairs\.jsonl:2: invalid JSON"),
        ({"query": "w1", "positive": "w2", "source": "nope"}, r"pairs\.jsonl:2: no query instruction for source"),
    ],
)
def test_bad_row_names_file_line_and_field(run_dir: Path, trained, tmp_path: Path, bad, message: str) -> None:
    good = {"query": trained[1][0].query, "positive": trained[1][0].positive}
    src = _write(tmp_path / "pairs.jsonl", [good, bad, good])
    with pytest.raises((DataFormatError, ReconstructError), match=message):
        run(_cfg([f"run_dir={run_dir}", f"input={src}", f"output={tmp_path / 'out.jsonl'}"]))
    assert not (tmp_path / "out.jsonl").exists()


def test_stage_argument_is_a_value_not_the_stage_config_group() -> None:
    assert quote_free_texts(["stage_name=warmup", "run_dir=a,b"]) == ["stage_name=warmup", "run_dir=a,b"]
    assert _cfg(quote_free_texts(["stage_name=reconstruction"])).stage_name == "reconstruction"


@pytest.mark.parametrize(
    "text",
    [
        "Thomex Siakla's employer, Orchard Mutual = x? [a] {b} $c ${d} back\\slash end\\",
        "a,b",
        "stage=x",
        "",
        "ends with a quote'",
        "x\\'y",
        "a\\${x}",
        '"already quoted"',
    ],
)
def test_free_text_reaches_the_config_verbatim(text: str) -> None:
    cfg = _cfg(quote_free_texts([f"text={text}", f"reference={text}", f"instruction={text}"]))
    assert cfg.text == cfg.reference == cfg.instruction == text


def test_stage_names(run_dir: Path) -> None:
    assert resolve_stage(run_dir, None).path == resolve_stage(run_dir, "0-reconstruction").path
    assert resolve_stage(run_dir, "base").path == str(run_dir / "base")
    # this command's own names are offered too: base always, warmup only where the base is a warm-up
    with pytest.raises(
        ReconstructError, match=r"no finished stage 'contrastive'; choose one of \['reconstruction', 'base'\]$"
    ):
        resolve_stage(run_dir, "contrastive")
    with pytest.raises(ReconstructError, match="not a warm-up artifact"):
        resolve_stage(run_dir, "warmup")


def test_console_entry_prints_the_text_and_writes_no_files(run_dir: Path, trained, tmp_path: Path) -> None:
    pair = trained[1][1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    cmd = [
        str(Path(sys.executable).parent / "bireco-reconstruct"),
        f"run_dir={run_dir}",
        "stage_name=0-reconstruction",
    ]
    cmd += [f"text={pair.query}", "source=pairs"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == pair.positive + "\n"
    assert list(tmp_path.iterdir()) == []  # no Hydra run folder, no .hydra, no log file
    with pytest.raises(ReconstructError, match="not a bireco run"):
        run(_cfg([f"run_dir={tmp_path}", "text=x"]))


def test_stage_i_targets_come_from_the_run_s_config_old_layout_too() -> None:
    from omegaconf import OmegaConf

    from bireco.reconstruct.cli import stage_i_targets

    now = OmegaConf.create({"stages": {"reconstruction": {"loss": {"target_segments": ["text"]}}}})
    before = OmegaConf.create({"stages": {"reconstruction": {"target_segments": ["instruction", "text"]}}})
    assert stage_i_targets(now) == ["text"]
    assert stage_i_targets(before) == ["instruction", "text"]  # runs from before losses were objects
    assert stage_i_targets(OmegaConf.create({"stages": {}})) == ["template", "instruction", "text"]
