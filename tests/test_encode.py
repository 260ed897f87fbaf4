"""`bireco-encode`: streamed chunks equal one-shot encoding, bad rows named file:line:field, every model= form."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bireco.encode import EncodeSettingError, InputFormatError, encode_file, query_prompt, resolve
from bireco.export.sentence_transformers import Prompt
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from tests.export.fixtures import ExportedRun, build_exported_run

TEXTS = [f"person {i} lives in city {i % 7}" + " and plays the violin" * (i % 4) for i in range(11)]


@pytest.fixture(scope="module")
def exported_run(bireco_cache: str, tmp_path_factory) -> ExportedRun:
    """The exported tiny run the export tests use (built once per session, whichever module asks first)."""
    return build_exported_run(bireco_cache, tmp_path_factory)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    tok = train_tokenizer(TEXTS * 5, 300, tmp_path_factory.mktemp("tok"))
    spec = TinyLlamaSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    return TextEncoder(build_tiny_model(spec, tok).eval(), tok, Template(), "eos", 64)


def _write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_streamed_chunks_equal_one_shot_encoding(encoder: TextEncoder, tmp_path: Path, monkeypatch) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"text": t, "id": i} for i, t in enumerate(TEXTS)])
    seen = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, *a, **k: seen.append(len(texts)) or real(texts, *a, **k))
    n = encode_file(encoder, src, tmp_path / "out" / "emb.npy", chunk_size=4, batch_size=3)
    assert n == 11 and seen == [4, 4, 3]  # never more than chunk_size texts in memory
    got = np.load(tmp_path / "out" / "emb.npy")
    assert got.shape == (11, 32) and got.dtype == np.float32
    assert torch.allclose(torch.from_numpy(got), real(TEXTS, batch_size=64), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["emb.npy"]  # the temp file was renamed


def test_queries_get_the_instruction_as_its_own_segment(encoder: TextEncoder, tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "q.jsonl.gz", [{"query": t} for t in TEXTS], gz=True)
    encode_file(encoder, src, tmp_path / "q.npy", Prompt("find the city", ": "), text_field="query", chunk_size=5)
    expected = encoder.encode(TEXTS, ["find the city"] * 11, instruction_separator=": ")
    assert torch.allclose(torch.from_numpy(np.load(tmp_path / "q.npy")), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"txt": "a"}', "field 'text': missing (required)"),
        ('{"text": 3}', "field 'text': must be a string, got int"),
        ('{"text": "a"', "invalid JSON"),
        ('["a"]', "expected a JSON object, got list"),
    ],
)
def test_a_bad_row_names_file_line_and_field(encoder, tmp_path: Path, line: str, message: str) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"text": "fine"}, "", line])
    with pytest.raises(InputFormatError) as err:
        encode_file(encoder, src, tmp_path / "emb.npy")
    assert str(err.value).startswith(f"{src}:3: ") and message in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing written


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "model_dir=, input=, output= required: bireco-encode model_dir=RUN input=IN.jsonl output=OUT.npy"),
        (["model_dir={tmp}", "input={tmp}/in.jsonl"], "output= required"),
        (
            ["model_dir={tmp}", "input={tmp}/missing.jsonl", "output={tmp}/o.npy"],
            "input={tmp}/missing.jsonl: no such file",
        ),
        (
            ["model_dir={tmp}", "input={tmp}/in.jsonl", "output={tmp}/o.npy"],
            "model_dir={tmp}: not a bireco-export folder",
        ),
        (["model_dir={tmp}", "input={tmp}/in.jsonl", "output={tmp}/o.npy", "kind=doc"], "kind must be 'query' or"),
        (["model_dir=null", "input={tmp}/in.jsonl", "output={tmp}/o.npy"], "model_dir= required"),
        (["model_dir={tmp}", "input={tmp}/in.jsonl", "output={tmp}"], "output={tmp}: is a folder; output= is the"),
    ],
    ids=["nothing-named", "no-output", "no-input-file", "not-a-model", "bad-kind", "null-model", "output-folder"],
)
def test_a_user_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], line: str
) -> None:
    """Each was a traceback (exit 1): an unset `???` setting, a bare FileNotFoundError / ValueError."""
    import bireco.cli as cli

    _write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    argv = ["bireco-encode", *(a.format(tmp=tmp_path) for a in args), "hydra/hydra_logging=none"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        cli.encode()
    err = [e for e in capsys.readouterr().err.splitlines() if e.strip()]
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"bireco-encode: error: {line.format(tmp=tmp_path)}")


def test_query_prompt_precedence() -> None:
    prompts = {"query": Prompt("default", ": "), "NQ-query": Prompt("nq", ": "), "STS12": Prompt("sts", ": ")}
    assert query_prompt(prompts, None, None, ": ") == Prompt("default", ": ")
    assert query_prompt(prompts, "NQ", None, ": ") == Prompt("nq", ": ")
    assert query_prompt(prompts, "STS12", None, ": ") == Prompt("sts", ": ")
    assert query_prompt(prompts, "NQ", "mine", "; ") == Prompt("mine", "; ")
    with pytest.raises(EncodeSettingError, match="task='nope' is not a prompt of this model"):
        query_prompt(prompts, "nope", None, ": ")


@pytest.mark.integration
def test_export_folder_run_dir_and_artifact_encode_alike(exported_run, tmp_path: Path) -> None:
    from bireco.eval.models import load_encoder

    src = _write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    final = json.loads((exported_run.run / "results.json").read_text())["final_artifact"]
    reference = None
    for i, model in enumerate([exported_run.export, exported_run.run, final]):
        resolved = resolve(model)
        enc = load_encoder(resolved.model)
        encode_file(enc, src, tmp_path / f"{i}.npy", chunk_size=4)
        got = torch.from_numpy(np.load(tmp_path / f"{i}.npy"))
        reference = got if reference is None else reference
        assert torch.allclose(got, reference, atol=1e-5), model
    assert resolve(exported_run.export).prompts["query"] == resolve(exported_run.run).prompts["query"]
    with pytest.raises(FileNotFoundError, match=rf"model_dir={tmp_path}: not a bireco-export folder"):
        resolve(tmp_path)


@pytest.mark.integration
def test_cli_equals_the_sentence_transformers_export(exported_run, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    src = _write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [f"model_dir={exported_run.export}", f"input={src}", "output=q.npy", "kind=query", "chunk_size=4"]
    encode = str(Path(sys.executable).parent / "bireco-encode")
    proc = subprocess.run([encode, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "q.npy"]  # no outputs/, .hydra/ or *.log
    st = SentenceTransformer(str(exported_run.export), device="cpu", local_files_only=True)
    assert np.allclose(np.load(tmp_path / "q.npy"), st.encode_query(TEXTS), atol=1e-5)
