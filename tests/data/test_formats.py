"""Row files: valid rows are normalized; every bad row is reported with its file, line and field."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from bireco.data.formats import DataFormatError, file_stem, iter_rows, list_row_files, parse_row


def _line(**row) -> str:
    return json.dumps(row)


def _write(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _bad(tmp_path: Path, bad: str | bytes, name: str = "rows.jsonl") -> tuple[Path, str]:
    """A file whose 3rd physical line is bad (after a good row and a blank line); returns (file, error message)."""
    f = _write(tmp_path / name, [_line(query="q1", positive="p1"), "", bad, _line(query="q4", positive="p4")])
    with pytest.raises(DataFormatError) as info:
        list(iter_rows([f]))
    return f, str(info.value)


def test_valid_rows_are_normalized(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "msmarco.jsonl",
        [
            _line(query="what is a cat", positive="a cat is an animal"),
            _line(query="q2", positive="p2", negative="n2", extra="ignored"),
            _line(query="q3", positive="p3", negative=None, source="nq"),
        ],
    )
    assert list(iter_rows([f])) == [
        {"query": "what is a cat", "positive": "a cat is an animal", "negative": None, "source": "msmarco"},
        {"query": "q2", "positive": "p2", "negative": "n2", "source": "msmarco"},
        {"query": "q3", "positive": "p3", "negative": None, "source": "nq"},
    ]


def test_gzip_rows_and_source_from_the_double_suffix_stem(tmp_path: Path) -> None:
    f = _write(tmp_path / "x.jsonl.gz", [_line(query="q", positive="p"), _line(query="é ü", positive="日本")])
    assert list(iter_rows([f])) == [
        {"query": "q", "positive": "p", "negative": None, "source": "x"},
        {"query": "é ü", "positive": "日本", "negative": None, "source": "x"},
    ]


def test_file_stem() -> None:
    assert file_stem(Path("x.jsonl.gz")) == "x"
    assert file_stem(Path("/a/b/msmarco.jsonl")) == "msmarco"
    assert file_stem(Path("a.b.jsonl")) == "a.b"
    assert file_stem(Path("a.jsonl.jsonl.gz")) == "a.jsonl"


def test_crlf_line_endings_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "w.jsonl"
    f.write_bytes(b'{"query": "q1", "positive": "p1"}\r\n\r\n   \n{"query": "q2", "positive": "p2"}')
    assert [r["query"] for r in iter_rows([f])] == ["q1", "q2"]


def test_files_are_read_in_order(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_line(query="qa", positive="pa")])
    b = _write(tmp_path / "b.jsonl", [_line(query="qb", positive="pb")])
    assert [r["source"] for r in iter_rows([b, a])] == ["b", "a"]


@pytest.mark.parametrize(
    ("bad", "field", "problem"),
    [
        (_line(positive="p"), "query", "missing (required)"),
        (_line(query="q"), "positive", "missing (required)"),
        (_line(query=None, positive="p"), "query", "missing (required)"),
        (_line(query="q", positive=3), "positive", "must be a string, got int"),
        (_line(query="q", positive=2.5), "positive", "must be a string, got float"),
        (_line(query=True, positive="p"), "query", "must be a string, got bool"),
        (_line(query="q", positive=["p"]), "positive", "must be a string, got list"),
        (_line(query={"text": "q"}, positive="p"), "query", "must be a string, got dict"),
        (_line(query="", positive="p"), "query", "is empty"),
        (_line(query="  ", positive="p"), "query", "is empty"),
        (_line(query="q", positive="\n\t"), "positive", "is empty"),
        (_line(query="q", positive="p", negative=""), "negative", "is empty"),
        (_line(query="q", positive="p", negative=7), "negative", "must be a string, got int"),
        (_line(query="q", positive="p", negative=["n1", "n2"]), "negative", "must be a string, got list"),
        (_line(query="q", positive="p", source=""), "source", "must be a non-empty string, got ''"),
        (_line(query="q", positive="p", source=5), "source", "must be a non-empty string, got 5"),
    ],
)
def test_bad_field_names_file_line_and_field(tmp_path: Path, bad: str, field: str, problem: str) -> None:
    f, msg = _bad(tmp_path, bad)
    # physical line number: the blank line 2 counts
    assert msg == f"{f}:3: field '{field}': {problem}"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('{"query": "q", "positive": ', r"invalid JSON \(Expecting value at column 28\)"),
        ('{"query": "q" "positive": "p"}', r"invalid JSON \(Expecting ',' delimiter at column 15\)"),
        ('[{"query": "q", "positive": "p"}]', "expected a JSON object, got list"),
        ('"just a string"', "expected a JSON object, got str"),
        ("null", "expected a JSON object, got NoneType"),
        (b'{"query": "caf\xe9", "positive": "p"}', r"not valid UTF-8 \(invalid continuation byte at byte 14\)"),
        (b"\xff\xfe{}", r"not valid UTF-8 \(invalid start byte at byte 0\)"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, bad: str | bytes, expected: str) -> None:
    """A line that is not a JSON object has no field to name: file and line, and what is wrong with it."""
    f, msg = _bad(tmp_path, bad)
    assert re.fullmatch(re.escape(f"{f}:3: ") + expected, msg), msg


def test_bad_row_in_gzip_file_names_it(tmp_path: Path) -> None:
    f, msg = _bad(tmp_path, _line(query="q", positive=3), name="x.jsonl.gz")
    assert msg == f"{f}:3: field 'positive': must be a string, got int"


def test_parse_row_directly() -> None:
    assert parse_row(b'{"query": "q", "positive": "p"}', "f:1", "src") == {
        "query": "q",
        "positive": "p",
        "negative": None,
        "source": "src",
    }
    with pytest.raises(DataFormatError, match=r"^f:9: field 'positive': missing \(required\)$"):
        parse_row(b'{"query": "q"}', "f:9", "src")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_bytes(b"")
    with pytest.raises(DataFormatError, match=re.escape(f"{f}: no valid rows (empty file)")):
        list(iter_rows([f]))
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n\n  \n")
    with pytest.raises(DataFormatError, match=re.escape(f"{blank}: no valid rows (empty file)")):
        list(iter_rows([blank]))


def test_error_stops_at_the_first_bad_row_after_yielding_the_good_ones(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.jsonl", [_line(query="q1", positive="p1"), "{", _line(query="q3", positive="p3")])
    it = iter_rows([f])
    assert next(it)["query"] == "q1"
    with pytest.raises(DataFormatError, match=re.escape(f"{f}:2: invalid JSON")):
        next(it)


def test_skip_bad_rows_keeps_the_good_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(
        tmp_path / "s.jsonl",
        [
            _line(query="q1", positive="p1"),
            "{",
            _line(query="q3", positive=3),
            b"\xff\xfe",
            _line(query="q5", positive="p5"),
            "[]",
        ],
    )
    with caplog.at_level("WARNING", logger="bireco.data.formats"):
        rows = list(iter_rows([f], on_bad_row="skip"))
    assert [r["query"] for r in rows] == ["q1", "q5"]
    assert f"{f}: skipped 4 bad rows" in caplog.text


def test_skip_with_every_row_bad_is_still_an_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.jsonl", ["{", _line(query="q")])
    with pytest.raises(DataFormatError, match=re.escape(f"{f}: no valid rows (empty file or every row bad)")):
        list(iter_rows([f], on_bad_row="skip"))


def test_on_bad_row_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_bad_row must be 'error' or 'skip', got 'warn'"):
        list(iter_rows([tmp_path / "x.jsonl"], on_bad_row="warn"))


def test_max_rows_per_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_line(query=f"a{i}", positive="p") for i in range(5)])
    b = _write(tmp_path / "b.jsonl.gz", [_line(query=f"b{i}", positive="p") for i in range(2)])
    assert [r["query"] for r in iter_rows([a, b], max_rows_per_file=3)] == ["a0", "a1", "a2", "b0", "b1"]
    # the cap counts valid rows: skipped rows do not use it up, and rows after the cap are never read
    c = _write(tmp_path / "c.jsonl", ["{", _line(query="c1", positive="p"), _line(query="c2", positive="p"), "{"])
    assert [r["query"] for r in iter_rows([c], on_bad_row="skip", max_rows_per_file=2)] == ["c1", "c2"]
    d = _write(tmp_path / "d.jsonl", [_line(query="d1", positive="p"), _line(query="d2", positive="p"), "{"])
    assert [r["query"] for r in iter_rows([d], max_rows_per_file=2)] == ["d1", "d2"]  # bad line 3 never read


def test_list_row_files(tmp_path: Path) -> None:
    for name in ["b.jsonl", "a.jsonl.gz", "c.json", "notes.txt", "d.jsonl.bak"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jsonl").mkdir()
    assert [p.name for p in list_row_files(tmp_path)] == ["a.jsonl.gz", "b.jsonl"]
    assert list_row_files(tmp_path / "b.jsonl") == [tmp_path / "b.jsonl"]
    assert list_row_files(str(tmp_path)) == [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"]


def test_list_row_files_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataFormatError, match=re.escape(f"{missing}: no such file or folder")):
        list_row_files(missing)


def test_list_row_files_folder_without_jsonl(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text("{}")
    (tmp_path / "rows.csv").write_text("a,b")
    with pytest.raises(DataFormatError, match=re.escape(f"{tmp_path}: no *.jsonl or *.jsonl.gz files in this folder")):
        list_row_files(tmp_path)


def test_skip_reports_the_count_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = _write(
        tmp_path / "a.jsonl",
        [_line(query="a1", positive="p"), "{", _line(query="a3"), _line(query="a4", positive="p")],
    )
    b = _write(tmp_path / "b.jsonl.gz", [_line(query="b1", positive="p"), _line(query="b2", positive="p")])
    c = _write(tmp_path / "c.jsonl", [_line(query="c1", positive=""), _line(query="c2", positive="p")])
    with caplog.at_level("WARNING", logger="bireco.data.formats"):
        rows = list(iter_rows([a, b, c], on_bad_row="skip"))
    assert [r["query"] for r in rows] == ["a1", "a4", "b1", "b2", "c2"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{a}: skipped 2 bad rows, kept 2 (data.on_bad_row=skip); first: {a}:2: invalid JSON "
        "(Expecting property name enclosed in double quotes at column 2)",
        f"{c}: skipped 1 bad rows, kept 1 (data.on_bad_row=skip); first: {c}:1: field 'positive': is empty",
    ]  # b has no bad row: nothing reported for it


def test_default_stops_at_the_first_bad_row_and_logs_no_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = _write(tmp_path / "a.jsonl", [_line(query="a1", positive="p"), _line(query="a2")])
    with caplog.at_level("WARNING", logger="bireco.data.formats"), pytest.raises(DataFormatError) as info:
        list(iter_rows([f]))
    assert str(info.value) == f"{f}:2: field 'positive': missing (required)"
    assert caplog.records == []


def test_an_unterminated_string_is_worded_once() -> None:
    """json's own message ends in "starting at": it read "starting at at column 10"."""
    from bireco.data.formats import DataFormatError, parse_json_object

    with pytest.raises(DataFormatError) as info:
        parse_json_object(b'{"query": "no end', "in.jsonl:3")
    assert str(info.value) == "in.jsonl:3: invalid JSON (Unterminated string starting at column 11)"
