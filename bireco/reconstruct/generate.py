"""Decode text from an embedding: the embedding is the first input vector, exactly as Stage I trained it.

Stage I feeds `[anchor ; Embed(BOS prefix [instruction sep] text suffix)]` and predicts every token after the
anchor. Decoding reproduces that layout: the anchor at position 0, then the template's fixed head (BOS, prefix
and, for a query, its instruction and separator) *fed* as in training — these tokens are known, so they are not
generated — then the body is generated token by token until the template's EOS id (or its suffix, or the
tokenizer's EOS) appears or `max_new_tokens` is reached. The head and suffix come from
`BoundTemplate.encode_batch` itself, so decoding can never drift from the training layout.

Rows are decoded together with left padding (the anchor touches the first real token; positions are counted
from the mask, as the encoder does) and a KV cache: one forward per new token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.generation import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from bireco.models.encoder import decoder_of, positions_from_mask
from bireco.models.templates import BoundTemplate, Segment


@dataclass
class DecodeConfig:
    """How tokens are chosen.

    Args:
        max_new_tokens: cap on generated body tokens (the stop token included).
        do_sample: sample from the (warped) distribution instead of taking the argmax (greedy).
        temperature / top_k / top_p: sampling warpers (transformers' own); 0 / 1.0 switch top-k / top-p off.
        seed: seed of the sampling generator, so sampled decoding is reproducible too.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:  # transformers' warper refuses it even when greedy
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"top_k must be >= 0 and top_p in (0, 1], got {self.top_k} / {self.top_p}")


@dataclass
class TargetLayout:
    """The fixed parts of a templated target sequence around its body."""

    head: list[int]  # BOS + prefix (+ instruction + separator): fed after the anchor, never generated
    suffix: list[int]  # template suffix before EOS: generating it ends the body
    stop_ids: set[int]  # the template's EOS id and the tokenizer's EOS id


def target_layout(bound: BoundTemplate, instruction: str | None = None) -> TargetLayout:
    """Head / suffix of a target sequence, read off `encode_batch` of a placeholder body (never re-derived)."""
    enc = bound.encode_batch(["x"], [instruction], max_length=1 << 20)[0]
    segs = enc.segments
    first = segs.index(Segment.TEXT)
    last = len(segs) - 1 - segs[::-1].index(Segment.TEXT)
    stop = {bound.eos_id}
    if bound.tokenizer.eos_token_id is not None:
        stop.add(int(bound.tokenizer.eos_token_id))
    return TargetLayout(enc.input_ids[:first], enc.input_ids[last + 1 : -1], stop)


def _warpers(cfg: DecodeConfig) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if cfg.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k > 0:
        warpers.append(TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1.0:
        warpers.append(TopPLogitsWarper(cfg.top_p))
    return warpers


def _body(generated: list[int], layout: TargetLayout) -> list[int]:
    """Generated ids up to the first stop token / suffix, which are dropped."""
    out: list[int] = []
    n = len(layout.suffix)
    for t in generated:
        if t in layout.stop_ids:
            break
        out.append(t)
        if n and out[-n:] == layout.suffix:
            return out[:-n]
    return out


@torch.inference_mode()
def generate_from_anchors(
    model: nn.Module,
    anchors: torch.Tensor,
    heads: list[list[int]],
    layout: TargetLayout,
    cfg: DecodeConfig,
) -> list[list[int]]:
    """Generate one body per anchor.

    Args:
        model: the causal LM (plain or peft-wrapped; in eval mode for deterministic output).
        anchors: (B, H) embeddings, unnormalized, as the encoder returns them (what Stage I feeds).
        heads: per row, the token ids fed after the anchor (`TargetLayout.head`; rows may differ by instruction).
        layout: stop tokens and suffix.
        cfg: decoding settings.

    Returns:
        Per row, the generated body's token ids (stop token and suffix removed).
    """
    if anchors.shape[0] != len(heads):
        raise ValueError(f"{anchors.shape[0]} anchors but {len(heads)} heads")
    device = anchors.device
    embed = model.get_input_embeddings()
    lm_head = model.get_output_embeddings()
    decoder = decoder_of(model)
    b, t = len(heads), 1 + max(len(h) for h in heads)
    # left padding: every row's last input is its last head token, so all rows predict their next token together
    x = torch.zeros(b, t, anchors.shape[1], dtype=embed.weight.dtype, device=device)  # (B, T, H)
    mask = torch.zeros(b, t, dtype=torch.long, device=device)  # (B, T)
    for i, head in enumerate(heads):
        start = t - 1 - len(head)
        x[i, start] = anchors[i].to(x.dtype)
        if head:
            x[i, start + 1 :] = embed(torch.tensor(head, device=device))
        mask[i, start:] = 1
    warpers = _warpers(cfg)
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.do_sample else None
    out = torch.empty(b, 0, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    cache = None
    positions = positions_from_mask(mask)
    inputs = x
    stop_ids = torch.tensor(sorted(layout.stop_ids), device=device)
    suffix = torch.tensor(layout.suffix, device=device) if layout.suffix else None
    for _ in range(cfg.max_new_tokens):
        res = decoder(
            inputs_embeds=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        )
        cache = res.past_key_values
        logits = lm_head(res.last_hidden_state[:, -1]).float()  # (B, V)
        if cfg.do_sample:
            probs = torch.softmax(warpers(out, logits), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        else:
            nxt = logits.argmax(dim=-1)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= torch.isin(nxt, stop_ids)
        if suffix is not None and out.shape[1] >= len(suffix):
            done |= (out[:, -len(suffix) :] == suffix).all(dim=1)
        if bool(done.all()):
            break
        inputs = embed(nxt[:, None])  # (B, 1, H)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    return [_body(row, layout) for row in out.tolist()]
