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
        # One (chunk, V) buffer serves every chunk: a fresh one per step costs page faults comparable to the product.
        z_buf = torch.empty(min(chunk, N), W.shape[0], dtype=torch.float32, device=h.device)
        e_buf = torch.empty_like(z_buf) if with_entropy else None
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            z = torch.mm(h[s:s + n].float(), W32.T, out=z_buf[:n])
            if temperature != 1.0:
                z.div_(temperature)
            z_y = z.gather(-1, targets[s:s + n, None])[:, 0]
            m = z.amax(-1, keepdim=True)
            z.sub_(m)  # z - max: every exponent <= 0, as in torch.logsumexp
            if with_entropy:  # H = log S - sum_v e_v (z_v - m) / S, with e = exp(z - m), S = sum_v e_v
                e = torch.exp(z, out=e_buf[:n])
                total = e.sum(-1)
                entropy[s:s + n] = total.log() - (e.mul_(z)).sum(-1) / total
            else:
                total = z.exp_().sum(-1)
            lse[s:s + n] = total.log_().add_(m[:, 0])
            logp[s:s + n] = z_y - lse[s:s + n]
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
        N = h.shape[0]
        W32 = W.float()
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device) if ctx.needs_input_grad[0] else None
        grad_W = None
        with_entropy = ctx.with_entropy and g_ent is not None
        # As in the forward, one reusable buffer; elementwise steps work in place, and the gradient of W accumulates
        # in place after the first chunk writes it.
        buf = torch.empty(min(chunk, N), W.shape[0], dtype=torch.float32, device=h.device)
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            hc, g = h[s:s + n].float(), g_logp[s:s + n, None] / T
            lp = torch.mm(hc, W32.T, out=buf[:n])
            if T != 1.0:  # divided, not multiplied by 1/T: the forward's rounding exactly
                lp.div_(T)
            lp.sub_(lse[s:s + n, None])
            if with_entropy:
                p = lp.exp()
                dz = lp.add_(entropy[s:s + n, None]).mul_(g_ent[s:s + n, None] / T).add_(g).mul_(p).neg_()
            else:
                dz = lp.exp_().mul_(-g)
            dz.scatter_add_(-1, targets[s:s + n, None], g)
            if grad_h is not None:
                torch.mm(dz, W32, out=grad_h[s:s + n])
            if ctx.needs_input_grad[1]:
                if grad_W is None:
                    grad_W = torch.mm(dz.T, hc)
                else:
                    grad_W.addmm_(dz.T, hc)
        grad_h = grad_h.to(h.dtype) if grad_h is not None else None
        grad_W = grad_W.to(W.dtype) if grad_W is not None else None
        return grad_h, grad_W, None, None, None, None


def chunked_token_logps(h: torch.Tensor, W: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                        chunk: int = DEFAULT_CHUNK, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp of each target (N,), entropy of each row's distribution (N,), zeros unless ``with_entropy``)."""
    return _ChunkedHead.apply(h, W, targets, float(temperature), int(chunk), with_entropy)
