"""Full fine-tuning keeps fp32 master weights under every trainer preset's precision (bf16 autocast on CPU here).

One real Stage I step at the paper's lr 4e-5, through the factory and a Lightning Trainer with the preset's
`precision`: the weights must move by the AdamW update computed in fp32 from the same gradients. Stepping bf16
weights (what `model.dtype: bfloat16` used to mean for Stage I) rounds most of that update away — the negative
control shows the test catches it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from bireco.data.prepare import prepare_data
from bireco.factory import build_trainer_and_module, load_dtype
from bireco.models.tiny import TinyLlamaSpec, build_tiny_model, train_tokenizer
from tests.helpers import compose_cfg

pytestmark = pytest.mark.integration

PRESETS = ["gpu", "ddp", "fsdp", "deepspeed_zero2"]
CHAT_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small Llama saved in bf16 (as hub checkpoints are), initialised like one (std 0.02)."""
    out = tmp_path_factory.mktemp("bf16_model")
    texts = [f"person {i} lives in city {i % 7} and plays the violin {i % 3}" for i in range(300)]
    tok = train_tokenizer(texts, 400, out)
    tok.add_special_tokens({"additional_special_tokens": CHAT_TOKENS})
    spec = TinyLlamaSpec(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    build_tiny_model(spec, tok).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


class Capture(L.Callback):
    """Weights, gradients and learning rate right before the optimizer step."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lr = optimizer.param_groups[0]["lr"]
        self.before = {
            n: (p.detach().float().clone(), p.grad.detach().float().clone())
            for n, p in pl_module.named_parameters()
            if p.grad is not None
        }


def one_step(cfg, init_from: str, tmp_path: Path) -> tuple[dict, dict, float, L.LightningModule]:
    trainer, module, datamodule, _ = build_trainer_and_module(
        cfg, "reconstruction", init_from, tmp_path / "stage", prepare_data(cfg), "t"
    )
    capture = Capture()
    trainer.callbacks.append(capture)
    trainer.fit(module, datamodule=datamodule)
    after = {n: p.detach().float() for n, p in module.named_parameters()}
    return capture.before, after, capture.lr, module


def fp32_adamw_update(before: dict, lr: float) -> dict[str, torch.Tensor]:
    """The step AdamW takes in fp32 from these gradients (fresh state, the stage's settings)."""
    params = {n: torch.nn.Parameter(w.clone()) for n, (w, _) in before.items()}
    for n, p in params.items():
        p.grad = before[n][1].clone()
    torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8).step()
    return {n: p.detach() - before[n][0] for n, p in params.items()}


def compare(before: dict, after: dict, lr: float) -> tuple[float, float]:
    """(fraction of the fp32 step's changed weights that changed, cosine of the update to the fp32 step)"""
    ref = fp32_adamw_update(before, lr)
    got = {n: after[n] - before[n][0] for n in ref}
    r, g = torch.cat([ref[n].flatten() for n in ref]), torch.cat([got[n].flatten() for n in ref])
    moved = r != 0
    return float((g[moved] != 0).float().mean()), float(torch.nn.functional.cosine_similarity(r, g, dim=0))


def _cfg(preset: str, model: str, master: str = "float32"):
    return compose_cfg(
        [
            "model=llama3.2-1b",
            f"model.pretrained={model}",
            f"model.master_dtype={master}",
            "model.max_length=160",
            "model.gradient_checkpointing=false",
            f"trainer={preset}",
            "trainer.accelerator=cpu",  # the preset's precision (bf16-mixed: autocast), on this machine's CPU
            "trainer.devices=1",
            "~trainer.strategy",
            "+trainer.strategy=auto",
            "pipeline=stage1_only",
            "stages.reconstruction.max_steps=1",
            "stages.reconstruction.optimizer.lr=4e-5",
            "stages.reconstruction.scheduler.warmup_steps=0",
            "stages.reconstruction.probe=false",
            "++trainer.limit_val_batches=0",
        ]
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_one_adamw_step_keeps_the_fp32_update(preset: str, bf16_model: str, tmp_path: Path) -> None:
    cfg = _cfg(preset, bf16_model)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.model.dtype == "bfloat16"
    assert load_dtype(cfg, cfg.stages.reconstruction) == "float32"
    before, after, lr, module = one_step(cfg, bf16_model, tmp_path)
    assert lr == pytest.approx(4e-5)
    assert all(p.dtype == torch.float32 for p in module.parameters())
    changed, cosine = compare(before, after, lr)
    assert changed >= 0.99 and cosine >= 0.99, (changed, cosine)


def test_bf16_weights_lose_most_of_the_update(bf16_model: str, tmp_path: Path) -> None:
    """Negative control: the same step on bf16 weights (the old behaviour) fails both bounds."""
    cfg = _cfg("gpu", bf16_model, master="bfloat16")  # the factory obeys it; validate_config refuses it
    before, after, lr, module = one_step(cfg, bf16_model, tmp_path)
    assert next(module.parameters()).dtype == torch.bfloat16
    changed, cosine = compare(before, after, lr)
    assert changed < 0.9 and cosine < 0.95, (changed, cosine)


def test_lora_stage_keeps_a_bf16_base_and_fp32_adapters(bf16_model: str, tmp_path: Path) -> None:
    from bireco.factory import build_encoder

    cfg = _cfg("gpu", bf16_model)
    enc = build_encoder(cfg, cfg.stages.contrastive, bf16_model)
    trainable = {p.dtype for p in enc.parameters() if p.requires_grad}
    frozen = {p.dtype for p in enc.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
