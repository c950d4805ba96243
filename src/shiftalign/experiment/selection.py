"""Gold-free selection: which of an experiment's candidate policies to deploy, chosen without the gold reward.

A user of a domain-adaptation method has no gold reward on the target. To choose among the policies training
produced (the candidates: every trajectory point, round and final policy of the arms a user could deploy,
``experiment.candidates``) they have the reward model, trained on the source pairs, and each candidate's own
samples of the target prompts. The selectors below see that *evidence* only (:class:`Evidence` holds no gold);
the experiment, which has gold, grades each pick by its regret against the gold-best candidate
(:func:`grade`). One registry, :data:`SELECTORS`; a selector maps the candidates' evidence to a pick, or
abstains and says why.

Evidence of candidate c, its N samples y_1..y_N of the held-out target prompts (the evaluation's), the reward
ensemble's K members r_1..r_K (a directory of reward heads; a single reward model is K = 1):

    mu_i = (1/K) sum_k r_k(y_i),      sigma_i = sqrt((1/K) sum_k (r_k(y_i) - mu_i)^2)
    score(c) = (1/N) sum_i mu_i,      lcb(c) = (1/N) sum_i (mu_i - lambda sigma_i),   lambda = 1      (eq. 1)

(``ops.ensemble_bound``'s ``lcb`` per sample, its default lambda), and the overlap of the candidate's samples
with the reward model's training responses s_1..s_M (the source pairs' chosen and rejected responses): Kish's
effective sample size of density-ratio weights w_j = p_c(s_j) / p_source(s_j), estimated by a cross-fitted
probabilistic classifier on the reward model's own features (``reweight.classifier``),

    ESS/N(c) = (sum_j w_j)^2 / (M sum_j w_j^2).                                                      (eq. 2)

Selectors:

- ``most_trained`` (trivial): the candidate furthest trained from the initial policy, by the KL of its sampling
  distribution to the initial policy's (the evaluation's exact KL, read without gold). Steps are not on one
  scale across arm kinds (a DPO step on source pairs, a round of pseudo-labels, a warm start that stacks one arm
  on another); the KL is, and along a trajectory it grows with training. What a user ships who trusts training.
- ``reward_model`` (trivial): argmax_c score(c), the reward model's own verdict.
- ``conservative`` (proposed): argmax_c lcb(c) over the candidates with ESS/N(c) >= 0.1; a candidate below is
  excluded, and when every candidate is (or the reward model is one model) the selector abstains, saying why.

Why each part of the conservative rule is there:

- *The reward model's score is the estimate*, as in importance-weighted validation (Sugiyama, Krauledat &
  Mueller, 2007, "Covariate shift adaptation by importance weighted cross validation", JMLR 8: the target risk
  of a model estimated on labelled source data as (1/M) sum_j w_j loss_j) and deep embedded validation (You,
  Wang, Long & Jordan, 2019, "Towards accurate model selection in deep unsupervised domain adaptation", ICML:
  the same on learned features, with the control variate eta: (1/M) sum_j w_j loss_j + eta (1/M) sum_j w_j - eta,
  eta = -Cov(w loss, w) / Var(w)): what was learnt on the source is carried to the target. Here the
  Bradley-Terry reward model carries the source labels, and it scores the candidate's own target samples.
- *A lower bound, not the mean* (eq. 1): a candidate trained against the reward model gains most where the
  model is wrong in its favour, and that is where the members of an ensemble disagree (Coste et al., 2024,
  ICLR; over-optimisation: Gao, Schulman & Hilton, 2023, ICML). ``reward_model`` rewards that exploitation;
  one standard deviation of the members below their mean discounts it, in the score's own units, with lambda
  fixed a priori (``ops.ensemble_bound``, "Choosing lambda without gold").
- *The overlap gate* (eq. 2): the members' spread measures the uncertainty of their fit (bootstrap resamples of
  the source pairs, Lakshminarayanan et al., 2017), not how far the samples are from the source responses:
  linear heads can agree on a direction the source never varied along, so their agreement is no warrant off
  the source. Both validation estimators above are only as good as the overlap of source and target: with few
  effective source examples behind them they rest on a handful of points (the variance of the weights, which
  DEV's control variate is there to reduce, not to remove). ESS/N < 0.1 is where ``reweight.diagnostics`` warns
  that a weighted estimate rests on a few examples: the candidate's samples have left the reward model's
  training distribution, and its score there is extrapolation; it is excluded rather than discounted, because
  no lambda prices an extrapolation.
- *Abstention*: when every candidate is excluded, ranking them by scores that none of them can be read by
  would be a pick in name only; the selector says so instead, as ``reweight`` says so of weights.

Regret of a pick (:func:`regret`): G(best) - G(pick), G(c) = (1/P) sum_p g_c[p] the mean over the P held-out
prompts of the candidate's per-prompt gold, best = argmax_c G(c) over every candidate (excluded ones too), with a
paired percentile bootstrap 95 % interval over prompts (``recipes.evaluate.paired_bootstrap``): the interval
resamples prompts with the two candidates fixed; it does not count the uncertainty of which candidate is best,
and since the best is chosen on the same prompts, G(best) and so the regret lean high (against the selector).
Its coverage of a fixed pair's regret is measured in tests/test_selection.py (0.93 at 60 prompts).

    picks = {name: SELECTORS.get(name).choose(evidence) for name in SELECTORS.names()}
    graded = grade(record, gold)   # record: the selection stage's; gold: candidate -> (P,) per-prompt gold
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np

from ..ops.ensemble_bound import DEFAULT_LAMBDA, bounded
from ..registry import Registry
from ..reweight.diagnostics import LOW_ESS

LCB_LAMBDA = DEFAULT_LAMBDA  # members' standard deviations below their mean (eq. 1)
MIN_ESS = LOW_ESS  # ESS/N below which a candidate's samples have left the reward model's training data (eq. 2)
BOOTSTRAP = 2000  # draws of the regret's interval


@dataclass(frozen=True)
class Evidence:
    """What a selector may read of one candidate (nothing of the gold)."""

    name: str
    kl: float  # mean KL of its sampling distribution to the initial policy's, nats per response
    score: float  # score(c) of eq. 1: the mean over its samples of the members' mean
    lcb: float  # lcb(c) of eq. 1 at LCB_LAMBDA
    spread: float  # mean over its samples of the members' standard deviation
    members: int  # K
    ess_fraction: float | None  # ESS/N of eq. 2; None where the reward model has no features to measure it on

    @classmethod
    def from_scores(cls, name: str, kl: float, member_scores, ess_fraction: float | None) -> Evidence:
        """Evidence from the (K, N) member scores of the candidate's N samples."""
        r = np.atleast_2d(np.asarray(member_scores, np.float64))
        return cls(name, float(kl), float(r.mean()), float(bounded(r, "lcb", LCB_LAMBDA).mean()),
                   float(r.std(0).mean()), int(r.shape[0]), None if ess_fraction is None else float(ess_fraction))

    @classmethod
    def from_record(cls, record: dict) -> Evidence:
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Pick:
    choice: str | None  # the candidate picked; None: the selector abstains
    reason: str  # why this candidate, or why none
    estimate: float | None = None  # the pick's value under the selector's criterion
    excluded: dict = field(default_factory=dict)  # candidate -> why the selector left it out


