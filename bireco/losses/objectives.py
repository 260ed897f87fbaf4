"""The method's three losses as stage objectives (`bireco.losses.objective`): the tiny preset's causal-LM
warm-up, Stage I's bidirectional reconstruction and Stage II's InfoNCE. The math is in the pure functions of
`bireco.losses`; these hold the settings and say which passes of a batch the loss runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from bireco.losses.contrastive import gathered_info_nce, in_batch_info_nce
from bireco.losses.false_negatives import DUPLICATE_KEYS
from bireco.losses.grad_cache import EmbeddingLoss
from bireco.losses.lm_head import linear_cross_entropy_sum
from bireco.losses.objective import ROLES, Batch, LossOutput, Objective, Step, embed, role_pass
from bireco.losses.reconstruction import bidirectional_reconstruction_loss
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass
from bireco.models.templates import Segment, segment_counts
from bireco.utils.checks import is_number, positive_int

ANCHORS = ("own", "shuffled")


def _roll(e: torch.Tensor | None) -> torch.Tensor | None:
    """Give every row another row's anchor (a derangement for batches > 1)."""
    return None if e is None else e.roll(1, dims=0)


def _segments(names: Sequence[str]) -> list[Segment]:
    valid = [s.name.lower() for s in Segment]
    names = list(names or [])
    bad = [s for s in names if s not in valid]
    if not names or bad:
        raise ValueError(
            f"target_segments={names}: choose a non-empty subset of {valid}" + (f" (unknown: {bad})" if bad else "")
        )
    return [Segment[s.upper()] for s in names]


class NextTokenPrediction(Objective):
    """Plain next-token LM training on the run's own texts (queries with instructions and documents alike), so
    the tiny model is a language model before Stage I, as the paper's LLMs are.

    Args:
        chunk_size: LM-head rows per fused chunk (peak memory: chunk x vocab fp32 logits).
    """

    def __init__(self, *, chunk_size: int) -> None:
        if not positive_int(chunk_size):
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def lm_loss(self, encoder: TextEncoder, batch: Batch) -> torch.Tensor:
        """Mean next-token cross-entropy over every real token of every role (causal passes)."""
        total, count = 0.0, 0
        for key in ROLES:
            if key not in batch:
                continue
            ids, mask = batch[key]["input_ids"], batch[key]["attention_mask"]
            # a next-token loss: causal whatever model.attention says for the encoder passes
            hidden = encoder.hidden_states(ids, mask, attention="causal")[:, :-1]  # (B, T-1, H) -> ids[:, 1:]
            tm = mask[:, 1:].bool()
            w = encoder.model.get_output_embeddings().weight
            total = total + linear_cross_entropy_sum(hidden[tm], w, ids[:, 1:][tm], self.chunk_size)
            count = count + tm.sum()
        return total / count

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        return LossOutput({"loss": self.lm_loss(encoder, batch)})

    def flop_passes(self, batch: Batch) -> list[Pass]:
        """Each role through the decoder and the LM head (every real token but each row's first is a target)."""
        counts = batch.get("segment_tokens", {})
        passes = []
        for r in ROLES:
            if r in batch:
                rows = int(batch[r]["input_ids"].shape[0])
                passes.append(role_pass(batch, r, max(sum(counts.get(r, [])) - rows, 0)))
        return passes


