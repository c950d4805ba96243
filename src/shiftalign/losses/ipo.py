"""IPO: identity preference optimisation, a squared loss that does not over-fit deterministic preferences.

Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences", Eq. 17:

    h = (log pi(y+|x) - log pi_ref(y+|x)) - (log pi(y-|x) - log pi_ref(y-|x))
    loss = (h - 1 / (2 tau))^2

``length_normalize`` replaces the sequence log-probs by per-token means (TRL's variant).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class IPOParams:
    tau: float = 0.1
    length_normalize: bool = False


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, tau: float = 0.1):
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    loss = (chosen - rejected - 1 / (2 * tau)) ** 2
    return loss, pairwise_metrics(tau * chosen, tau * rejected)


def compute(out: dict, p: IPOParams):
    lp, ref = out["logps"], out["ref_logps"]
    if p.length_normalize:
        lp, ref = lp / out["lengths"], ref / out["lengths"]
    return ipo_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], p.tau)


register(LossSpec("ipo", compute, IPOParams, kind="paired", needs_reference=True))
