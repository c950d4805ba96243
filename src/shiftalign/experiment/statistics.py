"""Differences between arms, and gap recovery, with intervals over held-out prompts *and* training seeds.

Every arm k is trained S_k times (seed replicates, often S_k = 1) and each replicate is evaluated on the same
P held-out prompts: g_k[s, p] is replicate s's mean gold reward on prompt p. The model the intervals follow
(a two-factor random-effects model; Searle, Casella & McCulloch, 1992, "Variance Components", Ch. 4) is

    g_k[s, p] = mu_k + u_p + v_kp + e_ks + eps_ksp,

u_p a prompt effect shared by the arms, v_kp the arm's own prompt effect, e_ks the training seed's effect
on the whole replicate (variance sigma^2, the same for every trained arm), eps_ksp the prompt-by-seed noise
(the few samples per prompt, and a replicate's own prompt-to-prompt behaviour). The target is
mu_A - mu_B: the difference over the population of prompts *and* of training seeds.

Difference of arm A to B (eq. 1), point estimate D = mean(g_A) - mean(g_B), with
    Var(D) = Var_p(d_p) / P + sigma^2 (1/S_A + 1/S_B),
d_p = mean_s g_A[s, p] - mean_s g_B[s, p] the per-prompt difference of the replicate means (prompts are
shared, so it is paired and u_p cancels). The first term, the analytic variance of the per-prompt
differences (df P - 1), already holds the prompt-by-seed noise eps / (S P) of both arms; the seed effect
e is the same on every prompt of a replicate, so it is not in it and is added as the second term.

The seed variance sigma^2 is estimated once per experiment, pooled over every trained arm with two or more
replicates (eq. 2, the ANOVA / method-of-moments estimator of a variance component):
    B = sum_k (S_k - 1) var_s(mean_p g_k[s, p]) / sum_k (S_k - 1)          (df  sum_k (S_k - 1))
    W = sum_k (S_k - 1) MS_res,k / sum_k (S_k - 1),  MS_res,k the two-way residual mean square of g_k
                                                                          (df  sum_k (S_k - 1)(P - 1))
    sigma^2_hat = max(0, B - W / P).
B, the spread of the replicates' means, also holds eps / P, which the prompt term already counts: W / P
takes it out, so nothing is counted twice. An arm of one replicate then gets its seed variance from the
others; so does every arm, since pooling over arms gives far more degrees of freedom than an arm's own 2.
The interval is a generalised confidence interval (Weerahandi, 1993, "Generalized confidence intervals",
JASA 88; Krishnamoorthy & Mathew, 2004, JSPI 122, for variance components), D +- the ``level`` quantile of
|E*| over n draws of the pivotal error (eq. 3)
    E* = Z sqrt( Var_p(d_p)/P (P-1)/chi2_{P-1}  +  f sigma2* ),   f = 1/S_A + 1/S_B,
    sigma2* = max(0, B df_B / chi2_{df_B} - (W / P) df_W / chi2_{df_W}),
Z standard normal and the chi-squares independent: each mean square is replaced by its pivot, so the
uncertainty of a seed variance pooled over few replicates (df 2 to 6) widens the interval as it should. It
replaces a t on the Welch-Satterthwaite degrees of freedom (Satterthwaite, 1946, Biometrics Bull. 2), whose
nu = V^2 / sum(term^2 / df) collapses towards 0 when B - W/P is a small difference of large mean squares
and the compared arms' own prompt variance is small (arms noisier than the compared ones in the pool): a
t quantile at nu 0.001 made an interval of +-3e64. Without a seed term E* is exactly t_{P-1} sqrt(Var_p/P),
and its quantile is read from the t law rather than drawn.
A truncated sigma^2_hat = 0 still draws sigma2* > 0 whenever B's pivot exceeds W's: the seed variance
is still uncertain. Pooling assumes one seed variance for all trained arms; an arm whose own replicates
spread far more than the pool (its ``seed_spread``) is read with that in mind.
An arm whose policy does not depend on a training seed (the initial policy: ``untrained``) has no seed
term and is not pooled. With no trained arm of two replicates the seed variance is unknown: the interval is
the prompt part alone (t on P - 1 df) and its ``method`` says so (:data:`PROMPTS_ONLY`); it is never an
interval over seeds. :func:`differences` gives every row's interval against the baseline.

Family-wise intervals (:func:`simultaneous_differences`): single-step max-|t| (Hothorn, Bretz & Westfall,
2008, "Simultaneous inference in general parametric models", Biom. J. 50), the joint law of the arms'
errors drawn as eq. 3 jointly: normal with the per-prompt covariance of the arms' differences / P, scaled by
one sqrt((P-1) / chi2_{P-1}), plus seed deviations N(0, sigma2* / S_k) per arm minus the baseline's
N(0, sigma2* / S_B) shared by all, sigma2* one draw for all. Each arm's interval is D_k +- c h_k, h_k the
``level`` quantile of its own |E*_k| and c that of max_k |E*_k| / h_k; standardising by the drawn h_k rather
than a plug-in standard error keeps an arm whose plug-in is near zero (sigma^2_hat truncated, a difference
with almost no prompt variance) from inflating c and so every other arm's interval. A single prompt
covariance scaled by one chi-square (not a Wishart draw) leaves each arm's own law exact.

Gap recovery (:func:`gap_recovery`), R = D(arm) / D(oracle), both against the baseline, with a percentile
interval over draws of the pair (D(arm), D(oracle)) from their joint law, the joint eq. 3 draws above (prompts
shared, so the per-prompt covariance of the two differences; the baseline's seed deviation in both, which
correlates numerator and denominator): a simulated counterpart of Fieller's interval (Fieller, 1954,
"Some problems in interval estimation", JRSS B 16). A prompt bootstrap with normal seed deviations, tried
first, covered 0.93 where this covers 0.95 (the simulation in tests/test_statistics.py). A draw whose
oracle gain is not positive has no finite ratio: it counts as +inf (-inf when the arm's gain is negative),
the limit as the oracle gain falls to zero, so it widens the interval rather than being dropped. The ratio is
*resolved* only when the point estimate's oracle gain is positive and fewer than (1 - level) / 2 of the
draws (2.5 % at 95 %) have a non-positive one: the oracle's one-sided lower bound lies above zero, the
condition under which Fieller's interval is bounded. Otherwise no interval is given ("not resolved").
:func:`recovers_at_least` reads "recovery >= 0.5" as supported when the interval's lower end is >= 0.5.

    from shiftalign.experiment.statistics import differences, gap_recovery
    rows = differences({"source_only": g0, "method": g1, "oracle": g2}, "source_only")
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

PROMPTS_AND_SEEDS = "prompts + seeds"
PROMPTS_ONLY = "prompts only: seed variance unknown"


@dataclass(frozen=True)
class SeedVariance:
    """The pooled training-seed variance of one replicate's mean gold (eq. 2). ``value`` is None when no
    trained arm has two replicates (unknown); ``between`` (df ``df``) and ``within`` (the residual mean
    square, df ``within_df``) are its parts, kept for their pivots (eq. 3)."""

    value: float | None
    df: int
    between: float
    within: float
    within_df: int
    prompts: int
    arms: tuple[str, ...]


class Difference(NamedTuple):
    """Arm minus baseline: point, interval, what it resamples, and the plug-in standard error."""

    diff: float
    lo: float
    hi: float
    method: str
    se: float

    @property
    def over_seeds(self) -> bool:
        return self.method.startswith(PROMPTS_AND_SEEDS)


class Recovery(NamedTuple):
    """Gap recovery D(arm) / D(oracle); ``lo``/``hi`` None when not resolved (see the module docstring)."""

    ratio: float | None
    lo: float | None
    hi: float | None
    method: str
    nonpositive_share: float
    resolved: bool


def _arr(g) -> np.ndarray:
    a = np.atleast_2d(np.asarray(g, np.float64))
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"expected a (replicates, prompts) array with at least 2 prompts, got shape {a.shape}")
    return a


def _arrays(arms: Mapping[str, object]) -> dict[str, np.ndarray]:
    out = {k: _arr(v) for k, v in arms.items()}
    widths = {a.shape[1] for a in out.values()}
    if len(widths) > 1:
        raise ValueError(f"arms are evaluated on different numbers of prompts: {sorted(widths)}")
    return out


def _method(sv: SeedVariance) -> str:
    if sv.value is None:
        return f"{PROMPTS_ONLY} (no trained arm has two replicates)"
    return f"{PROMPTS_AND_SEEDS} (seed variance pooled over {len(sv.arms)} arms, df {sv.df})"


def pooled_seed_variance(arms: Mapping[str, object], untrained: Collection[str] = ()) -> SeedVariance:
    """Eq. 2 over every arm of ``arms`` (name -> (replicates, prompts)) with two or more replicates, except
    the ``untrained`` ones (policies that do not depend on a training seed)."""
    arrays = _arrays(arms)
    P = next(iter(arrays.values())).shape[1] if arrays else 0
    between = within = 0.0
    df = 0
    used = []
    for k, g in arrays.items():
        S = len(g)
        if S < 2 or k in untrained:
            continue
        r = g - g.mean(1, keepdims=True) - g.mean(0, keepdims=True) + g.mean()
        between += (S - 1) * g.mean(1).var(ddof=1)
        within += (r ** 2).sum() / (P - 1)
        df += S - 1
        used.append(k)
    if not df:
        return SeedVariance(None, 0, 0.0, 0.0, 0, P, ())
    between, within = between / df, within / df
    return SeedVariance(max(0.0, between - within / P), df, between, within, df * (P - 1), P, tuple(used))


def seed_variance_draws(sv: SeedVariance, n: int, rng) -> np.ndarray:
    """(n,) generalised pivotal draws sigma2* of the pooled seed variance (eq. 3); zeros when it is unknown."""
    if sv.value is None:
        return np.zeros(n)
    between = sv.between * sv.df / rng.chisquare(sv.df, n)
    within = sv.within / sv.prompts * sv.within_df / rng.chisquare(sv.within_df, n)
    return np.maximum(0.0, between - within)


def _seed_factor(arms: Mapping[str, np.ndarray], names, untrained: Collection[str]) -> float:
    return sum(1.0 / len(arms[n]) for n in names if n not in untrained)


def _error_draws(arrays: dict[str, np.ndarray], baseline: str, names: list[str], sv: SeedVariance,
                 untrained: Collection[str], n: int, seed: int) -> np.ndarray:
    """(n, K) joint pivotal errors E* of the differences of ``names`` to ``baseline`` (eq. 3)."""
    rng = np.random.default_rng(seed)
    b = arrays[baseline]
    dp = np.stack([arrays[k].mean(0) - b.mean(0) for k in names])  # (K, P)
    P = dp.shape[1]
    cov = np.atleast_2d(np.cov(dp)) / P
    prompts = rng.multivariate_normal(np.zeros(len(names)), cov, size=n, method="eigh")
    prompts *= np.sqrt((P - 1) / rng.chisquare(P - 1, n))[:, None]
    s2 = seed_variance_draws(sv, n, rng)[:, None]
    per = np.array([0.0 if k in untrained else 1.0 / len(arrays[k]) for k in names])
    seeds = rng.standard_normal((n, len(names))) * np.sqrt(s2 * per)
    if baseline not in untrained:
        seeds -= rng.standard_normal((n, 1)) * np.sqrt(s2 / len(b))
    return prompts + seeds


def _plug_in_se(a: np.ndarray, b: np.ndarray, f: float, sv: SeedVariance) -> float:
    """sqrt(Var_hat(D)) of eq. 1, sigma^2_hat plugged in (reported; the intervals come from eq. 3)."""
    return math.sqrt(float((a.mean(0) - b.mean(0)).var(ddof=1)) / a.shape[1] + f * (sv.value or 0.0))


def _half_width(arrays: dict[str, np.ndarray], baseline: str, k: str, sv: SeedVariance, f: float,
                untrained: Collection[str], level: float, n: int, seed: int) -> float:
    """Half-width of the ``level`` interval of eq. 3: read from the t law when there is no seed term (E* is then
    t_{P-1} sqrt(Var_p / P) exactly), else the quantile of |E*| over ``n`` draws."""
    if sv.value is None or f == 0:
        from scipy.stats import t

        d = arrays[k].mean(0) - arrays[baseline].mean(0)
        return float(t.ppf(0.5 + level / 2, len(d) - 1)) * math.sqrt(float(d.var(ddof=1)) / len(d))
    return float(np.quantile(np.abs(_error_draws(arrays, baseline, [k], sv, untrained, n, seed)[:, 0]), level))


def differences(arms: Mapping[str, object], baseline: str, seed_var: SeedVariance | None = None,
                level: float = 0.95, untrained: Collection[str] = (), n: int = 20000,
                seed: int = 0) -> dict[str, Difference]:
    """Every arm's difference to ``baseline`` with its ``level`` interval over prompts and seeds (eq. 1, the
    interval of eq. 3 from ``n`` draws). ``arms``: name -> (replicates, prompts) array of per-prompt gold
    means, the baseline among them; ``seed_var``: default the pooled seed variance of ``arms`` (eq. 2);
    ``untrained``: arms without a seed term (the initial policy). The baseline's own row is (0, 0, 0)."""
    arrays = _arrays(arms)
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    method = _method(sv)
    out = {}
    for k, a in arrays.items():
        if k == baseline:
            out[k] = Difference(0.0, 0.0, 0.0, method, 0.0)
            continue
        b = arrays[baseline]
        f = _seed_factor(arrays, (k, baseline), untrained)
        d = float(a.mean() - b.mean())
        h = _half_width(arrays, baseline, k, sv, f, untrained, level, n, seed)
        out[k] = Difference(d, d - h, d + h, method, _plug_in_se(a, b, f, sv))
    return out


