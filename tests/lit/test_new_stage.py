"""A new stage is a config file and a loss class, with no edit anywhere in bireco: this test writes both (the
class below, the YAML into its own config folder on Hydra's search path) and trains the stage end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bireco.losses.objective import Batch, LossOutput, Objective, Step, embed
from bireco.models.encoder import TextEncoder
from bireco.pipeline import run_pipeline
from tests.helpers import artifact_weights, compose_cfg, logged_train_losses

pytestmark = pytest.mark.integration


class AlignPairs(Objective):
    """A toy objective: pull each query's embedding towards its positive's (1 - cosine), nothing else."""

    def __init__(self, *, weight: float) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        self.weight = weight

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        q, p = embed(encoder, batch["query"]), embed(encoder, batch["positive"])
        misalignment = 1 - torch.nn.functional.cosine_similarity(q, p).mean()
        return LossOutput({"loss": self.weight * misalignment, "misalignment": misalignment.detach()})


TOY_STAGE = """
loss:
  _target_: tests.lit.test_new_stage.AlignPairs
  weight: 2.0
with_negatives: false
probe: false
batch_size: 4
accumulate_grad_batches: 1
max_steps: 3
val_check_interval: 3
checkpoint_every_n_steps: 3
peft: {enabled: false}
optimizer: {_target_: torch.optim.SGD, _partial_: true, lr: 0.5}
scheduler: null
"""


def _toy_cfg(conf: Path, *overrides: str):
    (conf / "stage").mkdir(parents=True, exist_ok=True)
    (conf / "stage" / "toy.yaml").write_text(TOY_STAGE)
    return compose_cfg([f"hydra.searchpath=[file://{conf}]", "+stage@stages.toy=toy", *overrides])


def test_a_stage_from_a_config_file_and_a_class_trains(tmp_path: Path, bireco_cache: str) -> None:
    cfg = _toy_cfg(tmp_path / "conf", "pipeline.stages=[toy,contrastive]", "trainer.log_every_n_steps=1")
    results = run_pipeline(cfg, tmp_path / "run")
    assert results["stages"] == ["toy", "contrastive"]
    toy = tmp_path / "run" / "stages" / "0-toy"
    done = json.loads((toy / "stage_done.json").read_text())
    assert done["steps"] == 3 and {"train/loss", "train/misalignment"} <= set(done["metrics"])
    losses = logged_train_losses(toy)
    assert len(losses) == 3 and losses[max(losses)] < losses[min(losses)]  # SGD on the toy loss lowers it
    base = load_file(str(next(Path(done["init_from"]).glob("*.safetensors"))))
    weights = artifact_weights(toy)
    changed = [k for k, w in weights.items() if not torch.equal(w, base[k])]
    assert len(changed) > len(weights) / 2  # full fine-tuning: the toy loss reached the weights
    # the next stage starts from the toy stage's artifact
    second = json.loads((tmp_path / "run" / "stages" / "1-contrastive" / "stage_done.json").read_text())
    assert second["init_from"] == str(toy / "artifact")


def test_a_new_stage_s_settings_are_checked_before_anything_loads(tmp_path: Path) -> None:
    from bireco.config import ConfigError, validate_config

    cfg = _toy_cfg(tmp_path / "conf", "pipeline.stages=[toy]", "stages.toy.loss.weight=-1")
    with pytest.raises(ConfigError, match=r"^stages.toy.loss.weight must be positive, got -1$"):
        validate_config(cfg)
