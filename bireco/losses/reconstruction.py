"""Stage I loss: EBQ2D and EBD2Q — decode one side of a pair from the other side's embedding.

Decoder input is `[anchor ; Embed(tokens)]`: the anchor (an embedding from the encoder pass, with gradients)
sits at position 0, right before the first real token, so the anchor is always adjacent to the text and
positions are consistent. The LM head is the backbone's own; only target positions reach it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from bireco.losses.lm_head import linear_cross_entropy_sum
from bireco.models.encoder import decoder_of, positions_from_mask
from bireco.models.templates import Segment


def target_mask(attention_mask: torch.Tensor, segments: torch.Tensor, target_segments: Iterable[int]) -> torch.Tensor:
    """Which tokens are predicted: real tokens whose segment is listed.  (B, T) bool"""
    allowed = torch.zeros(len(Segment), dtype=torch.bool, device=segments.device)
    allowed[list(target_segments)] = True
    return attention_mask.bool() & allowed[segments.clamp_min(0)]


def anchored_hidden_states(
    model: nn.Module, anchor: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Last hidden states of `[anchor ; Embed(input_ids[:, :-1])]`: position j predicts `input_ids[:, j]`.

    The one place that lays out a Stage I decoder input; the loss and `bireco.reconstruct` (which scores and
    decodes from an embedding) both use it, so they can never disagree about where the anchor sits.

    Args:
        anchor: (B, H) one vector per sequence.
        input_ids / attention_mask: (B, T) right-padded side to reconstruct.

    Returns:
        (B, T, H) hidden states after the final norm.
    """
    # checked on the device, not with bool(): no host sync in the training step (on CUDA a failure surfaces as a
    # device-side assert at the next sync)
    torch._assert_async(
        attention_mask[:, 0].all(),
        "reconstruction inputs must be right-padded (the anchor must touch the first real token)",
    )
    embed = model.get_input_embeddings()
    tok = embed(input_ids[:, :-1])  # (B, T-1, H): the last token is never an input (nothing follows it)
    x = torch.cat([anchor.to(tok.dtype)[:, None, :], tok], dim=1)  # (B, T, H)
    mask = torch.cat([torch.ones_like(attention_mask[:, :1]), attention_mask[:, :-1]], dim=1)  # (B, T)
    return decoder_of(model)(
        inputs_embeds=x, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=False
    ).last_hidden_state


def anchored_lm_loss_sum(
    model: nn.Module,
    anchor: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced next-token loss of `input_ids` given `anchor` as the first input vector.

    Args:
        model: the causal LM (its decoder stack, input embeddings and LM head are used).
        anchor: (B, H) one vector per sequence.
        input_ids: (B, T) right-padded token ids of the side to reconstruct.
        attention_mask: (B, T).
        targets: (B, T) bool, which tokens of `input_ids` count in the loss.
        chunk_size: LM-head chunk (rows) for the fused loss.

    Returns:
        (sum of token losses, number of target tokens) — sums, so callers can average over a whole batch.
    """
    hidden = anchored_hidden_states(model, anchor, input_ids, attention_mask)  # (B, T, H)
    weight = model.get_output_embeddings().weight  # (V, H)
    loss_sum = linear_cross_entropy_sum(hidden[targets], weight, input_ids[targets], chunk_size)
    return loss_sum, targets.sum()


def bidirectional_reconstruction_loss(
    model: nn.Module,
    e_q: torch.Tensor | None,
    e_d: torch.Tensor | None,
    query: dict[str, torch.Tensor],
    document: dict[str, torch.Tensor],
    alpha: float,
    target_segments: Iterable[int],
    chunk_size: int = 4096,
    denominators: Mapping[str, torch.Tensor] | None = None,
    scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """L_I = α·L_Q2D + (1−α)·L_D2Q, each the mean over its target tokens in the batch.

    A direction with zero weight is skipped entirely (α = 1 or 0 in the direction ablations), so its encoder
    and decoder passes cost nothing; its loss is then absent from the result.

    Args:
        e_q: (B, H) query embeddings (EBQ2D anchors), or None when α = 0.
        e_d: (B, H) document embeddings (EBD2Q anchors), or None when α = 1.
        query / document: padded batches with `input_ids`, `attention_mask`, `segments`.
        denominators: direction (`q2d`, `d2q`) -> the number of target tokens its mean is over; None = this
            batch's own. With gradient accumulation and DDP this is the whole global batch's count (every
            micro-batch of the step on every rank), so the step's gradient is that of one pass over the global
            batch, however unevenly the tokens fall on micro-batches and ranks.
        scale: multiplies each direction's loss; the trainer divides by it again (accumulation: the mean over
            micro-batches; DDP: the mean over ranks), so pass `micro-batches × ranks` with global denominators.
    """
    segs = list(target_segments)
    out: dict[str, torch.Tensor] = {}
    total = 0.0
    for name, weight, anchor, side in (("q2d", alpha, e_q, document), ("d2q", 1.0 - alpha, e_d, query)):
        if weight == 0.0:
            continue
        tm = target_mask(side["attention_mask"], side["segments"], segs)
        s, n = anchored_lm_loss_sum(model, anchor, side["input_ids"], side["attention_mask"], tm, chunk_size)
        if denominators is not None:  # this micro-batch's share of the global batch's mean (see Args)
            n = denominators[name]
        out[f"loss_{name}"] = s * scale / n.clamp_min(1)
        total = total + weight * out[f"loss_{name}"]
    out["loss"] = total
    return out
