"""Turn per-token hidden states into one vector per text.

Last-token pooling must take the last *real* token whatever the padding side: peer frameworks that take
position -1 silently pool a pad token under right padding. Here the position comes from the attention mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}


def _register(name: str):
    def deco(fn):
        POOLINGS[name] = fn
        return fn

    return deco


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position of each row, for left or right padding.  (B, T) -> (B,)"""
    t = attention_mask.shape[1]
    positions = torch.arange(t, device=attention_mask.device).expand_as(attention_mask)
    # the largest position whose mask is 1; works for left padding, right padding and no padding
    return (positions * attention_mask.long()).amax(dim=1)


@_register("eos")
def eos_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of the final (EOS) token.  (B, T, H), (B, T) -> (B, H)"""
    idx = last_token_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


@_register("mean")
def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens.  (B, T, H), (B, T) -> (B, H)"""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


@_register("weighted_mean")
def weighted_mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (later tokens have seen more context under causal attention; SGPT)."""
    m = attention_mask.to(hidden.dtype)
    w = m.cumsum(1) * m  # 1..n over real tokens, 0 on padding  (B, T)
    return (hidden * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)


def get_pooling(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Look up a pooling by name, listing the valid choices on a typo."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise KeyError(f"unknown pooling '{name}'; choose one of {sorted(POOLINGS)}") from None
