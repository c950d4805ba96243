"""Bradley-Terry reward-model loss, with an optional margin.

Ouyang et al., 2022, "Training language models to follow instructions with human feedback", Eq. 1
(margin as in Touvron et al., 2023, "Llama 2", Eq. 2):

    loss = -log sigmoid(r(x, y+) - r(x, y-) - m)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .spec import LossSpec, pairwise_metrics, register


@dataclass
class BradleyTerryParams:
    margin: float = 0.0


def bradley_terry_loss(chosen_rewards, rejected_rewards, margin: float = 0.0):
    return -F.logsigmoid(chosen_rewards - rejected_rewards - margin), pairwise_metrics(chosen_rewards, rejected_rewards)


def compute(out: dict, p: BradleyTerryParams):
    r = out["rewards"]
    return bradley_terry_loss(r[:, 0], r[:, 1], p.margin)


register(LossSpec("bradley_terry", compute, BradleyTerryParams, kind="reward", needs_reference=False))
