"""Response log-probabilities from one forward pass over tree rows (see ``data.batching``).

The language-model head is applied only at the positions that predict response tokens, so no
``(B, T, V)`` logits are ever built for prompt or padding tokens:

    log pi(y | x) = sum_t [ z_t[y_t] - logsumexp(z_t) ],   z_t = head(h_{t-1})     (sequence sum)

Returned per ``(row, branch)``: ``logps (B, k)`` (sums) and ``lengths (B, k)`` (token counts).
With a plain linear head (no bias, no logit soft-capping: every model shipped here) the head and its
log-softmax run chunked with recomputation in backward (``ops.chunked``), so not even the response
positions' ``(N, V)`` logits are kept for backward.
"""

from __future__ import annotations

import torch
from torch import nn


def unwrap_hf(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (LoRA layers stay injected and active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone_hidden(model: nn.Module, batch: dict) -> torch.Tensor:
    """Last hidden states ``(B, T, H)`` of the transformer body under the tree attention mask."""
    hf = unwrap_hf(model)
    body = getattr(hf, hf.base_model_prefix)
    mask = batch["attention_mask"]
    if hf.config._attn_implementation == "eager":
        dtype = next(hf.parameters()).dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    out = body(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"], use_cache=False)
    return out.last_hidden_state


def response_logits(model: nn.Module, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
    """fp32 logits ``(N, V)`` at the N positions that predict response tokens."""
    hf = unwrap_hf(model)
    h = hidden[batch["pred_rows"], batch["pred_pos"]]
    logits = hf.get_output_embeddings()(h).float()
    cap = getattr(hf.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _plain_head(hf: nn.Module) -> torch.Tensor | None:
    """The head's weight when the head is a bias-free ``nn.Linear`` without soft-capping, else None."""
    head = hf.get_output_embeddings()
    if type(head) is not nn.Linear or head.bias is not None or getattr(hf.config, "final_logit_softcapping", None):
        return None
    return head.weight


def response_token_logps(model: nn.Module, hidden: torch.Tensor, batch: dict, temperature: float = 1.0,
                         with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(N,)`` log-probs of the response targets under softmax(logits / T) and, with ``with_entropy``,
    each position's entropy; chunked for a plain head, else through the full logits."""
    from .chunked import chunked_token_logps

    hf = unwrap_hf(model)
    W = _plain_head(hf)
    if W is not None:
        h = hidden[batch["pred_rows"], batch["pred_pos"]]
        logp, ent = chunked_token_logps(h, W, batch["targets"], temperature, with_entropy=with_entropy)
        return logp, (ent if with_entropy else None)
    lp = torch.log_softmax(response_logits(model, hidden, batch) / temperature, -1)
    return lp.gather(-1, batch["targets"][:, None])[:, 0], (-(lp.exp() * lp).sum(-1) if with_entropy else None)


def sum_by_branch(values: torch.Tensor, batch: dict) -> torch.Tensor:
    B, k = batch["branch_end"].shape
    out = torch.zeros(B * k, dtype=values.dtype, device=values.device)
    return out.index_add(0, batch["segment"], values).view(B, k)


def branch_logps(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    tok, _ = response_token_logps(model, backbone_hidden(model, batch), batch)
    ones = torch.ones_like(tok)
    return {"logps": sum_by_branch(tok, batch), "lengths": sum_by_branch(ones, batch)}


class CompletionLogProbs(nn.Module):
    """Wraps a causal LM so that ``forward(batch)`` returns per-branch response log-probs.

    Training goes through this module's ``forward`` so data-parallel wrappers see the call."""

    per_pair_logps = True  # its outputs carry each branch's summed log-prob: what policy-ratio weights need

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return branch_logps(self.model, batch)


class BranchRewards(nn.Module):
    """Wraps a sequence-classification model (scalar head) so that ``forward(batch)`` returns the
    reward of each branch, read at the branch's last token: ``rewards (B, k)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        hidden = backbone_hidden(self.model, batch)
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        h_end = hidden[rows, batch["branch_end"]]
        head = unwrap_hf(self.model).score
        return {"rewards": head(h_end).squeeze(-1).float()}
