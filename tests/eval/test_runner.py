"""The evaluation runner: exact metrics end to end, trustworthy caching, fail-fast offline, summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import bireco.eval.runner as runner
from bireco.errors import ConfigError
from bireco.eval.local_tasks import load_local_task
from bireco.eval.mteb_wrapper import MtebEncoder
from bireco.eval.prompt_check import PromptMismatchError
from bireco.eval.runner import EvalDataError, evaluate_tasks, resolve_tasks, run_eval, summarize
from bireco.models.encoder import TextEncoder
from bireco.models.templates import Template
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from bireco.pipeline import run_pipeline
from tests.eval.test_local_tasks import CORPUS, QUERIES, RETRIEVAL_VECTORS, LookupEncoder, write_beir
from tests.helpers import CONF_DIR, compose_cfg

PERFECT = [("q1", "d1", 1), ("q2", "d4", 1), ("q2", "d3", 1)]
REVERSED = [("q1", "d4", 1), ("q2", "d1", 1), ("q2", "d2", 1)]


def test_summary_holds_the_hand_computed_metrics(tmp_path: Path) -> None:
    tasks = [
        load_local_task(write_beir(tmp_path / "perfect", CORPUS, QUERIES, PERFECT)),
        load_local_task(write_beir(tmp_path / "reversed", CORPUS, QUERIES, REVERSED)),
    ]
    results = evaluate_tasks(LookupEncoder(RETRIEVAL_VECTORS), tasks, tmp_path / "mteb", batch_size=4)
    summary = summarize(
        results,
        {"perfect": "Retrieval", "reversed": "Retrieval"},
        {"x": 1},
        {t.metadata.name: t.metadata.main_score for t in tasks},
    )
    import math

    reversed_ndcg = (1 / math.log2(5) + (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))) / 2
    assert summary["tasks"]["perfect"] == {
        "category": "Retrieval",
        "main_score": pytest.approx(100.0),
        "metric": "ndcg_at_10",
    }
    assert summary["tasks"]["reversed"]["main_score"] == pytest.approx(100 * reversed_ndcg, abs=1e-3)
    assert summary["categories"]["Retrieval"] == pytest.approx((100 + 100 * reversed_ndcg) / 2, abs=1e-3)
    assert summary["average"] == summary["categories"]["Retrieval"]
    # mteb's own per-task result files are kept next to the summary
    assert list((tmp_path / "mteb").rglob("perfect.json"))


def test_truncated_widths_are_scored_apart(tmp_path: Path) -> None:
    """A Matryoshka width is the embedding's prefix re-normalised, scored as its own model (own cache entries)."""
    from bireco.eval.matryoshka import TruncatedEncoder

    task = load_local_task(write_beir(tmp_path / "perfect", CORPUS, QUERIES, PERFECT))
    full = LookupEncoder(RETRIEVAL_VECTORS)
    scores = {
        d: evaluate_tasks(TruncatedEncoder(full, d), [task], tmp_path / "mteb", 4)["perfect"].get_score()
        for d in (1, 2)
    }
    plain = evaluate_tasks(full, [task], tmp_path / "mteb", 4)["perfect"].get_score()
    assert scores[2] == pytest.approx(plain) == pytest.approx(1.0)
    assert scores[1] < 0.99  # one coordinate of these 2-d vectors cannot rank the documents
    assert TruncatedEncoder(full, 1).mteb_model_meta.name.endswith("-d1")
    with pytest.raises(ValueError, match="not a width"):
        TruncatedEncoder(full, 3)


def test_rerun_skips_finished_tasks_but_not_changed_data(tmp_path: Path, monkeypatch) -> None:
    folder = write_beir(tmp_path / "task", CORPUS, QUERIES, PERFECT)
    model = LookupEncoder(RETRIEVAL_VECTORS)
    first = evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4)["task"].get_score()
    calls = []
    real = runner.mteb.evaluate
    monkeypatch.setattr(runner.mteb, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4)["task"].get_score()
    assert calls == [] and again == first  # same weights, same data: read back, not recomputed
    write_beir(folder, CORPUS, QUERIES, REVERSED)  # the data changed: a new revision is evaluated anew
    changed = evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4)["task"].get_score()
    assert calls == [1] and changed < first


