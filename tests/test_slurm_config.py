"""hydra/launcher=slurm composes for every paper preset and every multi-GPU trainer, resources from the config
(dry run: nothing is submitted), and the scale-out options are validated before anything is loaded."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from bireco.config import ConfigError, validate_config
from bireco.distributed import deepspeed_available
from tests.helpers import compose_cfg

PAPER_MODELS = ["llama3.2-1b", "qwen2.5-1.5b", "llama3.2-3b", "mistral-7b", "llama3.1-8b"]
GPU_TRAINERS = ["ddp", "fsdp"] + ([] if not deepspeed_available() else ["deepspeed_zero2"])


def _job(model: str, trainer: str, *extra: str):
    cfg = compose_cfg(
        [f"model={model}", f"trainer={trainer}", "hydra/launcher=slurm", "data=echo_e5", "data.path=/x", *extra],
        fast=False,
        return_hydra_config=True,
    )
    return cfg, OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.mark.parametrize("trainer", GPU_TRAINERS)
@pytest.mark.parametrize("model", PAPER_MODELS)
def test_slurm_resources_come_from_the_model_and_trainer(model: str, trainer: str) -> None:
    cfg, launcher = _job(model, trainer)
    validate_config(cfg)
    res = cfg.model.resources
    assert launcher["gpus_per_node"] == res.gpus_per_node == 8  # the paper: 8 GPUs per run
    assert launcher["tasks_per_node"] == res.gpus_per_node  # one task per GPU: Lightning's SLURM DDP layout
    assert launcher["nodes"] == cfg.trainer.num_nodes == res.nodes
    assert launcher["timeout_min"] == res.timeout_min > 0
    assert launcher["mem_gb"] == res.mem_gb
    assert cfg.trainer.devices == -1 and cfg.trainer.precision == "bf16-mixed"
    # the launcher class exists (hydra-submitit-launcher installed); nothing is instantiated or submitted
    assert get_class(launcher["_target_"]).__name__ == "SlurmLauncher"


def test_multi_node_moves_trainer_and_launcher_together() -> None:
    cfg, launcher = _job("llama3.1-8b", "ddp", "trainer.num_nodes=4")
    assert launcher["nodes"] == cfg.trainer.num_nodes == 4
    assert launcher["tasks_per_node"] == 8


def test_fsdp_and_deepspeed_trainers_carry_their_strategy() -> None:
    cfg, _ = _job("llama3.1-8b", "fsdp")
    assert OmegaConf.to_container(cfg.trainer.strategy) == {
        "name": "fsdp",
        "sharding_strategy": "FULL_SHARD",
        "state_dict_type": "full",
        "cpu_offload": False,
    }
    ds = compose_cfg(["trainer=deepspeed_zero2"], fast=False).trainer.strategy
    assert ds.name == "deepspeed" and ds.stage == 2 and ds.exclude_frozen_parameters is True


@pytest.mark.skipif(deepspeed_available(), reason="the error is for machines without deepspeed")
def test_missing_deepspeed_is_a_clear_config_error() -> None:
    cfg = compose_cfg(["trainer=deepspeed_zero2"], fast=False)
    with pytest.raises(ConfigError, match=r"DeepSpeed is not installed .*pip install deepspeed"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stages.contrastive.grad_cache.chunk_size=0"], "grad_cache.chunk_size must be a positive integer or null"),
        (["stages.contrastive.grad_cache.chunk_size=2.5"], "grad_cache.chunk_size must be a positive integer"),
        (["trainer=fsdp", "stages.contrastive.grad_cache.chunk_size=8"], "GradCache needs whole"),
        (
            ["trainer=deepspeed_zero2", "trainer.strategy.stage=3"],
            r"ZeRO-3\): parameters stay partitioned",
        ),
        (["trainer=ddp", "trainer.strategy=deepspeed_stage_3_offload"], r"ZeRO-3\): .*Use trainer=fsdp"),
        (["trainer=fsdp", "trainer.strategy.name=megatron"], "trainer.strategy.name='megatron': choose fsdp or"),
    ],
)
def test_scale_out_settings_are_validated(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(overrides, fast=False))


def test_grad_cache_chunk_composes_and_validates() -> None:
    cfg = compose_cfg(["trainer=ddp", "stages.contrastive.grad_cache.chunk_size=32"], fast=False)
    validate_config(cfg)
    assert cfg.stages.contrastive.grad_cache.chunk_size == 32
    assert cfg.stages.contrastive.loss.gather_across_ranks is True  # the paper's setting is the default


def test_the_launcher_sets_no_hub_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs get the submitting shell's environment from sbatch; the launcher exported HF_HUB_OFFLINE=0 when it was
    unset there, switching the hub on over a node profile's HF_HUB_OFFLINE=1."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _, launcher = _job("llama3.2-1b", "ddp")
    assert not any("HF_" in line for line in launcher["setup"] or [])
