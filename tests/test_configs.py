"""Every config file composes; the fairness of the ablations holds at the config level."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF_DIR, compose_cfg

GROUP_FILES = sorted(
    (p.parent.name, p.stem) for p in Path(CONF_DIR).glob("*/*.yaml") if p.parent.name not in ("experiment", "eval")
)
EVAL_FILES = sorted(p.stem for p in Path(CONF_DIR).glob("eval/*.yaml"))
GROUP_OVERRIDE = {
    "model": "model={}",
    "template": "template={}",
    "pooling": "pooling={}",
    "data": "data={}",
    "pipeline": "pipeline={}",
    "trainer": "trainer={}",
    "logger": "logger={}",
    "probe": "probe={}",
    "stage": "stage@stages.reconstruction={}",
    "peft": "peft@stages.reconstruction.peft={}",
}


def _flat(cfg) -> dict:
    out = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return out


@pytest.mark.parametrize(("group", "name"), GROUP_FILES)
def test_every_config_file_composes_and_resolves(group: str, name: str) -> None:
    overrides = [GROUP_OVERRIDE[group].format(name)]
    if name in ("local", "echo_e5"):
        overrides.append("data.path=/nonexistent")
    cfg = compose_cfg(overrides, fast=False)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.pipeline.stages


def test_experiment_demo_composes() -> None:
    cfg = compose_cfg(["experiment=demo"], fast=False)
    assert cfg.model.name == "tiny" and cfg.data.kind == "synthetic"


def test_bireco_and_baseline_differ_only_in_the_stage_list() -> None:
    bireco = _flat(compose_cfg(["pipeline=bireco"], fast=False))
    baseline = _flat(compose_cfg(["pipeline=baseline"], fast=False))
    differing = {k for k in bireco.keys() | baseline.keys() if bireco.get(k) != baseline.get(k)}
    assert differing == {"pipeline.name", "pipeline.stages"}
    assert bireco["pipeline.stages"] == ["reconstruction", "contrastive"]
    assert baseline["pipeline.stages"] == ["contrastive"]


@pytest.mark.parametrize(("pipeline", "alpha"), [("only_q2d", 1.0), ("only_d2q", 0.0), ("bireco", 0.2)])
def test_direction_ablations_change_only_alpha(pipeline: str, alpha: float) -> None:
    ablation = _flat(compose_cfg([f"pipeline={pipeline}"], fast=False))
    bireco = _flat(compose_cfg(["pipeline=bireco"], fast=False))
    differing = {k for k in bireco if bireco[k] != ablation[k]}
    assert ablation["stages.reconstruction.alpha"] == alpha
    assert differing <= {"pipeline.name", "stages.reconstruction.alpha"}


@pytest.mark.parametrize(
    ("model", "template", "s1", "s2"),
    [
        ("llama3.2-1b", "llama3", (32, 2), (128, 1)),
        ("qwen2.5-1.5b", "qwen2", (32, 4), (128, 1)),
        ("llama3.2-3b", "llama3", (16, 8), (64, 2)),
        ("mistral-7b", "mistral", (1, 64), (32, 4)),
        ("llama3.1-8b", "llama3", (1, 64), (32, 4)),
    ],
)
def test_paper_presets_carry_the_paper_settings(model: str, template: str, s1, s2) -> None:
    cfg = compose_cfg([f"model={model}"], fast=False)
    rec, con = cfg.stages.reconstruction, cfg.stages.contrastive
    assert cfg.template.name == template
    assert (rec.batch_size, rec.accumulate_grad_batches) == s1
    assert (con.batch_size, con.accumulate_grad_batches) == s2
    assert (rec.max_steps, rec.optim.lr, rec.optim.warmup_steps, rec.alpha) == (2000, 4e-5, 300, 0.2)
    assert (con.max_steps, con.optim.lr, con.optim.warmup_steps, con.scale) == (1000, 2e-4, 300, 50.0)
    assert not rec.peft.enabled
    assert (con.peft.r, con.peft.alpha, con.peft.dropout) == (16, 32, 0.05)
    assert set(con.peft.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert cfg.model.max_length == 512 and cfg.pooling.name == "eos"


def test_template_override_beats_the_model_choice() -> None:
    assert compose_cfg(["model=qwen2.5-1.5b", "template=llama3"], fast=False).template.name == "llama3"


@pytest.mark.parametrize("name", EVAL_FILES)
def test_every_eval_config_composes(name: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"eval={name}", "run_dir=/some/run"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.eval.name == name and cfg.eval.kind in ("local", "mteb", "none")
