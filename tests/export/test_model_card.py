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
