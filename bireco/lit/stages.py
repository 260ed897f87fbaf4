"""The three stage modules: causal-LM warm-up (tiny preset only), Stage I reconstruction, Stage II contrastive."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from bireco.data.collate import Window, segment_counts
from bireco.lit.base import ROLES, OptimConfig, StageModule, batch_rows, role_pass
from bireco.losses.contrastive import gathered_info_nce, in_batch_info_nce
from bireco.losses.grad_cache import grad_cache_loss
from bireco.losses.lm_head import linear_cross_entropy_sum
from bireco.losses.reconstruction import bidirectional_reconstruction_loss
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass
from bireco.models.templates import Segment

ANCHORS = ("own", "shuffled")


def _roll(e: torch.Tensor | None) -> torch.Tensor | None:
    """Give every row another row's anchor (a derangement for batches > 1)."""
    return None if e is None else e.roll(1, dims=0)


class WarmupModule(StageModule):
    """Plain next-token LM training on the run's own texts, so the tiny model is a language model before
    Stage I, as the paper's LLMs are. Queries (with instructions) and documents are both trained on."""

    def __init__(self, encoder: TextEncoder, optim: OptimConfig, chunk_size: int = 4096) -> None:
        super().__init__(encoder, optim, "warmup")
        self.chunk_size = chunk_size

    def _lm_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        total, count = 0.0, 0
        for key in ("query", "positive", "negative"):
            if key not in batch:
                continue
            ids, mask = batch[key]["input_ids"], batch[key]["attention_mask"]
            # a next-token loss: causal whatever model.attention says for the encoder passes
            hidden = self.encoder.hidden_states(ids, mask, attention="causal")[:, :-1]  # (B, T-1, H) -> ids[:, 1:]
            tm = mask[:, 1:].bool()
            w = self.model.get_output_embeddings().weight
            total = total + linear_cross_entropy_sum(hidden[tm], w, ids[:, 1:][tm], self.chunk_size)
            count = count + tm.sum()
        return total / count

    def flop_passes(self, batch: dict[str, Any]) -> list[Pass]:
        """Each role through the decoder and the LM head (every real token but each row's first is a target)."""
        counts = batch.get("segment_tokens", {})
        passes = []
        for r in ROLES:
            if r in batch:
                rows = int(batch[r]["input_ids"].shape[0])
                passes.append(role_pass(batch, r, max(sum(counts.get(r, [])) - rows, 0)))
        return passes

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._lm_loss(batch)
        self._log_losses("train", {"loss": loss}, batch_rows(batch))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._log_losses("val", {"loss": self._lm_loss(batch)}, batch_rows(batch))


class ReconstructionModule(StageModule):
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
    """

    def __init__(
        self,
        encoder: TextEncoder,
        optim: OptimConfig,
        alpha: float = 0.2,
        detach_anchor: bool = False,
        target_segments: tuple[str, ...] = ("template", "instruction", "text"),
        chunk_size: int = 4096,
        anchor: str = "own",
    ) -> None:
        super().__init__(encoder, optim, "reconstruction")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
        self.anchor = anchor
        self.alpha = alpha
        self.detach_anchor = detach_anchor
        self.target_segments = [Segment[s.upper()] for s in target_segments]
        self.chunk_size = chunk_size
        self._step_losses: dict[str, torch.Tensor] = {}

    def _anchors(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        e_q = self.encoder(batch["query"]["input_ids"], batch["query"]["attention_mask"]) if self.alpha > 0 else None
        e_d = (
            self.encoder(batch["positive"]["input_ids"], batch["positive"]["attention_mask"])
            if self.alpha < 1
            else None
        )
        if self.detach_anchor:
            e_q = e_q.detach() if e_q is not None else None
            e_d = e_d.detach() if e_d is not None else None
        return e_q, e_d

    def _step_denominators(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Target-token counts of the whole optimizer step — every micro-batch of its window on every rank — and
        the scale that turns this micro-batch's loss into its share of the step's mean (see the loss)."""
        window: Window | None = batch.get("window")
        world = self.trainer.world_size if self._trainer is not None else 1
        if window is None and world == 1:
            return {}
        counts = window.counts if window is not None else {r: segment_counts(batch[r]) for r in ("query", "positive")}
        segs = [int(s) for s in self.target_segments]
        n = torch.stack([counts["positive"][segs].sum(), counts["query"][segs].sum()]).to(self.device, torch.float32)
        if world > 1:
            n = self.trainer.strategy.reduce(n, reduce_op="sum")
        micro = window.size if window is not None else 1
        return {"denominators": {"q2d": n[0], "d2q": n[1]}, "scale": float(micro * world)}

    def _loss(self, batch: dict[str, Any], e_q, e_d, across_ranks: bool = False) -> dict[str, torch.Tensor]:
        kwargs = self._step_denominators(batch) if across_ranks else {}
        return bidirectional_reconstruction_loss(
            self.model,
            e_q,
            e_d,
            batch["query"],
            batch["positive"],
            self.alpha,
            self.target_segments,
            self.chunk_size,
            **kwargs,
        )

    def flop_passes(self, batch: dict[str, Any]) -> list[Pass]:
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

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        e_q, e_d = self._anchors(batch)
        if self.anchor == "shuffled":
            e_q, e_d = _roll(e_q), _roll(e_d)
        losses = self._loss(batch, e_q, e_d, across_ranks=True)
        window: Window | None = batch.get("window")
        if window is None or window.size == 1:
            self._log_losses("train", losses, batch_rows(batch))
            return losses["loss"]
        # the step's loss is the sum over its micro-batches of what the trainer backpropagates (loss / size)
        if window.index == 0:
            self._step_losses = {}
        for k, v in losses.items():
            self._step_losses[k] = self._step_losses.get(k, 0.0) + v.detach() / window.size
        if window.index == window.size - 1:
            self._log_losses("train", self._step_losses, batch_rows(batch) * window.size)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        e_q, e_d = self._anchors(batch)
        losses = self._loss(batch, e_q, e_d)
        # anchor gain: how much worse reconstruction gets when each text is decoded from *another* pair's
        # embedding — what the embedding tells about the other side (0 = nothing)
        shuffled = self._loss(batch, _roll(e_q), _roll(e_d))
        losses["anchor_gain"] = shuffled["loss"] - losses["loss"]
        self._log_losses("val", losses, batch_rows(batch))


