"""GradCache (Gao et al., 2021): a contrastive loss over a batch far larger than fits in memory at once.

The loss couples every row with every other, so plain gradient accumulation cannot split it. GradCache does:

1. embed the batch in chunks without a graph (only the (B, H) embeddings are kept);
2. compute the loss on those embeddings as leaf tensors and take its gradient w.r.t. each embedding — the
   loss may gather across ranks here, like the plain path;
3. re-embed chunk by chunk *with* a graph, replaying each chunk's RNG state (same dropout masks), and pull
   the cached embedding gradient back into the parameters (`torch.autograd.grad`, one chunk's activations at
   a time);
4. return a surrogate whose value is the loss and whose gradient w.r.t. each parameter is the accumulated one.

Why a surrogate instead of calling `backward` per chunk: the trainer does one ordinary `backward` on what
`training_step` returns, so Lightning's automatic optimization keeps doing accumulation, clipping, precision
and DDP's single gradient all-reduce (each parameter's hook fires once, no `no_sync` bookkeeping). The cost
is one buffer the size of the trainable parameters (LoRA: tiny) and one extra forward pass per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from bireco.losses.objective import Batch, LossOutput, Objective, Step, embed
from bireco.models.encoder import TextEncoder
from bireco.models.flops import Pass
from bireco.utils.batching import token_budget_batches
from bireco.utils.checks import positive_int


class RngState:
    """The CPU (and the tensors' CUDA device's) RNG state, to replay a forward with the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        """RNG as it was at capture inside the block; the outer RNG stream is restored on exit."""
        with torch.random.fork_rng(devices=[self.device] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def select_rows(batch: Batch, rows: torch.Tensor, cols: slice) -> Batch:
    """The batch's `rows` (every tensor indexed on dim 0) and, of its (rows, T) tensors, the columns `cols`."""
    width = batch["attention_mask"].shape[1]
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v[rows]
            v = v[:, cols] if v.dim() >= 2 and v.shape[1] == width else v
        out[k] = v
    return out


def plan_chunks(batch: Batch, chunk_size: int | None, max_tokens: int | None) -> list[tuple[torch.Tensor, Batch]]:
    """(row indices, sub-batch) of each chunk: `chunk_size` rows in order, or — with `max_tokens` — rows sorted
    by length, longest first, as many per chunk as fit in `max_tokens` padded tokens. Either way each chunk is cut
    to the columns its own rows use (a chunk of short rows does not pay for the batch's longest), planned on one
    host copy of the attention mask: one device read per role and step."""
    rows = int(batch["input_ids"].shape[0])
    mask = batch["attention_mask"].bool().cpu()
    if max_tokens is not None:
        groups = token_budget_batches(mask.sum(dim=1).tolist(), max_tokens)
    elif chunk_size is None or chunk_size < 1:
        raise ValueError(f"grad_cache chunk_size must be ≥ 1, got {chunk_size}")
    else:
        groups = [list(range(s, min(s + chunk_size, rows))) for s in range(0, rows, chunk_size)]
    device = batch["input_ids"].device
    plan = []
    for group in groups:
        used = mask[group].any(dim=0).nonzero().squeeze(1)
        cols = slice(int(used[0]), int(used[-1]) + 1) if used.numel() else slice(0, 0)
        idx = torch.tensor(group, device=device)
        plan.append((idx, select_rows(batch, idx, cols)))
    return plan


def grad_cache_loss(
    encode: Callable[[Batch], torch.Tensor],
    inputs: dict[str, Batch | None],
    loss_fn: Callable[..., torch.Tensor],
    params: Sequence[nn.Parameter],
    chunk_size: int | None,
    max_tokens: int | None = None,
) -> torch.Tensor:
    """The loss of `loss_fn(**embeddings)` with gradients computed chunk by chunk.

    Args:
        encode: role batch -> (rows, H) embeddings (the encoder forward).
        inputs: role name -> batch (None = absent, passed to `loss_fn` as None).
        loss_fn: keyword per role -> scalar loss (may use collectives: every rank calls it once).
        params: the trainable parameters the gradient is for.
        chunk_size: rows per forward pass.
        max_tokens: instead, at most this many (padded) tokens per forward pass, rows sorted by length (one host
            read of each role's attention mask per step, to plan the chunks).

    Returns:
        Scalar: value = the loss; `.backward()` puts d loss / d param into each `param.grad`.
    """
    chunks = {r: plan_chunks(b, chunk_size, max_tokens) for r, b in inputs.items() if b is not None}
    states: dict[str, list[RngState]] = {r: [] for r in chunks}
    cached: dict[str, torch.Tensor | None] = dict.fromkeys(inputs)
    with torch.no_grad():  # 1. embeddings only, no activations kept, back in row order
        for role, parts in chunks.items():
            embs = []
            for _, part in parts:
                states[role].append(RngState(part["input_ids"].device))
                embs.append(encode(part))
            order = torch.cat([idx for idx, _ in parts])
            emb = torch.cat(embs)
            cached[role] = emb.new_empty(emb.shape).index_copy_(0, order, emb).requires_grad_()
    # 2. the loss on the cached embeddings, and its gradient w.r.t. them
    with torch.enable_grad():
        loss = loss_fn(**cached)
    leaves = [cached[r] for r in chunks]
    emb_grads = dict(zip(chunks, torch.autograd.grad(loss, leaves, allow_unused=True), strict=True))
    # 3. re-embed each chunk with a graph and pull its embedding gradient into the parameters
    params = list(params)
    acc: list[torch.Tensor | None] = [None] * len(params)
    for role, parts in chunks.items():
        g_role = emb_grads[role]
        if g_role is None:  # the loss does not depend on this role
            continue
        for (idx, part), state in zip(parts, states[role], strict=True):
            with state.replay(), torch.enable_grad():
                emb = encode(part)
            grads = torch.autograd.grad(emb, params, grad_outputs=g_role[idx], allow_unused=True)
            acc = [a if g is None else (g if a is None else a.add_(g)) for a, g in zip(acc, grads, strict=True)]
    # 4. value = loss, gradient = the accumulated parameter gradients (one backward for the trainer)
    surrogate = sum(
        ((p * a.to(p.dtype)).sum() for p, a in zip(params, acc, strict=True) if a is not None), loss.new_zeros(())
    )
    return loss.detach() + (surrogate - surrogate.detach())


class EmbeddingLoss(Objective):
    """An objective whose loss is a function of the roles' embeddings (InfoNCE): what GradCache can split."""

    def roles(self, batch: Batch) -> dict[str, Batch | None]:
        """role name -> its padded batch (None = absent)."""
        raise NotImplementedError

    def embedding_loss(self, batch: Batch, stats: dict[str, torch.Tensor]) -> Callable[..., torch.Tensor]:
        """keyword per role -> the scalar loss; `stats` may receive counts to log."""
        raise NotImplementedError

    def counts(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}


class GradCache(Objective):
    """Wraps an embedding loss so a batch far larger than fits at once is embedded in chunks, with the same loss
    and gradients (`grad_cache_loss`). Validation and the FLOP count are the wrapped loss's.

    Args:
        loss: the wrapped loss.
        chunk_size: rows per forward pass; or
        max_tokens: at most this many (padded) tokens per forward pass, rows sorted by length. Exactly one is set.
    """

    def __init__(self, loss: EmbeddingLoss, *, chunk_size: int | None, max_tokens: int | None) -> None:
        sizes = (("chunk_size", chunk_size, "integer"), ("max_tokens", max_tokens, "number of tokens"))
        for key, value, unit in sizes:
            if value is not None and not positive_int(value):
                raise ValueError(f"grad_cache.{key} must be a positive {unit} or null, got {value!r}")
        if chunk_size is not None and max_tokens is not None:
            raise ValueError(
                f"grad_cache: chunk_size={chunk_size} and max_tokens={max_tokens} both set; a chunk is either N rows "
                "or N tokens — set the other to null"
            )
        if chunk_size is None and max_tokens is None:
            raise ValueError("grad_cache: set chunk_size (rows) or max_tokens (tokens) per chunk")
        self.loss = loss
        self.chunk_size = chunk_size
        self.max_tokens = max_tokens
        self.duplicate_key = loss.duplicate_key

    def __call__(self, encoder: TextEncoder, batch: Batch, step: Step) -> LossOutput:
        stats: dict[str, torch.Tensor] = {}
        fn = self.loss.embedding_loss(batch, stats)
        roles = self.loss.roles(batch)
        loss = grad_cache_loss(
            lambda part: embed(encoder, part), roles, fn, step.params, self.chunk_size, self.max_tokens
        )
        return LossOutput({"loss": loss}, self.loss.counts(stats))

    def validation(self, encoder: TextEncoder, batch: Batch) -> dict[str, torch.Tensor]:
        return self.loss.validation(encoder, batch)

    def flop_passes(self, batch: Batch) -> list[Pass]:
        return self.loss.flop_passes(batch)

    def check(self, encoder: TextEncoder) -> None:
        self.loss.check(encoder)
