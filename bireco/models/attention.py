"""Attention mode of the encoder passes: `causal` (the paper) or `bidirectional` (LLM2Vec, GritLM, NV-Embed).

The hook is transformers' own `is_causal` (5.2+, huggingface/transformers#43705), no copied model code: passed
to a decoder's forward, it makes the mask builders return a bidirectional padding mask *and* reaches the
attention functions, so SDPA / flash attention are not told `is_causal=True` when transformers drops an
all-ones mask (llm2vec #74 and #79 failed exactly there). Every encoder pass names its mode explicitly, so
neither SDPA's default nor a checkpoint's config decides it. Saved as `is_causal: false` in a `config.json`,
a plain `AutoModel.from_pretrained` honours the same flag, which is how the sentence-transformers export
stays bidirectional without remote code.

Only the encoder passes (embeddings, in every stage, evaluation and export) follow the mode; Stage I's decoder
passes over `[anchor ; tokens]`, generation and the tiny preset's warm-up LM are next-token predictors and stay
causal.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from bireco.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

CAUSAL, BIDIRECTIONAL = "causal", "bidirectional"
ATTENTION_MODES = (CAUSAL, BIDIRECTIONAL)
# the architectures whose bidirectional mode is tested (tests/models/test_attention.py); others may silently
# keep a causal path (a custom attention module, a hard-coded mask), so they are refused rather than trusted
BIDIRECTIONAL_MODEL_TYPES = ("llama", "qwen2", "mistral")


class AttentionModeError(UserError, ValueError):
    """`model.attention` names an unknown mode, or bidirectional for an architecture it is not supported on."""


def check_attention(mode: str, model_type: str | None = None) -> None:
    """Refuse an unknown mode, and bidirectional attention on an architecture outside the tested ones."""
    if mode not in ATTENTION_MODES:
        raise AttentionModeError(f"model.attention={mode!r}: choose one of {list(ATTENTION_MODES)}")
    if mode == BIDIRECTIONAL and model_type is not None and model_type not in BIDIRECTIONAL_MODEL_TYPES:
        raise AttentionModeError(
            f"model.attention=bidirectional is supported for model types {list(BIDIRECTIONAL_MODEL_TYPES)}, "
            f"not '{model_type}'; use model.attention=causal"
        )


def attention_kwargs(mode: str) -> dict[str, bool]:
    """The decoder forward kwargs for one pass in `mode` (always explicit, so no default decides)."""
    check_attention(mode)
    return {"is_causal": mode == CAUSAL}


def reset_checkpoint_causality(model: PreTrainedModel) -> None:
    """Undo a checkpoint's `is_causal: false` (a bidirectional embedder's config): bireco sets the mode per pass,
    and Stage I's decoder passes, which pass nothing, would otherwise silently see the tokens they predict."""
    if getattr(model.config, "is_causal", True) is False:
        log.warning(
            "the checkpoint's config says is_causal=false; bireco chooses attention per pass (model.attention), "
            "so its decoder passes are made causal again"
        )
        model.config.is_causal = True


@torch.no_grad()
def attends_ahead(decoder: nn.Module, vocab_size: int, **forward_kwargs: bool) -> bool:
    """Whether position 0's hidden state changes with the last token: True iff the pass is bidirectional.

    A batch of one without padding, the case where transformers drops the all-ones mask and SDPA's `is_causal`
    decides alone (llm2vec #74). `forward_kwargs` (e.g. `attention_kwargs(mode)`) go to the forward; none =
    what the model's own config gives, i.e. what a plain `from_pretrained` of it does.
    """
    device = next(decoder.parameters()).device
    ids = (torch.arange(1, 6, device=device) % vocab_size)[None]  # (1, 5)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab_size
    mask = torch.ones_like(ids)
    was_training = decoder.training
    decoder.eval()  # dropout would make two passes differ by itself
    try:
        before = decoder(input_ids=ids, attention_mask=mask, use_cache=False, **forward_kwargs).last_hidden_state
        after = decoder(input_ids=changed, attention_mask=mask, use_cache=False, **forward_kwargs).last_hidden_state
    finally:
        decoder.train(was_training)
    return not torch.allclose(before[0, 0].float(), after[0, 0].float(), rtol=1e-4, atol=1e-6)