def test_other_inputs_never_get_an_old_score(tmp_path: Path, monkeypatch) -> None:
    """Same weights and data, another prompt (separator, instruction, template), pooling or length: re-scored."""
    folder = write_beir(tmp_path / "task", CORPUS, QUERIES, PERFECT)
    model = LookupEncoder(RETRIEVAL_VECTORS)
    evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4, {"task": "inputs-a"})
    calls = []
    real = runner.mteb.evaluate
    monkeypatch.setattr(runner.mteb, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4, {"task": "inputs-a"})
    assert calls == []
    evaluate_tasks(model, [load_local_task(folder)], tmp_path / "mteb", 4, {"task": "inputs-b"})
    assert calls == [1]


def test_the_inputs_key_follows_every_prompt_setting(tiny_text_encoder: TextEncoder) -> None:
    from types import SimpleNamespace

    task = SimpleNamespace(metadata=SimpleNamespace(name="T", type="Retrieval"))

    def key(separator: str = ": ", instruction: str = "find the city", pooling: str = "eos") -> str:
        enc = TextEncoder(
            tiny_text_encoder.model, tiny_text_encoder.tokenizer, tiny_text_encoder.template, pooling, 64
        )
        wrapper = MtebEncoder(enc, "t/tiny", "rev", {"T": instruction}, instruction_separator=separator)
        return runner.inputs_key(wrapper, runner.evaluation_prompts(wrapper, task))

    assert key() == key()
    assert len({key(), key(separator="; "), key(instruction="find the person"), key(pooling="mean")}) == 4


def test_new_weights_never_get_an_old_score(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "task", CORPUS, QUERIES, PERFECT)
    old = LookupEncoder(RETRIEVAL_VECTORS)
    evaluate_tasks(old, [load_local_task(folder)], tmp_path / "mteb", 4)
    swapped = {
        **RETRIEVAL_VECTORS,
        "query q1": RETRIEVAL_VECTORS["query q2"],
        "query q2": RETRIEVAL_VECTORS["query q1"],
    }
    new = LookupEncoder(swapped)
    new.mteb_model_meta = new.mteb_model_meta.model_copy(update={"revision": "2"})  # = a new content hash
    score = evaluate_tasks(new, [load_local_task(folder)], tmp_path / "mteb", 4)["task"].get_score()
    assert score < 0.99


def test_mteb_en_has_the_papers_56_tasks_and_fails_fast_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=["eval=mteb_en"])
    tasks, categories = resolve_tasks(cfg.eval)
    counts = {c: list(categories.values()).count(c) for c in set(categories.values())}
    assert counts == {
        "Retrieval": 15,
        "Reranking": 4,
        "Clustering": 11,
        "PairClassification": 3,
        "Classification": 12,
        "STS": 10,
        "Summarization": 1,
    }
    assert all(t.metadata.type == categories[t.metadata.name] for t in tasks)
    task = next(t for t in tasks if t.metadata.name == "SciFact")
    start = time.monotonic()
    with pytest.raises(EvalDataError, match=r"SciFact.*could not be reached"):
        runner._load_data(task)
    assert time.monotonic() - start < 30


@pytest.fixture(scope="module")
def tiny_text_encoder(tmp_path_factory) -> TextEncoder:
    texts = [f"person {i} lives in city {i % 7} and plays the violin" for i in range(200)]
    tok = train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))
    spec = TinyLlamaSpec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    model = build_tiny_model(spec, tok).eval()
    return TextEncoder(model, tok, Template(instruction_separator="; "), "eos", 64)