class ContrastiveModule(StageModule):
    """Stage II: InfoNCE over cosine × scale with in-batch positives and hard negatives (METHOD.md §3).

    Args:
        scale: 1/τ (the paper: 50).
        gather_across_ranks: under DDP, score each query against every rank's positives and negatives
            (gathered with gradients, as the paper); False = each rank's own batch only.
        grad_cache_chunk_size: rows per encoder forward with GradCache (same loss and gradients as the plain
            path, activations of one chunk at a time); None = the whole batch in one forward.
        grad_cache_max_tokens: GradCache chunks of at most this many (padded) tokens instead of N rows, rows
            sorted by length inside the batch.
        matryoshka: (dims, weight) pairs: the loss summed over truncated, re-normalised embeddings (also in
            validation); None = the full embedding.
        mask_duplicates: leave each query's copies of its own positive (positives and hard negatives of the
            whole gathered batch, found by the keys the collator gives them) out of its softmax; the count is
            logged as `train/masked_candidates` (summed over ranks).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        optim: OptimConfig,
        scale: float = 50.0,
        gather_across_ranks: bool = True,
        grad_cache_chunk_size: int | None = None,
        mask_duplicates: bool = True,
        grad_cache_max_tokens: int | None = None,
        matryoshka: list[tuple[int, float]] | None = None,
    ) -> None:
        super().__init__(encoder, optim, "contrastive")
        if grad_cache_chunk_size is not None and grad_cache_chunk_size < 1:
            raise ValueError(
                f"grad_cache chunk_size must be a positive number of rows or null, got {grad_cache_chunk_size}"
            )
        self.scale = scale
        self.gather_across_ranks = gather_across_ranks
        if grad_cache_max_tokens is not None and grad_cache_max_tokens < 1:
            raise ValueError(f"grad_cache max_tokens must be a positive number of tokens, got {grad_cache_max_tokens}")
        width = encoder.model.config.hidden_size
        if matryoshka and max(d for d, _ in matryoshka) > width:
            raise ValueError(f"matryoshka_dims {[d for d, _ in matryoshka]}: the embedding has {width} dimensions")
        self.matryoshka = matryoshka
        self.grad_cache_chunk_size = grad_cache_chunk_size
        self.grad_cache_max_tokens = grad_cache_max_tokens
        self.mask_duplicates = mask_duplicates

    def _embed(self, part: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder(part["input_ids"], part["attention_mask"])

    def _keys(self, batch: dict[str, Any]) -> dict[str, torch.Tensor | None]:
        """The candidates' row keys for masking false negatives ({} = no masking)."""
        if not self.mask_duplicates:
            return {}
        if "key" not in batch["positive"]:
            raise ValueError("mask_duplicates needs row keys: collate with PairCollator(duplicate_key=...)")
        neg = batch.get("negative")
        return {"positive_keys": batch["positive"]["key"], "negative_keys": None if neg is None else neg["key"]}

    def _train_loss(
        self,
        query: torch.Tensor,
        positive: torch.Tensor,
        negative: torch.Tensor | None = None,
        stats: dict[str, torch.Tensor] | None = None,
        **keys: torch.Tensor | None,
    ) -> torch.Tensor:
        loss = gathered_info_nce if self.gather_across_ranks else in_batch_info_nce
        return loss(query, positive, negative, scale=self.scale, stats=stats, matryoshka=self.matryoshka, **keys)

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Local in-batch loss (validation: every rank sees the whole validation set, nothing to gather)."""
        n = self._embed(batch["negative"]) if "negative" in batch else None
        q, p = self._embed(batch["query"]), self._embed(batch["positive"])
        return in_batch_info_nce(q, p, n, scale=self.scale, matryoshka=self.matryoshka, **self._keys(batch))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        roles = {"query": batch["query"], "positive": batch["positive"], "negative": batch.get("negative")}
        stats: dict[str, torch.Tensor] = {}
        loss_fn = partial(self._train_loss, stats=stats, **self._keys(batch))
        if self.grad_cache_chunk_size is not None or self.grad_cache_max_tokens is not None:
            params = [p for p in self.parameters() if p.requires_grad]
            chunk, budget = self.grad_cache_chunk_size, self.grad_cache_max_tokens
            loss = grad_cache_loss(self._embed, roles, loss_fn, params, chunk, max_tokens=budget)
        else:
            loss = loss_fn(**{r: None if b is None else self._embed(b) for r, b in roles.items()})
        self._log_losses("train", {"loss": loss}, batch_rows(batch))
        if "masked_candidates" in stats:
            n = stats["masked_candidates"].float()
            self.log(
                "train/masked_candidates",
                n,
                on_step=True,
                sync_dist=True,
                reduce_fx="sum",
                batch_size=batch_rows(batch),
            )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._log_losses("val", {"loss": self._loss(batch)}, batch_rows(batch))
