"""`bireco-consolidate CHECKPOINT OUT` as a user meets it: what is not a sharded checkpoint is one line on stderr
naming the path (exit status 2, no traceback, no output file), and the usage never shows the hidden sub-command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bireco.cli as cli
from bireco.distributed import deepspeed_available, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _console_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # what the console script sets, undone after the test


def _fsdp_folder(folder: Path) -> Path:
    """A sharded checkpoint in the layout Lightning's FSDPStrategy(state_dict_type='sharded') writes."""
    from lightning.fabric.strategies.fsdp import _METADATA_FILENAME, _distributed_checkpoint_save

    _distributed_checkpoint_save({"model": {"w": torch.arange(6.0).reshape(2, 3)}}, folder)
    torch.save({"global_step": 3}, folder / _METADATA_FILENAME)
    return folder


def _refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one stderr line of a refused `bireco-consolidate ARGV...` (asserting exit status 2)."""
    with pytest.raises(SystemExit) as info:
        cli.consolidate(list(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing, out = tmp_path / "nonexistent", tmp_path / "out.ckpt"
    assert _refused(capsys, str(missing), str(out)) == f"bireco-consolidate: error: {missing}: no such checkpoint"
    assert not out.exists()


def test_an_empty_folder_is_neither_fsdp_nor_deepspeed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty, out = tmp_path / "empty", tmp_path / "out.ckpt"
    empty.mkdir()
    assert _refused(capsys, str(empty), str(out)) == (
        f"bireco-consolidate: error: {empty}: neither an FSDP nor a DeepSpeed sharded checkpoint folder "
        "(expected FSDP's .metadata with its *.distcp shards, or DeepSpeed's `latest` file and the tag folder "
        "it names, holding *model_states.pt)"
    )
    assert list(tmp_path.iterdir()) == [empty]


def test_a_deepspeed_folder_without_its_latest_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, out = tmp_path / "last.ckpt", tmp_path / "out.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"")
    line = _refused(capsys, str(folder), str(out))
    assert line == (
        f"bireco-consolidate: error: {folder}: a DeepSpeed checkpoint without its `latest` file "
        "(which names the tag folder to read, e.g. checkpoint)"
    )
    assert not out.exists()


@pytest.mark.parametrize("name", ["train.jsonl", "last.ckpt"])
def test_a_single_file_needs_no_consolidation(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A regular file, be it data or an ordinary single-file Lightning checkpoint, is already one file."""
    f, out = tmp_path / name, tmp_path / "out.ckpt"
    if name.endswith(".ckpt"):
        torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 1}, f)
    else:
        f.write_text('{"text": "a"}\n')
    assert _refused(capsys, str(f), str(out)) == (
        f"bireco-consolidate: error: {f}: already a single file, which needs no consolidation "
        "(only a sharded checkpoint folder, as FSDP or DeepSpeed write it, is consolidated)"
    )
    assert not out.exists()


def test_an_output_that_is_a_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, out = _fsdp_folder(tmp_path / "last.ckpt"), tmp_path / "out"
    out.mkdir()
    assert _refused(capsys, str(folder), str(out)) == (
        f"bireco-consolidate: error: {out}: is a folder; OUT is the .ckpt file to write"
    )
    assert list(out.iterdir()) == []


def test_the_usage_hides_the_sub_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.consolidate(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.splitlines()[0] == "usage: bireco-consolidate [-h] CHECKPOINT OUT"

    with pytest.raises(SystemExit) as info:  # argparse: the usage, then one error line
        cli.consolidate(["a", "b", "c"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "usage: bireco-consolidate [-h] CHECKPOINT OUT",
        "bireco-consolidate: error: unrecognized arguments: c",
    ]


def test_the_console_script_consolidates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, out = _fsdp_folder(tmp_path / "last.ckpt"), tmp_path / "single" / "last.ckpt"
    cli.consolidate([str(folder), str(out)])
    ckpt = torch.load(out, weights_only=False)
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(6.0).reshape(2, 3)) and ckpt["global_step"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["metadata", "shard"])
def test_a_damaged_fsdp_checkpoint_is_one_line(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """Was torch's traceback (and one more per metadata read it tried, on the root logger)."""
    folder, out = _fsdp_folder(tmp_path / "last.ckpt"), tmp_path / "out.ckpt"
    if damage == "metadata":
        (folder / ".metadata").write_bytes(b"not a pickle")
    else:
        for shard in folder.glob("*.distcp"):
            shard.write_bytes(shard.read_bytes()[:10])
    line = _refused(capsys, str(folder), str(out))
    assert line.startswith(f"bireco-consolidate: error: {folder}: the sharded checkpoint cannot be read (")
    assert not out.exists() and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert "Traceback" not in caplog.text


def test_python_dash_m_keeps_its_sub_command(tmp_path: Path) -> None:
    folder, out = _fsdp_folder(tmp_path / "last.ckpt"), tmp_path / "single.ckpt"
    cmd = [sys.executable, "-m", "bireco.distributed"]
    done = subprocess.run([*cmd, "consolidate", str(folder), str(out)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert torch.load(out, weights_only=False)["global_step"] == 3
    usage = subprocess.run([*cmd, "consolidate", "--help"], capture_output=True, text=True, cwd=REPO)
    assert usage.stdout.splitlines()[0] == "usage: python -m bireco.distributed consolidate [-h] CHECKPOINT OUT"
    bare = subprocess.run([*cmd, str(folder), str(out)], capture_output=True, text=True, cwd=REPO)
    assert bare.returncode == 2 and bare.stderr.strip().splitlines() == [
        "python -m bireco.distributed: error: the command comes first: "
        "python -m bireco.distributed consolidate CHECKPOINT OUT"
    ]


def test_main_takes_the_command_first(tmp_path: Path) -> None:
    """`bireco.cli.consolidate` passes `["consolidate", *argv]`; a doubled command is an extra argument."""
    with pytest.raises(SystemExit) as info:
        main(["consolidate", "consolidate", str(tmp_path), str(tmp_path / "x.ckpt")])
    assert info.value.code == 2


@pytest.mark.skipif(deepspeed_available(), reason="the error is for machines without deepspeed")
def test_a_deepspeed_folder_without_deepspeed_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, out = tmp_path / "last.ckpt", tmp_path / "out.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"")  # ZeRO-3's name
    (folder / "latest").write_text("checkpoint\n")
    assert _refused(capsys, str(folder), str(out)) == (
        f"bireco-consolidate: error: {folder}: a DeepSpeed checkpoint, and DeepSpeed is not installed (it is not a "
        "bireco dependency: it needs a CUDA toolchain); `pip install deepspeed` to consolidate it"
    )
    (folder / "latest").write_text("global_step9\n")
    assert _refused(capsys, str(folder), str(out)) == (
        f"bireco-consolidate: error: {folder / 'latest'}: names tag folder 'global_step9', which holds no "
        "*model_states.pt"
    )
    assert not out.exists()