def test_wrapper_embeddings_equal_the_training_time_encoder(tiny_text_encoder: TextEncoder, tmp_path: Path) -> None:
    enc = tiny_text_encoder
    wrapper = MtebEncoder(
        enc, "t/tiny", "rev", {"T": "find the city"}, instruction_separator=": ", batch_size=2, cache_dir=tmp_path
    )
    texts = ["person 3 lives in city 3", "violin", "person 12 plays the violin in city 5 and more"]
    # documents: exactly what the training forward pass produces
    batch = enc.tokenize(texts)
    with torch.no_grad():
        train_side = torch.nn.functional.normalize(enc(batch["input_ids"], batch["attention_mask"]), dim=-1)
    assert torch.allclose(torch.from_numpy(wrapper.encode_texts(texts, None)), train_side, atol=1e-5)
    # queries: the instruction as its own segment with the evaluation separator
    q = enc.bound.encode_batch(texts, ["find the city"] * 3, 64, separator=": ")
    from bireco.models.templates import pad_encoded

    qb = pad_encoded(q, enc.pad_id)
    with torch.no_grad():
        q_train = torch.nn.functional.normalize(enc(qb["input_ids"], qb["attention_mask"]), dim=-1)
    got = wrapper.encode_texts(texts, "find the city")
    assert torch.allclose(torch.from_numpy(got), q_train, atol=1e-5)
    # the second call is served from the embedding cache
    enc.encode = None  # type: ignore[assignment]  # would fail if called
    try:
        assert (wrapper.encode_texts(texts, "find the city") == got).all()
    finally:
        del enc.encode


def test_instructions_go_to_queries_only() -> None:
    from mteb.types import PromptType

    w = MtebEncoder.__new__(MtebEncoder)
    w.instructions, w.symmetric_tasks = {"T": "do it"}, ("STS",)
    assert w.instruction_for("T", "Retrieval", PromptType.query) == "do it"
    assert w.instruction_for("T", "Retrieval", PromptType.document) is None
    assert w.instruction_for("T", "STS", None) == "do it"
    assert w.instruction_for("T", "Retrieval", None) is None


