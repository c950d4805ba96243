"""Policy-likelihood-ratio weights, computed inside the training loop from the current policy.

When the source pairs were written by a behaviour policy close to the reference, the ratio of the
current policy to the reference estimates how likely the policy is to produce each response: the
target-over-source ratio without any feature model. Both forms are detached (no gradient flows
through a weight) and recomputed at every step, so they follow the policy as it moves.

- ``wpo``: Zhou et al., 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization", Eq. 5
  (length-normalised form): w = exp( (1/|y+|) log pi(y+|x) + (1/|y-|) log pi(y-|x) ).
- ``relative``: the alpha-relative sequence ratio of each response,
  r_a = r / (a r + 1 - a),  r = pi(y|x) / pi_ref(y|x)  (bounded by 1/a; Yamada et al., 2013),
  combined over chosen and rejected by the geometric mean, as in ``reweight.pairs`` (mode ``both``).

Both multiply the example's static weight (from a weights file or a ``weight`` column) and are
self-normalised by the training loop over the whole optimiser step: the step minimises
sum w f l / sum w f over every micro-batch of every process (see ``train.loop``), so the scale of f
(WPO's factors are around exp(-3)) never changes the effective learning rate, and the
normalisation does not depend on the micro-batch size.
"""

from __future__ import annotations

import torch

from ..config import PolicyRatioConfig  # the run config's `policy_ratio:` section (form, alpha)
from ..errors import ConfigError


def policy_ratio_weights(out: dict, cfg: PolicyRatioConfig) -> torch.Tensor:
    """(B,) detached, unnormalised factors from ``logps``/``lengths`` (B, 2) and, for ``relative``, ``ref_logps``."""
    lp = out["logps"].detach().float()
    if cfg.form == "wpo":
        return (lp / out["lengths"]).sum(-1).exp()
    if cfg.form == "relative":
        if "ref_logps" not in out:
            raise ConfigError("policy_ratio form 'relative' needs a loss with a reference model")
        if not 0 < cfg.alpha <= 1:
            raise ConfigError(f"policy_ratio.alpha must be in (0, 1], got {cfg.alpha}")
        log_r = lp - out["ref_logps"].float()
        # r / (a r + 1 - a) = 1 / (a + (1 - a) exp(-log r)), computed stably in log space
        log_ra = -torch.logaddexp(torch.log(torch.tensor(cfg.alpha)), torch.log1p(torch.tensor(-cfg.alpha)) - log_r) \
            if cfg.alpha < 1 else torch.zeros_like(log_r)
        return log_ra.mean(-1).exp()  # geometric mean over chosen and rejected
    raise ConfigError(f"policy_ratio.form must be wpo or relative, got {cfg.form!r}")
