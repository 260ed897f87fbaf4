"""Next-token cross-entropy through the LM head without materializing (N × vocab) logits at once.

With a 128k vocabulary the logits of a Stage I batch dominate memory. This fused function walks the target
positions in chunks and, for each chunk, computes the loss *and* the gradients w.r.t. the hidden states and the
LM-head weight in the same pass, so backward needs no recomputation (recomputing chunks cut memory but was
1.25× slower in calibration). Peak extra memory is one (chunk × vocab) block.
"""

from __future__ import annotations

import torch


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
        g_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if grad_weight else None
        for s in range(0, n, chunk_size):
            h = hidden[s : s + chunk_size]
            t = targets[s : s + chunk_size]
            logits = h @ weight.t()  # (c, V)
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # fp32 for a stable log-softmax
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if g_h is None and g_w is None:
                continue
            # d(sum CE)/d logits = softmax - onehot
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            d = probs.to(h.dtype)
            if g_h is not None:
                g_h[s : s + chunk_size] = (d @ weight.to(d.dtype)).to(hidden.dtype)
            if g_w is not None:
                g_w += (d.t() @ h.to(d.dtype)).to(acc)
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
        chunk_size: rows per chunk; peak extra memory is chunk_size × V floats.

    Returns:
        Scalar fp32 sum of the per-token losses (divide by the token count for the mean).
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    needs = torch.is_grad_enabled()
    return _FusedLinearCrossEntropy.apply(
        hidden, weight, targets, chunk_size, needs and hidden.requires_grad, needs and weight.requires_grad
    )
