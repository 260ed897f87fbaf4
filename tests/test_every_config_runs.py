"""Every config file runs a few steps on a tiny model (the paper presets on a tiny stand-in loaded by path).

The paper presets keep everything but the weights: their template, pooling, LoRA targets, gradient
checkpointing and the real `AutoModelForCausalLM.from_pretrained(path)` loading code run for real.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from bireco.pipeline import run_pipeline
from tests.helpers import compose_cfg

pytestmark = pytest.mark.integration

CHAT_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "</s>"]


@pytest.fixture(scope="module")
def fake_hub_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny Llama saved in plain Hugging Face layout, with the chat templates' special tokens."""
    out = tmp_path_factory.mktemp("fake_hub_model")
    texts = [f"person {i} lives in city {i % 7} and plays the violin {i % 3}" for i in range(300)]
    tok = train_tokenizer(texts, 400, out)
    tok.add_special_tokens({"additional_special_tokens": CHAT_TOKENS})
    spec = TinyLlamaSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    model = build_tiny_model(spec, tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _write_rows(folder: Path, sources: list[str], n: int = 24, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s in sources:
        rows = [
            {
                "query": f"{s} question {i} about topic {i % 5}",
                "positive": f"{s} answer {i} on topic {i % 5}",
                **({"negative": f"{s} unrelated {i}"} if i % 2 else {}),
            }
            for i in range(n)
        ]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if gz:
            with gzip.open(folder / f"{s}.jsonl.gz", "wt") as f:
                f.write(text)
        else:
            (folder / f"{s}.jsonl").write_text(text)
    return folder


PAPER_CASES = {
    "llama3.2-1b": ["pipeline=bireco"],
    "qwen2.5-1.5b": ["pipeline=baseline"],
    "mistral-7b": ["pipeline=only_q2d", "pooling=mean"],
    "llama3.2-3b": ["pipeline=only_d2q", "pooling=weighted_mean", "logger=wandb"],
    "llama3.1-8b": ["pipeline=stage1_only", "logger=none", "peft@stages.reconstruction.peft=lora"],
}


@pytest.mark.parametrize("model", sorted(PAPER_CASES))
def test_paper_preset_runs_on_a_tiny_stand_in(model: str, fake_hub_model: str, tmp_path: Path, bireco_cache) -> None:
    overrides = [
        f"model={model}",
        f"model.pretrained={fake_hub_model}",
        "model.dtype=float32",
        "model.max_length=160",
        *PAPER_CASES[model],
    ]
    cfg = compose_cfg(overrides)
    results = run_pipeline(cfg, tmp_path)
    assert results["base"] == fake_hub_model
    assert results["stages"] == list(cfg.pipeline.stages)
    for i, stage in enumerate(cfg.pipeline.stages):
        done = json.loads((tmp_path / "stages" / f"{i}-{stage}" / "stage_done.json").read_text())
        assert done["steps"] == 3
        assert all(v == v for v in done["metrics"].values()), done["metrics"]  # no NaN
    if "logger=wandb" in overrides:
        assert list((tmp_path / "stages").rglob("wandb/offline-run-*")), "wandb offline run not written"


@pytest.mark.parametrize("data", ["local", "echo_e5"])
def test_local_data_configs_run(data: str, tmp_path: Path, bireco_cache) -> None:
    if data == "local":
        folder = _write_rows(tmp_path / "data", ["alpha", "beta"], gz=True)
        extra = ["data.val_rows=8"]
    else:
        folder = _write_rows(tmp_path / "data", ["nq", "squad", "fever"])
        extra = ["data.val_rows=8"]
    cfg = compose_cfg([f"data={data}", f"data.path={folder}", "stages.warmup.batch_size=4", *extra])
    results = run_pipeline(cfg, tmp_path / "run")
    assert results["stages"] == ["reconstruction", "contrastive"]
    assert results["probe"] is None  # local data without a probe folder: no probe, never a fake number


def test_demo_experiment_runs(tmp_path: Path, bireco_cache) -> None:
    cfg = compose_cfg(["experiment=demo", "pipeline=baseline"])
    results = run_pipeline(cfg, tmp_path)
    assert results["probe"]["stage"] == "contrastive"


SHARED_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "train_pairs"


@pytest.mark.skipif(not SHARED_PAIRS.is_dir(), reason="../shared/data/train_pairs not present (CI has it)")
def test_local_data_trains_on_the_shared_training_pairs(tmp_path: Path, bireco_cache) -> None:
    cfg = compose_cfg(["data=local", f"data.path={SHARED_PAIRS}", "data.max_rows_per_source=400", "data.val_rows=32"])
    results = run_pipeline(cfg, tmp_path)
    done = json.loads((tmp_path / "stages" / "1-contrastive" / "stage_done.json").read_text())
    assert done["steps"] == 3 and done["metrics"]["val/loss"] > 0
    assert results["stages"] == ["reconstruction", "contrastive"]
