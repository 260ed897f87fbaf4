"""A bidirectional model exports as a sentence-transformers folder that loads bidirectional without remote code
(`is_causal: false` in its config.json), embeds exactly as bireco's encoder, and is refused when it would not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from bireco.errors import UserError
from bireco.export import EXPORT_FILE, export_run
from bireco.export.sentence_transformers import ExportAttentionError, Prompt, write_sentence_transformers
from bireco.models.attention import ATTENTION_MODES, attends_ahead
from bireco.models.backbone import save_artifact
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from bireco.runs import CONFIG_FILE, RESULTS_FILE, read_artifact_meta

TEXTS = [f"person {i} lives in city {i % 7}; she plays the violin {i} times" for i in range(200)]
SPEC = TinyLlamaSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, seed=3)
PROMPTS = {"query": Prompt("find the city", ": ")}
PROBES = ["person 3 lives in city 3", "violin", "she plays the violin 9 times in city 2 with person 4"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(TEXTS, 320, tmp_path_factory.mktemp("tok"))


def encoder(tokenizer, attention: str) -> TextEncoder:
    model = build_tiny_model(SPEC, tokenizer).eval()
    return TextEncoder(model, tokenizer, Template(), "eos", max_length=48, attention=attention)


def export_folder(enc: TextEncoder, out: Path) -> Path:
    with torch.no_grad():
        return write_sentence_transformers(
            enc.model, enc.tokenizer, enc.bound, "eos", 48, PROMPTS, out, out.parent / "work", enc.attention
        )


@pytest.mark.parametrize("attention", ATTENTION_MODES)
def test_the_folder_loads_in_the_trained_mode_and_embeds_as_bireco(tmp_path: Path, tokenizer, attention) -> None:
    from sentence_transformers import SentenceTransformer

    enc = encoder(tokenizer, attention)
    out = export_folder(enc, tmp_path / "st")
    assert json.loads((out / "config.json").read_text()).get("is_causal", True) is (attention == "causal")
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)  # no trust_remote_code
    assert attends_ahead(st[0].model, len(tokenizer)) is (attention == "bidirectional")
    ours = enc.encode(PROBES, batch_size=3)
    for batch_size in (1, 2):  # one text alone (no padding: the mask is dropped) and padded batches
        assert torch.allclose(torch.as_tensor(st.encode_document(PROBES, batch_size=batch_size)), ours, atol=1e-5)
    other = "causal" if attention == "bidirectional" else "bidirectional"
    enc.attention = other
    assert (enc.encode(PROBES, batch_size=3) - ours).abs().max() > 1e-3  # the modes really embed differently


def test_a_folder_that_would_load_causal_is_refused_naming_why(tmp_path: Path, tokenizer, monkeypatch) -> None:
    """As with a transformers that ignores `is_causal` in config.json: the loaded model attends causally."""
    monkeypatch.setattr("bireco.export.sentence_transformers.mark_bidirectional", lambda folder: None)
    with pytest.raises(ExportAttentionError) as info:
        export_folder(encoder(tokenizer, "bidirectional"), tmp_path / "st")
    assert isinstance(info.value, UserError)
    assert "model.attention=bidirectional: the exported folder, loaded without remote code, attends causally" in str(
        info.value
    )
    assert "\n" not in str(info.value)


def test_export_run_carries_the_runs_mode_everywhere(tmp_path: Path, tokenizer) -> None:
    """run config -> sentence-transformers folder, hf/merged's artifact.json and bireco_export.json."""
    from sentence_transformers import SentenceTransformer

    enc = encoder(tokenizer, "bidirectional")
    template = Template().to_dict()
    meta = {"stage": "contrastive", "template": template, "pooling": "eos", "max_length": 48}
    final = save_artifact(enc.model, tokenizer, tmp_path / "run" / "final", {**meta, "attention": "bidirectional"})
    run_cfg = {
        "template": template,
        "pooling": {"name": "eos"},
        "model": {"max_length": 48, "attention": "bidirectional"},
    }
    (tmp_path / "run" / CONFIG_FILE).write_text(yaml.safe_dump(run_cfg))
    results = {"final_artifact": str(final), "pipeline": "bireco", "model": "tiny", "stage_results": []}
    (tmp_path / "run" / RESULTS_FILE).write_text(json.dumps(results))
    out = export_run(tmp_path / "run", tmp_path / "export", hf_adapter=False)
    assert json.loads((out / EXPORT_FILE).read_text())["attention"] == "bidirectional"
    assert read_artifact_meta(out / "hf" / "merged")["attention"] == "bidirectional"
    assert TextEncoder.from_artifact(out / "hf" / "merged", device="cpu").attention == "bidirectional"
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert torch.allclose(torch.as_tensor(st.encode_document(PROBES)), enc.encode(PROBES), atol=1e-5)