class BidirectionalReconstruction(Objective):
    """Stage I: e_Q, e_D from the encoder pass, then EBQ2D + EBD2Q through the same weights (METHOD.md §2).

    Args:
        alpha: weight of EBQ2D; 1 − alpha weighs EBD2Q (the paper: 0.2; ablations 1 and 0).
        detach_anchor: stop gradients at e_Q/e_D (ablation; the paper lets them flow into the encoder).
        anchor: `own` (the method: each text is decoded from its pair's embedding) or `shuffled` (the anchor
            control: from another pair's embedding of the batch, so Stage I adapts the LM to the pairs' text but
            no information about the pair reaches the decoder through the anchor). Training only: validation
            always reports the loss from the true anchors and the anchor gain over shuffled ones.
        target_segments: which tokens are predicted (names of `Segment`); the authors' code predicts template,
            instruction and text tokens and masks EOS (pad = eos there).
        chunk_size: LM-head rows per fused chunk.
    """

    def __init__(
        self, *, alpha: float, detach_anchor: bool, anchor: str, target_segments: Sequence[str], chunk_size: int
    ) -> None:
        if not is_number(alpha) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {list(ANCHORS)}, got {anchor!r}")
        if not positive_int(chunk_size):
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.alpha = float(alpha)
        self.detach_anchor = bool(detach_anchor)
        self.anchor = anchor
        self.target_segments = _segments(target_segments)
        self.chunk_size = chunk_size

    def anchors(self, encoder: TextEncoder, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(e_Q, e_D), (B, H) each; a direction with weight 0 skips its encoder pass (None)."""
        e_q = embed(encoder, batch["query"]) if self.alpha > 0 else None
        e_d = embed(encoder, batch["positive"]) if self.alpha < 1 else None
        if self.detach_anchor:
            e_q = e_q.detach() if e_q is not None else None
            e_d = e_d.detach() if e_d is not None else None
        return e_q, e_d

    def _step_denominators(self, batch: Batch, step: Step) -> dict[str, Any]:
        """Target-token counts of the whole optimizer step — every micro-batch of its window on every rank — and
        the scale that turns this micro-batch's loss into its share of the step's mean (see the loss)."""
        window = batch.get("window")  # bireco.data.collate.Window when the step accumulates
        if window is None and step.world_size == 1:
            return {}
        counts = window.counts if window is not None else {r: segment_counts(batch[r]) for r in ("query", "positive")}
        segs = [int(s) for s in self.target_segments]
        device = batch["query"]["input_ids"].device
        n = torch.stack([counts["positive"][segs].sum(), counts["query"][segs].sum()]).to(device, torch.float32)
        if step.world_size > 1:
            n = step.reduce_sum(n)
        micro = window.size if window is not None else 1
        return {"denominators": {"q2d": n[0], "d2q": n[1]}, "scale": float(micro * step.world_size)}

    def loss(
        self,
        encoder: TextEncoder,
        batch: Batch,
        e_q: torch.Tensor | None,
        e_d: torch.Tensor | None,
        **denominators: Any,
    ) -> dict[str, torch.Tensor]:
        """EBQ2D + EBD2Q from the given anchors, (B, H) each (None: that direction is off)."""
        return bidirectional_reconstruction_loss(
            encoder.model,
            e_q,
            e_d,
            batch["query"],
            batch["positive"],
            self.alpha,
            self.target_segments,
            self.chunk_size,
            **denominators,
        )

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        e_q, e_d = self.anchors(encoder, batch)
        if self.anchor == "shuffled":
            e_q, e_d = _roll(e_q), _roll(e_d)
        return LossOutput(self.loss(encoder, batch, e_q, e_d, **self._step_denominators(batch, step)))

    def anchor_gain(self, encoder: TextEncoder, batch: Batch) -> torch.Tensor:
        """Loss from another pair's embedding minus the loss from the pair's own (nats/token, α-weighted): what
        the embedding tells the decoder about the other side; 0 = nothing (`bireco.lit.anchor_gain`)."""
        return self.validation(encoder, batch)["anchor_gain"]

    def validation(self, encoder: TextEncoder, batch: Batch) -> dict[str, torch.Tensor]:
        e_q, e_d = self.anchors(encoder, batch)
        losses = self.loss(encoder, batch, e_q, e_d)
        # anchor gain: how much worse reconstruction gets when each text is decoded from *another* pair's
        # embedding — what the embedding tells about the other side (0 = nothing)
        shuffled = self.loss(encoder, batch, _roll(e_q), _roll(e_d))
        losses["anchor_gain"] = shuffled["loss"] - losses["loss"]
        return losses

    def flop_passes(self, batch: Batch) -> list[Pass]:
        """The encoder passes that make the anchors, then each direction's decoder pass (as long as the decoded
        side) with its target tokens through the LM head."""
        counts = batch.get("segment_tokens", {})
        targets = {r: sum(counts[r][int(s)] for s in self.target_segments) if r in counts else 0 for r in counts}
        passes = []
        if self.alpha > 0:  # e_Q, then EBQ2D decodes the document
            passes += [role_pass(batch, "query"), role_pass(batch, "positive", targets.get("positive", 0))]
        if self.alpha < 1:  # e_D, then EBD2Q decodes the query
            passes += [role_pass(batch, "positive"), role_pass(batch, "query", targets.get("query", 0))]
        return passes


def matryoshka_pairs(dims: Sequence[int] | None, weights: Sequence[float] | None) -> list[tuple[int, float]] | None:
    """`matryoshka_dims` / `matryoshka_weights` -> (dims, weight) pairs for the loss, or None."""
    if dims is None:
        if weights is not None:
            raise ValueError("matryoshka_weights is set but matryoshka_dims is null")
        return None
    dims = list(dims)
    if not dims or not all(positive_int(d) for d in dims) or dims != sorted(set(dims)):
        raise ValueError(f"matryoshka_dims={dims}: a non-empty, strictly ascending list of positive integers")
    weights = [1.0] * len(dims) if weights is None else list(weights)
    ok = all(isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in weights)
    if len(weights) != len(dims) or not ok:
        raise ValueError(f"matryoshka_weights={weights}: one positive number per dimension of {dims}")
    return [(int(d), float(w)) for d, w in zip(dims, weights, strict=True)]


class InfoNCE(EmbeddingLoss):
    """Stage II: InfoNCE over cosine × scale with in-batch positives and hard negatives (METHOD.md §3).

    Args:
        scale: 1/τ (the paper: 50).
        gather_across_ranks: under DDP, score each query against every rank's positives and negatives
            (gathered with gradients, as the paper); False = each rank's own batch only.
        mask_duplicates: leave each query's copies of its own positive (positives and hard negatives of the
            whole gathered batch, found by the row keys the collator gives them: `token_ids` = the exact model
            input, `text` = equal after NFKC + casefold + whitespace) out of its softmax; false = off. The count
            is logged as `train/masked_candidates` (summed over ranks).
        matryoshka_dims / matryoshka_weights: the loss summed over embeddings truncated to these leading
            dimensions and re-normalised (also in validation); null = the full embedding.
    """

    def __init__(
        self,
        *,
        scale: float,
        gather_across_ranks: bool,
        mask_duplicates: str | bool | None,
        matryoshka_dims: Sequence[int] | None,
        matryoshka_weights: Sequence[float] | None,
    ) -> None:
        if not is_number(scale) or scale <= 0:
            raise ValueError(f"scale (1 / temperature) must be a positive number, got {scale!r}")
        if mask_duplicates is True:
            mask_duplicates = "token_ids"
        if mask_duplicates not in (False, None, *DUPLICATE_KEYS):
            raise ValueError(f"mask_duplicates={mask_duplicates!r}: choose one of {list(DUPLICATE_KEYS)} or false")
        self.scale = float(scale)
        self.gather_across_ranks = bool(gather_across_ranks)
        self.duplicate_key = mask_duplicates or None
        self.matryoshka = matryoshka_pairs(matryoshka_dims, matryoshka_weights)

    def check(self, encoder: TextEncoder) -> None:
        width = encoder.model.config.hidden_size
        dims = [d for d, _ in self.matryoshka or []]
        if dims and max(dims) > width:
            raise ValueError(f"matryoshka_dims {dims}: the embedding has {width} dimensions")

    def keys(self, batch: Batch) -> dict[str, torch.Tensor | None]:
        """The candidates' row keys for masking false negatives ({} = no masking)."""
        if self.duplicate_key is None:
            return {}
        if "key" not in batch["positive"]:
            raise ValueError("mask_duplicates needs row keys: collate with PairCollator(duplicate_key=...)")
        neg = batch.get("negative")
        return {"positive_keys": batch["positive"]["key"], "negative_keys": None if neg is None else neg["key"]}

    def embedding_loss(self, batch: Batch, stats: dict[str, torch.Tensor]) -> Callable[..., torch.Tensor]:
        """role embeddings (query, positive, negative) -> the training loss, gathered across ranks when set;
        `stats` receives the masked-candidate count."""
        loss = gathered_info_nce if self.gather_across_ranks else in_batch_info_nce
        return partial(loss, scale=self.scale, stats=stats, matryoshka=self.matryoshka, **self.keys(batch))

    def roles(self, batch: Batch) -> dict[str, Any]:
        """The roles the loss embeds (negatives may be absent: None)."""
        return {"query": batch["query"], "positive": batch["positive"], "negative": batch.get("negative")}

    def counts(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What is logged summed over ranks: the false negatives masked this step."""
        return {"masked_candidates": stats["masked_candidates"].float()} if "masked_candidates" in stats else {}

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        stats: dict[str, torch.Tensor] = {}
        roles = {r: None if b is None else embed(encoder, b) for r, b in self.roles(batch).items()}
        loss = self.embedding_loss(batch, stats)(**roles)
        return LossOutput({"loss": loss}, self.counts(stats))

    def validation(self, encoder: TextEncoder, batch: Batch) -> dict[str, torch.Tensor]:
        """The local in-batch loss (every rank sees the whole validation set, nothing to gather)."""
        n = embed(encoder, batch["negative"]) if "negative" in batch else None
        q, p = embed(encoder, batch["query"]), embed(encoder, batch["positive"])
        loss = in_batch_info_nce(q, p, n, scale=self.scale, matryoshka=self.matryoshka, **self.keys(batch))
        return {"loss": loss}
