"""Atomic writes: a crash at any point of a write leaves the previous file (never a half-written one)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from bireco.utils import io as io_utils
from bireco.utils.io import atomic_write_json


@pytest.mark.parametrize("crash_in", ["write", "fsync", "replace"])
def test_a_crash_during_a_write_leaves_the_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"score": 1})

    def die(*args, **kwargs):
        raise KeyboardInterrupt(f"killed in {crash_in}")

    if crash_in == "write":  # json.dumps succeeds, the process dies while the bytes go out
        monkeypatch.setattr(io_utils, "open", _half_writing_open, raising=False)
    else:
        monkeypatch.setattr(io_utils.os, crash_in, die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"score": 2, "padding": "x" * 10_000})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"score": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # the temp file is cleaned up


def _half_writing_open(path, mode="r", *args, **kwargs):
    """`open` whose binary writes put out half the bytes and then die."""
    f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 (handed to the caller)
    if mode != "wb":
        return f

    class _HalfWriter:
        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            f.close()

        def write(self, data: bytes) -> None:
            f.write(data[: len(data) // 2])
            f.flush()
            raise KeyboardInterrupt("killed mid-write")

    return _HalfWriter()


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "summary.json", {})
    finally:
        os.umask(umask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644