@dataclass(frozen=True)
class Selector:
    name: str
    choose: Callable  # (list[Evidence]) -> Pick
    rule: str  # the rule in one sentence, for the report


SELECTORS: Registry[Selector] = Registry("selector")


def _most_trained(evidence: list[Evidence]) -> Pick:
    if not evidence:
        return Pick(None, "abstains: no candidates")
    best = max(evidence, key=lambda e: e.kl)  # the first of ties, in candidate order
    return Pick(best.name, f"the largest KL to the initial policy, {best.kl:.3g} nats", best.kl)


def _reward_model(evidence: list[Evidence]) -> Pick:
    if not evidence:
        return Pick(None, "abstains: no candidates")
    best = max(evidence, key=lambda e: e.score)
    return Pick(best.name, f"the highest mean reward-model score on its samples, {best.score:.3g}", best.score)


def _conservative(evidence: list[Evidence]) -> Pick:
    if not evidence:
        return Pick(None, "abstains: no candidates")
    k = evidence[0].members
    if k < 2:
        return Pick(None, f"abstains: the reward model is {k} model, with no spread to bound (it needs an ensemble "
                          "of two or more reward heads)")
    excluded = {}
    for e in evidence:
        if e.ess_fraction is None:
            excluded[e.name] = "its overlap with the reward model's training responses was not measured"
        elif e.ess_fraction < MIN_ESS:
            excluded[e.name] = (f"ESS/N {e.ess_fraction:.3g} < {MIN_ESS:g}: its samples have left the reward "
                                "model's training distribution")
    kept = [e for e in evidence if e.name not in excluded]
    if not kept:
        measured = [e.ess_fraction for e in evidence if e.ess_fraction is not None]
        largest = f" (the largest is {max(measured):.3g})" if measured else ""
        return Pick(None, f"abstains: every candidate's samples have left the reward model's training distribution: "
                          f"ESS/N of its training responses' weights toward them is below {MIN_ESS:g} for all "
                          f"{len(evidence)}{largest}, so no score of the reward model can be read for any",
                    None, excluded)
    best = max(kept, key=lambda e: e.lcb)
    return Pick(best.name, f"the highest mean lower bound ({LCB_LAMBDA:g} sd of the {k} members below their mean), "
                           f"{best.lcb:.3g}, of the {len(kept)} of {len(evidence)} candidates with ESS/N >= "
                           f"{MIN_ESS:g}", best.lcb, excluded)


