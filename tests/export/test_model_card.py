"""The model card: pipeline, config, data sources and the evaluation table, from the run's own files."""

from __future__ import annotations

import pytest
import yaml

from bireco.export.model_card import render_model_card
from bireco.export.sentence_transformers import Prompt

SUMMARY = {
    "tasks": {
        "scifact": {"category": "Retrieval", "main_score": 41.904, "metric": "ndcg_at_10"},
        "stsb": {"category": "STS", "main_score": 14.35, "metric": "cosine_spearman"},
    },
    "categories": {"Retrieval": 41.904, "STS": 14.35},
    "average": 28.127,
    "settings": {
        "mteb_version": "2.26.24",
        "eval": "local",
        "instruction_separator": ": ",
        "weights_sha256": "f" * 64,
    },
}
RUN_CFG = {
    "data": {
        "kind": "local",
        "path": "/data/pairs",
        "sources": {"nq": {"instruction": "Given a question, retrieve passages", "ratio": None}},
    },
    "template": {"name": "plain"},
    "seed": 42,
}


def _info(summary):
    return {
        "name": "my-embedder",
        "run_dir": "/runs/x",
        "results": {
            "pipeline": "bireco",
            "model": "tiny",
            "base": "/cache/warmup",
            "stage_results": [{"stage": "reconstruction", "steps": 300}, {"stage": "contrastive", "steps": 200}],
            "probe": {"recall@1": 0.25},
        },
        "run_cfg": RUN_CFG,
        "template": {"name": "plain", "add_bos": True, "prefix": "", "suffix": "", "eos_token": None},
        "pooling": "eos",
        "max_length": 128,
        "prompts": {"query": Prompt("Given a question, retrieve passages", ": ")},
        "summary": summary,
        "adapter": {"base": "/runs/x/stages/0-reconstruction/artifact", "base_revision": None, "base_exported": True},
        "stage_kinds": ["full", "adapter"],
        "base_hub_name": None,
    }


def test_card_has_pipeline_data_eval_table_and_config() -> None:
    card = render_model_card(_info(SUMMARY))
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "sentence-transformers"
    assert "| 0 | reconstruction | 300 | full fine-tuning |" in card
    assert "| 1 | contrastive | 200 | LoRA adapter |" in card
    assert "| nq | Given a question, retrieve passages | proportional |" in card
    assert "| scifact | Retrieval | ndcg_at_10 | 41.90 |" in card
    assert "| stsb | STS | cosine_spearman | 14.35 |" in card
    assert "| **average** | | | 28.13 |" in card
    assert "| `query` | Given a question, retrieve passages | `': '` |" in card
    assert "exported as `hf/base`" in card
    assert "causal attention (each token sees the ones before it)" in card
    bidirectional = render_model_card({**_info(SUMMARY), "attention": "bidirectional"})
    assert "bidirectional attention in the encoder (`is_causal: false`" in bidirectional
    config_block = card.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(config_block) == RUN_CFG


def test_card_without_an_evaluation_says_so() -> None:
    card = render_model_card(_info(None))
    assert "No evaluation summary was found" in card
    assert "| **average** |" not in card


@pytest.mark.integration
def test_exported_card_shows_the_runs_eval_summary(exported_run) -> None:
    card = (exported_run.export / "README.md").read_text()
    score = exported_run.summary["tasks"]["retrieval"]["main_score"]
    assert f"| retrieval | Retrieval | ndcg_at_10 | {score:.2f} |" in card
    assert "pipeline `bireco`" in card
    assert "| fact_qa | Given a question about a person, retrieve the profile that answers it | proportional |" in card


AUDIT = {
    "settings": {
        "jaccard_threshold": 0.8,
        "shingles": "word 5-grams",
        "library": "datasketch",
        "library_version": "2.0.0",
    },
    "train": {"rows": 11209, "path": "/data/pairs"},
    "eval": {"name": "local", "task_root": "/data"},
    "tasks": {
        "scifact": {
            "mteb_name": "SciFact",
            "fields": {"queries": {"n": 300, "exact": 2, "near": 1}, "corpus": {"n": 5183, "exact": 0, "near": 0}},
        },
        "wikiqa": {
            "mteb_name": None,
            "fields": {"queries": {"n": 237, "exact": 0, "near": 0}, "corpus": {"n": 2341, "exact": 5, "near": 0}},
        },
    },
    "training_datasets": {
        "declared": ["NQ", "SciFact"],
        "reasons": {"NQ": ["training source 'nq' comes from it"], "SciFact": ["audit: task 'scifact' shares texts"]},
        "overlapping_tasks_without_mteb_name": ["wikiqa"],
    },
}


def test_card_shows_the_audit_counts_and_the_mteb_declaration() -> None:
    card = render_model_card({**_info(SUMMARY), "audit": AUDIT})
    assert "| scifact | SciFact | 2 / 1 of 300 | 0 / 0 of 5183 |" in card
    assert "| wikiqa | — | 0 / 0 of 237 | 5 / 0 of 2341 |" in card
    assert 'training_datasets={"NQ", "SciFact"}' in card
    assert "- `NQ`: training source 'nq' comes from it" in card
    assert "overlap in tasks mteb does not have: ['wikiqa']" in card
    assert "Jaccard ≥ 0.8 of word 5-grams" in card


def test_card_without_an_audit_says_none_was_run_never_an_empty_declaration() -> None:
    card = render_model_card(_info(SUMMARY))  # /runs/x has no audit.json
    assert "No contamination audit was run" in card and "unknown, not empty" in card
    assert "training_datasets=" not in card
    cfg = {**RUN_CFG, "data": {**RUN_CFG["data"], "sources": {"nq": {"instruction": "q", "mteb_tasks": ["NQ"]}}}}
    assert "(a lower bound): ['NQ']" in render_model_card({**_info(SUMMARY), "run_cfg": cfg})


def test_card_reads_the_audit_json_of_the_run_folder(tmp_path) -> None:
    from bireco.runs import AUDIT_FILE
    from bireco.utils.io import atomic_write_json

    atomic_write_json(tmp_path / AUDIT_FILE, AUDIT)
    card = render_model_card({**_info(SUMMARY), "run_dir": str(tmp_path)})
    assert 'training_datasets={"NQ", "SciFact"}' in card
