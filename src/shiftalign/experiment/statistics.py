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
The interval is D +- t_{nu, 0.975} sqrt(Var_hat(D)), with nu the Welch-Satterthwaite degrees of freedom
of the linear combination of independent mean squares (Satterthwaite, 1946, "An approximate distribution
of estimates of variance components", Biometrics Bull. 2; Welch, 1947, Biometrika 34):
    nu = V^2 / [ (Var_p(d_p)/P)^2 / (P-1) + (f B)^2 / df_B + (f W/P)^2 / df_W ],  f = 1/S_A + 1/S_B.
When sigma^2_hat is truncated at zero the seed term is zero but nu keeps B's term: the seed variance is
still uncertain. Pooling assumes one seed variance for all trained arms; an arm whose own replicates
spread far more than the pool (its ``seed_spread``) is read with that in mind.
An arm whose policy does not depend on a training seed (the initial policy: ``untrained``) has no seed
term and is not pooled. With no trained arm of two replicates the seed variance is unknown: the interval is
the prompt part alone (t on P - 1 df) and its ``method`` says so (:data:`PROMPTS_ONLY`); it is never an
interval over seeds. :func:`differences` gives every row's interval against the baseline.

Family-wise intervals (:func:`simultaneous_differences`): single-step max-|t| (Hothorn, Bretz & Westfall,
2008, "Simultaneous inference in general parametric models", Biom. J. 50), the joint law of the arms'
errors taken as multivariate t: normal with the per-prompt covariance of the arms' differences / P plus
the seed covariance (each arm's sigma^2 / S_k, and the baseline's sigma^2 / S_B shared by all), divided by
one sqrt(chi^2_nu / nu), nu the smallest of the arms' Satterthwaite df; the critical value is simulated.

Gap recovery (:func:`gap_recovery`), R = D(arm) / D(oracle), both against the baseline, with a percentile
interval over draws of the pair (D(arm), D(oracle)) from their joint law under eq. 1: bivariate t with the
covariance above (prompts shared, so the per-prompt covariance of the two differences / P; seeds, each arm's
sigma^2 / S_k and the baseline's sigma^2 / S_B in both, which correlates numerator and denominator) and
nu the smaller of the two Satterthwaite df: a simulated counterpart of Fieller's interval (Fieller, 1954,
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
    square, df ``within_df``) are its parts, kept for the Satterthwaite degrees of freedom."""

    value: float | None
    df: int
    between: float
    within: float
    within_df: int
    prompts: int
    arms: tuple[str, ...]


class Difference(NamedTuple):
    """Arm minus baseline: point, interval, what it resamples, standard error and degrees of freedom."""

    diff: float
    lo: float
    hi: float
    method: str
    se: float
    df: float

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


def _t(q: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.ppf(q)) if not math.isfinite(df) else float(t.ppf(q, df))


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


def _seed_term(sv: SeedVariance, f: float) -> tuple[float, float]:
    """(f sigma^2_hat, its part of the Satterthwaite denominator)."""
    if sv.value is None or f == 0 or sv.value == 0:
        # truncated at zero: the seed variance's uncertainty is still that of B (it may be far from zero)
        return 0.0, ((f * sv.between) ** 2 / sv.df if sv.value == 0 and f else 0.0)
    return f * sv.value, (f * sv.between) ** 2 / sv.df + (f * sv.within / sv.prompts) ** 2 / sv.within_df


def _seed_factor(arms: Mapping[str, np.ndarray], names, untrained: Collection[str]) -> float:
    return sum(1.0 / len(arms[n]) for n in names if n not in untrained)


def _components(a: np.ndarray, b: np.ndarray, f: float, sv: SeedVariance) -> tuple[float, float, float]:
    """(D, se, df) of eq. 1."""
    d = a.mean(0) - b.mean(0)
    P = len(d)
    vp = d.var(ddof=1) / P
    vs, den_s = _seed_term(sv, f)
    v = vp + vs
    den = vp ** 2 / (P - 1) + den_s
    df = v ** 2 / den if den > 0 else math.inf
    return float(a.mean() - b.mean()), math.sqrt(v), df


def differences(arms: Mapping[str, object], baseline: str, seed_var: SeedVariance | None = None,
                level: float = 0.95, untrained: Collection[str] = ()) -> dict[str, Difference]:
    """Every arm's difference to ``baseline`` with its ``level`` interval over prompts and seeds (eq. 1).
    ``arms``: name -> (replicates, prompts) array of per-prompt gold means, the baseline among them;
    ``seed_var``: default the pooled seed variance of ``arms`` (eq. 2); ``untrained``: arms without a
    seed term (the initial policy). The baseline's own row is (0, 0, 0)."""
    arrays = _arrays(arms)
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    method, q = _method(sv), 0.5 + level / 2
    out = {}
    for k, a in arrays.items():
        if k == baseline:
            out[k] = Difference(0.0, 0.0, 0.0, method, 0.0, math.inf)
            continue
        d, se, df = _components(a, arrays[baseline], _seed_factor(arrays, (k, baseline), untrained), sv)
        h = _t(q, df) * se
        out[k] = Difference(d, d - h, d + h, method, se, df)
    return out


def _joint(arrays: dict[str, np.ndarray], baseline: str, names: list[str], sv: SeedVariance,
           untrained: Collection[str]) -> np.ndarray:
    """Covariance (K, K) of the differences of ``names`` to ``baseline`` under eq. 1: the per-prompt
    covariance of their per-prompt differences / P, plus the seed part (each arm's sigma^2 / S_k on the
    diagonal, the baseline's sigma^2 / S_B shared by all)."""
    b = arrays[baseline]
    dp = np.stack([arrays[k].mean(0) - b.mean(0) for k in names])  # (K, P)
    cov = np.atleast_2d(np.cov(dp)) / dp.shape[1]
    s2 = sv.value or 0.0
    if baseline not in untrained:
        cov = cov + s2 / len(b)
    return cov + np.diag([0.0 if k in untrained else s2 / len(arrays[k]) for k in names])


def _t_draws(cov: np.ndarray, nu: float, n: int, seed: int) -> np.ndarray:
    """(n, K) draws of a multivariate t: N(0, cov) over sqrt(chi^2_nu / nu)."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n, method="eigh")
    return z / np.sqrt(rng.chisquare(nu, n) / nu)[:, None] if math.isfinite(nu) else z


def simultaneous_differences(arms: Mapping[str, object], baseline: str, names: Collection[str],
                             seed_var: SeedVariance | None = None, level: float = 0.95, n: int = 20000,
                             seed: int = 0, untrained: Collection[str] = ()) -> dict[str, Difference]:
    """Intervals for the differences of ``names`` to ``baseline`` that hold together with probability
    ``level`` (max-|t|, prompts and seeds; see the module docstring). ``n`` simulated draws."""
    arrays = _arrays(arms)
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    names = [k for k in names if k != baseline]
    if not names:
        return {}
    single = differences({k: arrays[k] for k in [*names, baseline]}, baseline, sv, level, untrained)
    cov = _joint(arrays, baseline, names, sv, untrained)
    se = np.sqrt(np.diag(cov))
    live = se > 0
    if not live.any():
        return {k: single[k] for k in names}
    z = _t_draws(cov[np.ix_(live, live)], min(single[k].df for k, ok in zip(names, live) if ok), n, seed)
    c = float(np.quantile(np.abs(z / se[live]).max(1), level))
    return {k: single[k]._replace(lo=single[k].diff - c * s, hi=single[k].diff + c * s)
            for k, s in zip(names, se)}


def gap_recovery(arms: Mapping[str, object], baseline: str, arm: str, oracle: str,
                 seed_var: SeedVariance | None = None, level: float = 0.95, n: int = 4000, seed: int = 0,
                 untrained: Collection[str] = ()) -> Recovery:
    """(D(arm) / D(oracle)) with its percentile interval over ``n`` joint draws of the two differences
    (eq. 1, bivariate t), both against ``baseline``; not resolved (``lo``, ``hi`` None) when the point
    estimate, or (1 - level) / 2 or more of the draws, have a non-positive oracle gain."""
    arrays = _arrays(arms)
    if baseline in (arm, oracle):
        raise ValueError("gap recovery: the arm and the oracle are compared with the baseline, not the baseline itself")
    sv = seed_var if seed_var is not None else pooled_seed_variance(arrays, untrained)
    single = differences({k: arrays[k] for k in (arm, oracle, baseline)}, baseline, sv, level, untrained)
    a, o = single[arm].diff, single[oracle].diff
    cov = _joint(arrays, baseline, [arm, oracle], sv, untrained)
    z = _t_draws(cov, min(single[arm].df, single[oracle].df), n, seed)
    da, do = a + z[:, 0], o + z[:, 1]
    nonpos = do <= 0
    share = float(nonpos.mean())
    method = _method(sv)
    ratio = a / o if o > 0 else None
    if ratio is None or share >= (1 - level) / 2:
        return Recovery(ratio, None, None, method, share, False)
    r = np.where(nonpos, np.where(da >= 0, np.inf, -np.inf), da / np.where(nonpos, 1.0, do))
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return Recovery(ratio, float(lo), float(hi), method, share, True)


def recovers_at_least(r: Recovery, threshold: float = 0.5) -> bool:
    """Whether the interval supports "recovery >= threshold": resolved, and its lower end at or above it."""
    return bool(r.resolved and r.lo is not None and r.lo >= threshold)
