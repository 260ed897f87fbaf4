"""Model FLOPs of a training step, counted from the shapes it runs (the convention MFU figures need stated).

Convention (`CONVENTION`, written next to every MFU figure):
- matmuls only: the decoder's linear layers (embedding lookup excluded), LoRA's A and B, the LM head where a
  stage applies it (Stage I's targets, the warm-up), and attention's two products over the *padded* length
  with no causal discount (what a masked SDPA computes; torch's FLOP counter counts the same);
- backward = activation gradients (1x the forward's matmuls, 2x for attention, whose both operands are
  activations) + weight gradients (2 x the trainable matmul parameters per token). Full fine-tuning is then
  the familiar 6N per token (+ attention); LoRA is 4N + 6 x its adapters' parameters;
- model FLOPs, not hardware FLOPs: GradCache's second forward and activation checkpointing are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CONVENTION = (
    "model FLOPs: decoder matmuls (no embedding lookup) + LoRA + LM head where applied + attention over the padded "
    "length (no causal discount); backward = activation grads (1x matmuls, 2x attention) + weight grads (2 x "
    "trainable matmul params per token): full fine-tuning 6N/token, LoRA 4N + 6N_lora; GradCache's re-forward and "
    "activation checkpointing not counted"
)


@dataclass(frozen=True)
class Pass:
    """One forward pass of a stage: `rows` sequences padded to `length`, `lm_head_tokens` of them through the
    LM head."""

    rows: int
    length: int
    lm_head_tokens: int = 0


def _dims(config: Any) -> tuple[int, int, int]:
    h = config.hidden_size
    head = getattr(config, "head_dim", None) or h // config.num_attention_heads
    return h, config.num_attention_heads * head, config.num_key_value_heads * head


def decoder_matmul_params(config: Any) -> int:
    """Parameters of the decoder's linear layers (attention projections + gated MLP), all layers."""
    h, q, kv = _dims(config)
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * config.intermediate_size
    return config.num_hidden_layers * per_layer


def _attention(config: Any, p: Pass) -> float:
    _, q, _ = _dims(config)
    return 4.0 * config.num_hidden_layers * q * p.length * p.length * p.rows  # QK^T and PV


def _lm_head(config: Any, p: Pass) -> float:
    return 2.0 * config.vocab_size * config.hidden_size * p.lm_head_tokens if p.lm_head_tokens else 0.0


def forward_flops(config: Any, p: Pass, adapter_params: int = 0) -> float:
    """FLOPs of one forward pass (matmuls + attention + LM head on `lm_head_tokens`)."""
    tokens = p.rows * p.length
    matmuls = 2.0 * (decoder_matmul_params(config) + adapter_params) * tokens
    return matmuls + _attention(config, p) + _lm_head(config, p)


def training_flops(config: Any, passes: Iterable[Pass], adapter_params: int | None = None) -> float:
    """Forward + backward FLOPs of a step's passes.

    Args:
        adapter_params: None = full fine-tuning (every matmul weight, the LM head included, is trained); else
            the trainable LoRA parameters (the base is frozen; its activation gradients are still computed).
    """
    total = 0.0
    adapters = adapter_params or 0
    for p in passes:
        fwd = forward_flops(config, p, adapters)
        tokens = p.rows * p.length
        if adapter_params is None:
            weights = 2.0 * decoder_matmul_params(config) * tokens + _lm_head(config, p)
        else:
            weights = 2.0 * adapters * tokens
        total += fwd + (fwd + _attention(config, p)) + weights
    return total