def compose_eval(overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("eval", overrides=overrides)


@pytest.mark.integration
def test_bireco_eval_on_a_trained_run(tmp_path: Path, bireco_cache: str) -> None:
    run = tmp_path / "run"
    run_pipeline(compose_cfg(["pipeline=baseline"]), run)
    from bireco.audit.cli import run_audit
    from bireco.eval.contamination import contamination_by_task

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        _, audit = run_audit(compose("audit", overrides=[f"run_dir={run}"]), tmp_path / "audit", [f"run_dir={run}"])
    summary = run_eval(compose_eval([f"run_dir={run}", "batch_size=16", "eval.dims=[16,192]"]), tmp_path / "eval")
    assert json.loads((tmp_path / "eval" / "summary.json").read_text()) == summary
    # Matryoshka widths: the full width (192) scores what the untruncated run does, a narrow one is its own run
    assert set(summary["dims"]) == {"16", "192"} and summary["settings"]["dims"] == [16, 192]
    full_width = summary["dims"]["192"]["tasks"]["retrieval"]["main_score"]
    assert full_width == pytest.approx(summary["tasks"]["retrieval"]["main_score"], abs=1e-6)
    assert summary["dims"]["16"]["average"] != summary["average"]
    assert set(summary["tasks"]) == {"retrieval"} and summary["tasks"]["retrieval"]["category"] == "Retrieval"
    # the run's contamination audit (bireco-audit run_dir=RUN): its counts next to each task's score
    assert summary["contamination_audit"] is True
    assert summary["tasks"]["retrieval"]["contamination"] == contamination_by_task(audit)["retrieval"]
    assert summary["tasks"]["retrieval"]["contamination"]["n_queries"] > 0
    assert summary["settings"]["training_datasets"] == audit["training_datasets"]["declared"]
    assert 0.0 <= summary["average"] <= 100.0
    settings = summary["settings"]
    for key in (
        "model",
        "weights_sha256",
        "template",
        "instructions",
        "max_length",
        "pooling",
        "dtype",
        "batch_size",
        "mteb_version",
        "git_commit",
        "data_revisions",
    ):
        assert key in settings, key
    assert settings["instructions"]["retrieval"].startswith("Given a question about a person")
    assert settings["artifact"]["kind"] == "adapter"
    # sweeps record the seed next to the scores
    assert settings["provenance"]["seed"] == 42 and settings["provenance"]["pipeline"] == "baseline"
    # prompt provenance: training's per source (from the artifact), evaluation's per task and side
    trained = settings["training_prompts"]
    assert trained == settings["artifact"]["prompts"] and trained["documents"]["format"] == "<|bos|>{text}<|eos|>"
    instr = settings["instructions"]["retrieval"]
    assert trained["queries"]["fact_qa"]["format"] == f"<|bos|>{instr}; {{text}}<|eos|>"
    assert settings["prompts"]["retrieval"]["query"]["format"] == f"<|bos|>{instr}: {{text}}<|eos|>"
    assert settings["prompts"]["retrieval"]["document"]["sha256"] == trained["documents"]["sha256"]
    # eval=local joins with ": " as the authors' evaluation does; training used the template's "; "
    [mismatch] = summary["prompt_check"]["mismatches"]
    assert (mismatch["task"], mismatch["side"]) == ("retrieval", "query")
    strict = compose_eval([f"run_dir={run}", "eval.strict_prompts=true"])
    with pytest.raises(PromptMismatchError, match="task retrieval"):
        run_eval(strict, tmp_path / "strict")
    assert not (tmp_path / "strict" / "summary.json").exists()
    # a width that is no whole number, or wider than the embedding, was a traceback after the whole evaluation ran
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bireco.eval.runner.evaluate_tasks", lambda *a, **k: pytest.fail("evaluated before the check"))
        for dims, line in (
            ("[16,abc]", "eval.dims: 'abc' not a whole number"),
            ("[999]", "eval.dims: 999 is not a width"),
        ):
            with pytest.raises(ConfigError, match=line):
                run_eval(compose_eval([f"run_dir={run}", f"eval.dims={dims}"]), tmp_path / "dims")
    # was a DataLoader traceback once the model had loaded
    for setting in ("batch_size=0", "batch_size=null", "max_tokens=-5"):
        with pytest.raises(ConfigError, match=rf"^{setting.replace('null', 'None')}: must be a whole number >= 1"):
            run_eval(compose_eval([f"run_dir={run}", setting]), tmp_path / "bs")


@pytest.mark.integration
def test_in_training_mteb_probe_logs_mteb_scores(tmp_path: Path, bireco_cache: str) -> None:
    folder = write_beir(tmp_path / "tasks" / "toy", CORPUS, QUERIES, PERFECT)
    cfg = compose_cfg(["pipeline=baseline", f"probe.mteb_data_root={folder.parent}", "probe.mteb_every_n_steps=2"])
    run_pipeline(cfg, tmp_path / "run")
    lines = (tmp_path / "run" / "stages" / "0-contrastive" / "mteb_probe.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [0, 2, 3]
    assert all(0.0 <= r["toy"] <= 100.0 for r in records)


def test_an_artifact_is_evaluated_with_the_template_it_was_trained_with(tmp_path: Path) -> None:
    from bireco.eval.models import resolve_model
    from bireco.utils.io import atomic_write_json

    template = {
        "name": "llama3",
        "prefix": "<|start_header_id|>user<|end_header_id|>\n\n",
        "suffix": "",
        "add_bos": True,
        "eos_token": "<|eot_id|>",
        "instruction_separator": "; ",
    }
    atomic_write_json(
        tmp_path / "artifact.json",
        {"kind": "full", "stage": "reconstruction", "template": template, "pooling": "mean", "max_length": 77},
    )
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"artifact={tmp_path}"])  # the presets' default template is `plain`
    m = resolve_model(cfg)
    assert (m.template, m.pooling, m.max_length) == (template, "mean", 77)
