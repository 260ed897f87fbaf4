"""Next-token cross-entropy through the LM head without materializing (N × vocab) logits at once.

With a 128k vocabulary the logits of a Stage I batch dominate memory. This fused function walks the target
positions in chunks and, for each chunk, computes the loss *and* the gradients w.r.t. the hidden states and the
LM-head weight in the same pass, so backward needs no recomputation (recomputing chunks cut memory but was
1.25× slower in calibration). Peak extra memory is one (chunk × vocab) block, and a chunk never holds more than
`MAX_CHUNK_ELEMENTS` logits, so a 128k vocabulary gets shorter chunks instead of a 2 GB block.
"""

from __future__ import annotations

import torch

# 2^25 fp32 logits = 128 MiB per chunk: 8,192 rows at a 4k vocabulary (no cap in practice), 261 rows at Llama-3's
# 128k (each chunk still a (261 × H) @ (H × 128k) matmul, large enough to run at full speed)
MAX_CHUNK_ELEMENTS = 2**25


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, grad_hidden: bool, grad_weight: bool):
        # hidden (N, H), weight (V, H), targets (N,) -> summed loss ()
        n = hidden.shape[0]
        total = torch.zeros(
            (), dtype=torch.float64 if hidden.dtype == torch.float64 else torch.float32, device=hidden.device
        )
        g_h = torch.empty_like(hidden) if grad_hidden else None
        acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
        g_w = None  # (V, H) in `acc`, allocated by the first chunk's product (no zero fill, no extra add)
        for s in range(0, n, chunk_size):
            h = hidden[s : s + chunk_size]
            t = targets[s : s + chunk_size]
            logits = h @ weight.t()  # (c, V)
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # fp32 for a stable log-softmax
            logp = torch.log_softmax(logits, dim=-1)  # (c, V): one fused pass, where logsumexp + sub took four
            del logits
            total -= logp.gather(1, t[:, None]).sum()
            if g_h is None and not grad_weight:
                continue
            # d(sum CE)/d logits = softmax - onehot
            probs = logp.exp_()
            probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            d = probs.to(h.dtype)
            if g_h is not None:
                g_h[s : s + chunk_size] = (d @ weight.to(d.dtype)).to(hidden.dtype)
            if grad_weight:
                if g_w is None:
                    g_w = (d.t() @ h.to(d.dtype)).to(acc)
                elif d.dtype == acc and not torch.is_autocast_enabled(d.device.type):
                    # accumulate in place: no (V, H) temporary (autocast skips in-place ops, so under bf16
                    # autocast the product goes through the branch below and stays a bf16 matmul)
                    g_w.addmm_(d.t(), h.to(acc))
                else:
                    g_w += (d.t() @ h.to(d.dtype)).to(acc)
        if grad_weight and g_w is None:  # no rows at all
            g_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        ctx.save_for_backward(*(x for x in (g_h, g_w) if x is not None))
        ctx.has = (g_h is not None, g_w is not None)
        ctx.weight_dtype = weight.dtype
        ctx.hidden_dtype = hidden.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        # the gradients were computed in forward; scale them by the upstream gradient of the summed loss
        saved = list(ctx.saved_tensors)
        g_h = (saved.pop(0) * grad_out).to(ctx.hidden_dtype) if ctx.has[0] else None
        g_w = (saved.pop(0) * grad_out).to(ctx.weight_dtype) if ctx.has[1] else None
        return g_h, g_w, None, None, None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096
) -> torch.Tensor:
    """Sum over rows of CE(hidden @ weight.T, targets), chunked and fused.

    Args:
        hidden: (N, H) hidden states at target positions only (padding and non-targets already dropped).
        weight: (V, H) LM-head weight.
        targets: (N,) token ids.
        chunk_size: rows per chunk, capped at MAX_CHUNK_ELEMENTS // V; peak extra memory is chunk × V floats.

    Returns:
        Scalar fp32 sum of the per-token losses (divide by the token count for the mean).
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    needs = torch.is_grad_enabled()
    rows = max(1, min(chunk_size, MAX_CHUNK_ELEMENTS // weight.shape[0]))
    return _FusedLinearCrossEntropy.apply(
        hidden, weight, targets, rows, needs and hidden.requires_grad, needs and weight.requires_grad
    )
