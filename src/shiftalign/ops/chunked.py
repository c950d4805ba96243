"""Token log-probs (and entropies) of a linear LM head without the (N, V) logits held for backward.

For hidden states h (N, H), head weight W (V, H), targets y (N,) and temperature T:

    z = h W^T / T,   log p = z - logsumexp(z),   logp_y = (log p)_y,   H = -sum_v p_v log p_v

computed ``chunk`` rows at a time. Only h, W, y and the per-row logsumexp and entropy are kept for
backward, which recomputes each chunk's logits (Liger-Kernel's fused linear cross-entropy and Apple's
Cut Cross-Entropy do the same on GPUs, Wijmans et al., 2024): with upstream gradients g (of logp_y)
and e (of H),

    dL/dz = g (onehot(y) - p) - e p (log p + H),   dL/dh = dL/dz W / T,   dL/dW = (dL/dz)^T h / T.

Peak memory for the head drops from O(N V) to O(chunk V). The arithmetic is in fp32 (W is cast once
per call when it is not fp32), like the plain path's ``.float()`` logits.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 256


class _ChunkedHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, targets, temperature: float, chunk: int, with_entropy: bool):
        with torch.autocast(h.device.type, enabled=False):  # fp32 arithmetic whatever the surrounding autocast
            return _ChunkedHead._forward(ctx, h, W, targets, temperature, chunk, with_entropy)

    @staticmethod
    def _forward(ctx, h, W, targets, temperature, chunk, with_entropy):
        W32 = W.float()
        N = h.shape[0]
        logp = torch.empty(N, dtype=torch.float32, device=h.device)
        lse = torch.empty_like(logp)
        entropy = torch.zeros_like(logp)
        for s in range(0, N, chunk):
            z = torch.mm(h[s:s + chunk].float(), W32.T)
            if temperature != 1.0:
                z /= temperature
            lse[s:s + chunk] = torch.logsumexp(z, -1)
            lp = z - lse[s:s + chunk, None]
            logp[s:s + chunk] = lp.gather(-1, targets[s:s + chunk, None])[:, 0]
            if with_entropy:
                entropy[s:s + chunk] = -(lp.exp() * lp).sum(-1)
        ctx.save_for_backward(h, W, targets, lse, entropy)
        ctx.temperature, ctx.chunk, ctx.with_entropy = temperature, chunk, with_entropy
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        with torch.autocast(g_logp.device.type, enabled=False):
            return _ChunkedHead._backward(ctx, g_logp, g_ent)

    @staticmethod
    def _backward(ctx, g_logp, g_ent):
        h, W, targets, lse, entropy = ctx.saved_tensors
        T, chunk = ctx.temperature, ctx.chunk
        W32 = W.float()
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_W = torch.zeros_like(W32) if ctx.needs_input_grad[1] else None
        # Each (chunk, V) pass over memory costs about as much as a small matrix product here, so the subtraction
        # rides in the product (addmm), elementwise steps work in place and the gradient of W accumulates in place.
        for s in range(0, h.shape[0], chunk):
            hc, g = h[s:s + chunk].float(), g_logp[s:s + chunk, None] / T
            if T == 1.0:
                lp = torch.addmm(-lse[s:s + chunk, None], hc, W32.T)
            else:  # divided, not multiplied by 1/T: the forward's rounding exactly
                lp = torch.mm(hc, W32.T).div_(T).sub_(lse[s:s + chunk, None])
            if ctx.with_entropy and g_ent is not None:
                p = lp.exp()
                dz = -(g + g_ent[s:s + chunk, None] / T * (lp + entropy[s:s + chunk, None])) * p
            else:
                dz = lp.exp_().mul_(-g)  # lp is not needed again
            dz.scatter_add_(-1, targets[s:s + chunk, None], g)
            if grad_h is not None:
                grad_h[s:s + chunk] = (dz @ W32).to(h.dtype)
            if grad_W is not None:
                grad_W.addmm_(dz.T, hc)
        return grad_h, (grad_W.to(W.dtype) if grad_W is not None else None), None, None, None, None


def chunked_token_logps(h: torch.Tensor, W: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                        chunk: int = DEFAULT_CHUNK, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp of each target (N,), entropy of each row's distribution (N,), zeros unless ``with_entropy``)."""
    return _ChunkedHead.apply(h, W, targets, float(temperature), int(chunk), with_entropy)