def simultaneous_differences(arms: Mapping[str, object], baseline: str, names: Collection[str],
                             seed_var: SeedVariance | None = None, level: float = 0.95, n: int = 20000,
                             seed: int = 0, untrained: Collection[str] = ()) -> dict[str, Difference]:
    """Intervals for the differences of ``names`` to ``baseline`` that hold together with probability
    ``level`` (see the module docstring): D_k +- c h_k, h_k the ``level`` quantile of |E*_k| and c that of
    max_k |E*_k| / h_k over ``n`` joint draws (c >= 1; with one arm c = 1)."""
    arrays = _arrays(arms)
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    names = [k for k in names if k != baseline]
    if not names:
        return {}
    single = differences({k: arrays[k] for k in [*names, baseline]}, baseline, sv, level, untrained, n, seed)
    z = np.abs(_error_draws(arrays, baseline, names, sv, untrained, n, seed))
    h = np.quantile(z, level, axis=0)
    live = h > 0  # an arm whose draws are all zero has nothing uncertain: a zero-width interval
    c = float(np.quantile((z[:, live] / h[live]).max(1), level)) if live.any() else 0.0
    return {k: single[k]._replace(lo=single[k].diff - c * w, hi=single[k].diff + c * w) for k, w in zip(names, h)}


def gap_recovery(arms: Mapping[str, object], baseline: str, arm: str, oracle: str,
                 seed_var: SeedVariance | None = None, level: float = 0.95, n: int = 4000, seed: int = 0,
                 untrained: Collection[str] = ()) -> Recovery:
    """(D(arm) / D(oracle)) with its percentile interval over ``n`` joint draws of the two differences
    (eq. 3), both against ``baseline``; not resolved (``lo``, ``hi`` None) when the point
    estimate, or (1 - level) / 2 or more of the draws, have a non-positive oracle gain."""
    arrays = _arrays(arms)
    if baseline in (arm, oracle):
        raise ValueError("gap recovery: the arm and the oracle are compared with the baseline, not the baseline itself")
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    a, o = (float(arrays[k].mean() - arrays[baseline].mean()) for k in (arm, oracle))
    z = _error_draws(arrays, baseline, [arm, oracle], sv, untrained, n, seed)
    da, do = a + z[:, 0], o + z[:, 1]
    nonpos = do <= 0
    share = float(nonpos.mean())
    method = _method(sv)
    ratio = a / o if o > 0 else None
    if ratio is None or share >= (1 - level) / 2 - 1e-12:  # 50 of 2,000 is 2.5 %: not resolved
        return Recovery(ratio, None, None, method, share, False)
    r = np.where(nonpos, np.where(da >= 0, np.inf, -np.inf), da / np.where(nonpos, 1.0, do))
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return Recovery(ratio, float(lo), float(hi), method, share, True)


def recovers_at_least(r: Recovery, threshold: float = 0.5) -> bool:
    """Whether the interval supports "recovery >= threshold": resolved, and its lower end at or above it."""
    return bool(r.resolved and r.lo is not None and r.lo >= threshold)
