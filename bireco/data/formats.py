"""Read training rows from jsonl(.gz) files, validating each one.

A bad row stops the run with the file, the line and the field named (or, with `on_bad_row=skip`, is skipped
and counted per file). Never a silent wrong result.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bireco.errors import UserError

log = logging.getLogger(__name__)

ROW_SUFFIXES = (".jsonl", ".jsonl.gz")
REQUIRED = ("query", "positive")


class DataFormatError(UserError, ValueError):
    """A training file or row does not match the expected format."""


def field_message(where: str, key: str, problem: str) -> str:
    """The one form of every row error (training rows and task folders): `<file>:<line>: field '<key>': <problem>`."""
    return f"{where}: field '{key}': {problem}"


def list_row_files(path: str | Path) -> list[Path]:
    """The jsonl / jsonl.gz files of a folder (or the file itself), sorted by name."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataFormatError(f"{p}: no such file or folder")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(ROW_SUFFIXES))
    if not files:
        raise DataFormatError(f"{p}: no *.jsonl or *.jsonl.gz files in this folder")
    return files


def file_stem(path: Path) -> str:
    """`msmarco.jsonl.gz` -> `msmarco`: a row's source when it has no `source` field."""
    name = path.name
    for suffix in ROW_SUFFIXES[::-1]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_text(row: dict[str, Any], key: str, where: str, required: bool) -> None:
    if key not in row or row[key] is None:
        if required:
            raise DataFormatError(field_message(where, key, "missing (required)"))
        return
    value = row[key]
    if not isinstance(value, str):
        raise DataFormatError(field_message(where, key, f"must be a string, got {type(value).__name__}"))
    if not value.strip():
        raise DataFormatError(field_message(where, key, "is empty"))


def parse_json_object(raw: bytes, where: str, error: type[ValueError] = DataFormatError) -> dict[str, Any]:
    """One jsonl line -> a dict; bad bytes, bad JSON or a non-object raise `error` naming `where` (file:line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: invalid JSON ({e.msg.removesuffix(' at')} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def parse_row(raw: bytes, where: str, default_source: str) -> dict[str, Any]:
    """One line -> a normalized row `{"query","positive","negative","source"}` (negative may be None)."""
    row = parse_json_object(raw, where)
    for key in REQUIRED:
        _check_text(row, key, where, required=True)
    _check_text(row, "negative", where, required=False)
    source = row.get("source", default_source)
    if not isinstance(source, str) or not source:
        raise DataFormatError(field_message(where, "source", f"must be a non-empty string, got {source!r}"))
    return {"query": row["query"], "positive": row["positive"], "negative": row.get("negative"), "source": source}


def iter_rows(
    files: list[Path], on_bad_row: str = "error", max_rows_per_file: int | None = None
) -> Iterator[dict[str, Any]]:
    """Validated rows of several files, in file order.

    Args:
        on_bad_row: `error` (default: stop at the first bad row) or `skip` (skip and report counts per file).
        max_rows_per_file: read at most this many valid rows of each file (quick runs on big files).
    """
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    for f in files:
        opener = gzip.open if f.name.endswith(".gz") else open
        n_valid, n_skipped, first_error = 0, 0, ""
        with opener(f, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    row = parse_row(raw.rstrip(b"\r\n"), f"{f}:{lineno}", file_stem(f))
                except DataFormatError as e:
                    if on_bad_row == "error":
                        raise
                    n_skipped += 1
                    first_error = first_error or str(e)
                    log.debug("skipping %s", e)
                    continue
                n_valid += 1
                yield row
                if max_rows_per_file is not None and n_valid >= max_rows_per_file:
                    break
        if n_valid == 0:
            raise DataFormatError(f"{f}: no valid rows (empty file{' or every row bad' if n_skipped else ''})")
        if n_skipped:  # reported per file, as each file is finished
            log.warning(
                "%s: skipped %d bad rows, kept %d (data.on_bad_row=skip); first: %s",
                f,
                n_skipped,
                n_valid,
                first_error,
            )
