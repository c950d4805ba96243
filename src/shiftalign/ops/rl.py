"""RL math on padded per-sample token tensors ``(S, L)`` with a 0/1 ``mask`` of response tokens.

- KL estimators per token between the policy and the reference (Schulman, 2020, "Approximating KL
  Divergence"): k1 = log p - log q (unbiased, can be negative), k3 = (q/p) - 1 - log(q/p) (unbiased,
  always >= 0), with p the policy and q the reference, evaluated on policy samples.
- GAE (Schulman et al., 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation", Eq. 16): delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma lambda)^l delta_{t+l}.
- RLOO (Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization", Eq. 5):
  A_i = R_i - 1/(k-1) sum_{j != i} R_j over the k samples of a prompt.
- GRPO (Shao et al., 2024, "DeepSeekMath", Eq. 3 with outcome supervision): A_i = (R_i - mean R) / (std R + eps).
- whitening: (x - mean) / std over masked entries.
"""

from __future__ import annotations

import torch


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    d = ref_logp - logp
    return torch.exp(d) - 1 - d


KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """(advantages, returns), both ``(S, L)``; positions past a sequence's end get 0 and do not leak."""
    S, L = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(S, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(L)):
        m = mask[:, t]
        next_v = values[:, t + 1] * mask[:, t + 1] if t + 1 < L else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < L else 0)) * m
        adv[:, t] = last
    return adv, (adv + values) * mask


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """``scores (P, k)`` -> leave-one-out advantages ``(P, k)``; needs k >= 2."""
    k = scores.shape[1]
    if k < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    return scores - (scores.sum(1, keepdim=True) - scores) / (k - 1)


def grpo_advantages(scores: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``scores (P, k)`` -> group-normalised advantages ``(P, k)``."""
    return (scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True, unbiased=False) + eps)
