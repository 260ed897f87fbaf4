"""TextEncoder = backbone + template + pooling. Usable without Lightning (eval, export, probes).

The encoder pass runs the decoder stack only: the LM head is never applied to encoder inputs (with a 128k
vocabulary it would cost more than the whole transformer at small sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bireco.models.attention import CAUSAL, attention_kwargs, check_attention
from bireco.models.packing import PackingError, pack, unpack
from bireco.models.pooling import get_pooling
from bireco.models.templates import Encoded, Template, pad_encoded
from bireco.runs import read_artifact_meta
from bireco.utils.batching import encode_batches, packed_batches, token_budget_batches

if TYPE_CHECKING:  # the loss classes import this module; config validation builds them without transformers
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def decoder_of(model: nn.Module) -> nn.Module:
    """The transformer stack without the LM head (also through a peft wrapper, whose LoRA layers are in place)."""
    return model.get_decoder()


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens, so left padding does not shift the positions of the text.  (B, T)"""
    return (attention_mask.long().cumsum(1) - 1).clamp_min(0)


class TextEncoder(nn.Module):
    """Embeds token sequences (or raw texts) with a causal LM.

    Args:
        model: a causal LM (plain or peft-wrapped).
        tokenizer: its tokenizer.
        template: how texts become ids (chosen by the model config).
        pooling: `eos` (the paper), `mean` or `weighted_mean`.
        max_length: cap in tokens, template and EOS included (the paper: 512).
        padding_side: padding of batches this encoder builds itself; pooling works for either.
        attention: `causal` (the paper) or `bidirectional`, for the encoder passes only (`bireco.models.attention`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        template: Template,
        pooling: str = "eos",
        max_length: int = 512,
        padding_side: str = "right",
        attention: str = CAUSAL,
    ) -> None:
        super().__init__()
        check_attention(attention, getattr(model.config, "model_type", None))
        self.attention = attention
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.bound = template.bind(tokenizer)
        self.pooling_name = pooling
        self.pool = get_pooling(pooling)
        self.max_length = max_length
        self.padding_side = padding_side

    @classmethod
    def from_artifact(
        cls,
        path: str | Path,
        template: Template | dict[str, Any] | None = None,
        pooling: str | None = None,
        max_length: int | None = None,
        dtype: str = "float32",
        revision: str | None = None,
        device: str | torch.device | None = None,
        attention: str | None = None,
    ) -> TextEncoder:
        """An encoder in eval mode from any weights: a bireco stage artifact (it brings the template, pooling,
        max length and attention mode it was trained with; adapters are merged on their base), an HF folder or a
        hub name (which must be given them; attention defaults to causal). `device` None = CUDA when there is
        one, else the CPU."""
        meta = read_artifact_meta(path) if Path(path).is_dir() else None
        template = template if template is not None else (meta or {}).get("template")
        pooling = pooling or (meta or {}).get("pooling")
        max_length = max_length or (meta or {}).get("max_length")
        attention = attention or (meta or {}).get("attention") or CAUSAL
        if not isinstance(template, Template | dict) or pooling is None or max_length is None:
            raise ValueError(
                f"{path}: not a bireco artifact that records its template, pooling and max_length; pass them"
            )
        from bireco.models.backbone import BackboneSpec, load_backbone

        model, tokenizer = load_backbone(BackboneSpec(str(path), revision, dtype))
        model.eval()
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tpl = template if isinstance(template, Template) else Template(**template)
        return cls(model, tokenizer, tpl, pooling, int(max_length), attention=attention)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, attention: str | None = None
    ) -> torch.Tensor:
        """Last layer's hidden states after the final norm.  (B, T) -> (B, T, H)

        Args:
            attention: this pass's mode; None = the encoder's. The warm-up LM's next-token loss passes `causal`.
        """
        out = decoder_of(self.model)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions_from_mask(attention_mask),
            use_cache=False,
            **attention_kwargs(attention or self.attention),
        )
        return out.last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings (not normalized; the losses and cosine scoring normalize).  (B, T) -> (B, H)"""
        return self.pool(self.hidden_states(input_ids, attention_mask), attention_mask)

    def tokenize(
        self, texts: Sequence[str], instructions: Sequence[str | None] | None = None
    ) -> dict[str, torch.Tensor]:
        enc = self.bound.encode_batch(
            list(texts), None if instructions is None else list(instructions), self.max_length
        )
        return pad_encoded(enc, self.pad_id, self.padding_side)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        instructions: Sequence[str | None] | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        progress: bool = False,
        desc: str = "encoding",
        instruction_separator: str | None = None,
        sort_by_length: bool = True,
        max_tokens: int | None = None,
        padding_free: bool = False,
    ) -> torch.Tensor:
        """Encode raw texts in length-sorted batches (less padding), returned in input order, fp32 on CPU.

        Args:
            instructions: one per text (queries) or None (documents get none).
            instruction_separator: overrides the template's separator (evaluation conventions differ).
            sort_by_length: batch texts of similar length together (False = input order; for benchmarks).
            max_tokens: batches of at most this many (padded) tokens instead of `batch_size` rows; with
                `padding_free`, this many real tokens per packed pass (default `batch_size` × max_length).
            padding_free: pack each batch into one row (`packed_hidden_states`): no padding is computed.
        """
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        instr = None if instructions is None else list(instructions)
        enc = self.bound.encode_batch(list(texts), instr, self.max_length, instruction_separator)
        lengths = [len(e.input_ids) for e in enc]
        if padding_free:
            batches = packed_batches(lengths, max_tokens or batch_size * self.max_length)
        elif max_tokens is not None:
            batches = token_budget_batches(lengths, max_tokens)
        else:
            batches = encode_batches(lengths, batch_size, sort_by_length)
        out = torch.empty(len(enc), self.model.config.hidden_size, dtype=torch.float32)
        for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
            if padding_free:
                hidden, mask = self.packed_hidden_states([enc[i] for i in idx])
                emb = self.pool(hidden, mask).float()
            else:
                batch = pad_encoded([enc[i] for i in idx], self.pad_id, self.padding_side)
                emb = self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()
            out[idx] = F.normalize(emb, dim=-1).cpu() if normalize else emb.cpu()
        self.model.train(was_training)
        return out

    def packed_hidden_states(self, enc: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of sequences run as one packed row (`bireco.models.packing`), returned padded with their
        mask, so pooling is unchanged.  -> (B, T, H), (B, T)

        Causal only: transformers' bidirectional mask builder does not separate packed sequences, so a
        bidirectional pass would attend across them.
        """
        if self.attention != CAUSAL:
            raise PackingError(
                f"padding_free encoding needs model.attention=causal (got {self.attention!r}): transformers' "
                "bidirectional mask does not keep packed sequences apart"
            )
        device = next(self.model.parameters()).device
        ids, positions = pack(enc)
        out = decoder_of(self.model)(
            input_ids=ids.to(device),
            position_ids=positions.to(device),
            attention_mask=None,  # with positions that restart, transformers separates the sequences itself
            use_cache=False,
            **attention_kwargs(CAUSAL),
        )
        return unpack(out.last_hidden_state, [len(e.input_ids) for e in enc], self.padding_side)
