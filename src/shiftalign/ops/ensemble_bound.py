"""A lower bound of a reward-model ensemble instead of its mean: conservative pseudo-labels and RL rewards.

Coste et al., 2024 ("Reward Model Ensembles Help Mitigate Overoptimization", ICLR) optimise a policy
against a conservative aggregate of K reward models r_1..r_K rather than their mean: worst-case
optimisation, WCO: R(x) = min_k r_k(x), and uncertainty-weighted optimisation, UWO:
R(x) = mean_k r_k(x) - lambda * Var_k r_k(x) (variance over the members, 1/K). Both score a response
low where the members disagree, which is where the policy has left the data they were fitted on.

``bound`` picks the aggregate of K member values v_1..v_K (one column of a (K, N) matrix):

- ``mean``: (1/K) sum_k v_k, the plain ensemble (the default; what every earlier run used);
- ``lcb``: mean - lambda * std, std the population standard deviation sqrt((1/K) sum_k (v_k - mean)^2)
  (1/K, as UWO's variance and as the labeller's ``spread``); UWO's penalty with the standard deviation in
  place of the variance, so that lambda is in units of the members' own spread and means the same for heads
  of any scale (the variance would make lambda's meaning depend on the scale the heads were fitted at);
- ``worst``: min_k v_k, WCO.

Where it applies:

- **RL rewards** (``rl.scorers.reward_model_scorer`` on a directory of reward heads): per sample, v_k the
  score of the response under member k.
- **Pseudo-labels** (``labeling.pairs.pairs_from_scores``): per pair, v_k = r_k(chosen) - r_k(rejected),
  the pair's score difference under member k, with chosen / rejected ordered by the ensemble mean. The bounded
  difference is the pair's conservative margin: a pair whose bound is not above ``margin`` is dropped (the
  ensemble is not confidently sure of its order: for ``worst``, some member does not prefer the chosen
  response by more than the margin), and a kept pair's margin, confidence sigmoid(margin) and confidence
  weight 2 sigmoid(margin / T) - 1 (``recipes.iterate``) come from the bound. Ordering by the mean loses
  nothing: the bound is at most the mean, so it is positive in at most one order, and that is the mean's.
  The difference form, not the difference of per-sample bounds (for ``lcb``: mean difference
  - lambda (std_chosen - std_rejected)), because that one measures which response the members are less sure
  of, not whether they agree on the order: members that shift both responses of a prompt by the same amount
  agree on the label exactly, yet give each response a large spread; the spread of the difference is the
  uncertainty of the label itself. At ``margin: 0``, ``lcb`` with lambda = c drops the pairs ``min_agreement: c`` drops (mean
  difference under c stds of it; ``min_agreement`` keeps the equality) and, unlike that filter, also lowers
  the confidence weights of those it keeps.

**Choosing lambda without gold**: fixed a priori, 1.0 by default: a pair is labelled only if its mean margin
is more than one standard deviation of the members' margins above ``margin``, and an RL reward is one
standard deviation below the members' mean. Because the std form is in the score's own units, lambda = 1
reads the same for any reward scale; nothing of the target (gold or otherwise) is read. A rule that tunes
lambda on the source pairs was not taken: the reward models are fitted on those pairs, where their members
agree more than anywhere else, so a lambda fitted there says little about the target; and for pairs the bound
only drops or down-weights labels, so the accuracy of the kept labels does not fall as lambda grows: what
lambda trades is coverage against confidence, which source accuracy cannot price. Set ``lcb_lambda`` to
another value to choose otherwise (e.g. 0.5 or 2), and compare arms.

    bounded([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]], "lcb", 1.0)   # -> [3 - sqrt(8/3), 2.0]
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

BOUNDS = ("mean", "lcb", "worst")
DEFAULT_LAMBDA = 1.0  # one standard deviation of the members (see "Choosing lambda without gold")


def check_bound(bound: str, lcb_lambda: float, where: str = "") -> None:
    """ConfigError unless ``bound`` is one of :data:`BOUNDS` and ``lcb_lambda`` a finite number >= 0;
    ``where`` prefixes the keys in the message (e.g. ``reward_model.``)."""
    if bound not in BOUNDS:
        raise ConfigError(f"{where}bound: expected one of {', '.join(BOUNDS)}, got {bound!r}")
    if isinstance(lcb_lambda, bool) or not isinstance(lcb_lambda, (int, float)) or not math.isfinite(lcb_lambda) \
            or lcb_lambda < 0:
        raise ConfigError(f"{where}lcb_lambda: expected a finite number >= 0 (standard deviations below the "
                          f"ensemble mean), got {lcb_lambda!r}")


def check_members(k: int, bound: str, what: str) -> None:
    """ConfigError when a bound other than the mean is asked of fewer than two members: one model has no
    spread, and its 'bound' would be its score, a conservative label in name only. ``what`` names the models."""
    if bound != "mean" and k < 2:
        raise ConfigError(f"bound: {bound} needs an ensemble (two or more reward models or a directory of two or "
                          f"more reward heads); {what} gives {k} model")


def bounded(values, bound: str, lcb_lambda: float = DEFAULT_LAMBDA):
    """The ``bound`` of K member values over the first axis: (K,) -> a float, (K, N) -> (N,) array."""
    v = np.asarray(values, np.float64)
    if bound == "mean":
        out = v.mean(0)
    elif bound == "lcb":
        out = v.mean(0) - lcb_lambda * v.std(0)  # ddof=0: the population std (1/K)
    elif bound == "worst":
        out = v.min(0)
    else:
        raise ConfigError(f"bound: expected one of {', '.join(BOUNDS)}, got {bound!r}")
    return float(out) if out.ndim == 0 else out