SELECTORS.register("most_trained", Selector("most_trained", _most_trained,
                                            "the candidate with the largest KL to the initial policy"))
SELECTORS.register("reward_model", Selector("reward_model", _reward_model,
                                            "the highest mean reward-model score on the candidate's samples"))
SELECTORS.register("conservative", Selector(
    "conservative", _conservative,
    f"the highest mean of the ensemble's lower bound (mean − {LCB_LAMBDA:g} sd over members) on the candidate's "
    f"samples, among candidates whose samples the reward model's training responses cover (ESS/N ≥ {MIN_ESS:g}); "
    "abstains when none does"))


def regret(best, pick, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """(G(best) - G(pick), 2.5 %, 97.5 %) from the (P,) per-prompt gold of the two candidates: the paired
    percentile bootstrap over prompts."""
    from ..recipes.evaluate import paired_bootstrap

    return paired_bootstrap(np.asarray(best, np.float64), np.asarray(pick, np.float64), n, seed)


def grade(record: dict, gold: dict, n: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Every selector's pick from the evidence of ``record`` (the selection stage's: ``candidates``, each with
    the fields of :class:`Evidence`), and, from ``gold`` (candidate -> (P,) per-prompt gold, None where it has
    none), the gold of each pick, the gold-best candidate and each pick's regret with its interval."""
    evidence = [Evidence.from_record(c) for c in record["candidates"]]
    graded = {k: np.asarray(v, np.float64) for k, v in gold.items() if v is not None}
    best = max(graded, key=lambda k: graded[k].mean()) if graded else None  # the first of ties
    selectors = {}
    for name in SELECTORS.names():
        s = SELECTORS.get(name)
        p = s.choose(evidence)
        entry = {"rule": s.rule, "pick": p.choice, "reason": p.reason, "estimate": p.estimate,
                 "excluded": p.excluded, "gold": None, "regret": None, "regret_ci95": None}
        if best is not None and p.choice in graded:
            d, lo, hi = regret(graded[best], graded[p.choice], n, seed)
            entry.update(gold=float(graded[p.choice].mean()), regret=d, regret_ci95=[lo, hi])
        selectors[name] = entry
    candidates = [{**c, "gold": float(graded[c["name"]].mean()) if c["name"] in graded else None}
                  for c in record["candidates"]]
    return {"selectors": selectors, "gold_best": best, "gold_best_gold": float(graded[best].mean()) if best else None,
            "candidates": candidates, "unscored": record.get("unscored", {}),
            **{k: record[k] for k in ("reward_model", "members", "lcb_lambda", "min_ess", "overlap") if k in record}}
