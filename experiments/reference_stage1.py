"""Reference Stage I step: the straightforward implementation of the paper's release, kept as a yardstick.

Four separate forward passes of the full causal LM per batch — encode q, encode d, decode d from e_q, decode q
from e_d — each materializing the full-vocabulary logits of every position (padding included), and a plain
`F.cross_entropy` over them. `make bench` times bireco's Stage I against this on the same model, data and batch,
and `tests/bench/test_reference_stage1.py` proves both compute the same loss, so the speed and memory ratios
compare equal work.

Not part of the package on purpose: it is what bireco must beat, not something to use.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def _encode(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """EOS embedding from a full forward (LM head included: its logits are computed and thrown away).  (B, H)"""
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
    last = mask.sum(1) - 1  # right padding: the final real token is the EOS
    return out.hidden_states[-1][torch.arange(ids.shape[0], device=ids.device), last]


def _decode_loss(
    model: nn.Module, anchor: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean next-token CE of `ids` given `[anchor ; embed(ids[:, :-1])]`, from full (B, T, V) logits."""
    tok = model.get_input_embeddings()(ids[:, :-1])
    x = torch.cat([anchor.to(tok.dtype)[:, None, :], tok], dim=1)  # (B, T, H)
    m = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1)
    # (B, T, V): every position, padding included
    logits = model(inputs_embeds=x, attention_mask=m, use_cache=False).logits
    labels = ids.masked_fill(~targets, -100)
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


def reference_stage1_loss(
    model: nn.Module,
    query: dict[str, torch.Tensor],
    document: dict[str, torch.Tensor],
    alpha: float,
    target_segments: Iterable[int],
) -> dict[str, torch.Tensor]:
    """L = α·CE(d | e_q) + (1−α)·CE(q | e_d); batches right-padded with `input_ids`, `attention_mask`, `segments`.

    Returns:
        {"loss", "loss_q2d", "loss_d2q"}, the same keys and values as bireco's Stage I loss.
    """
    allowed = torch.tensor(sorted(set(target_segments)), device=query["segments"].device)

    def targets(side: dict[str, torch.Tensor]) -> torch.Tensor:
        return side["attention_mask"].bool() & torch.isin(side["segments"], allowed)

    e_q = _encode(model, query["input_ids"], query["attention_mask"])
    e_d = _encode(model, document["input_ids"], document["attention_mask"])
    q2d = _decode_loss(model, e_q, document["input_ids"], document["attention_mask"], targets(document))
    d2q = _decode_loss(model, e_d, query["input_ids"], query["attention_mask"], targets(query))
    return {"loss": alpha * q2d + (1 - alpha) * d2q, "loss_q2d": q2d, "loss_d2q": d2q}
