"""Gold reward against KL: the frontier of each arm, and methods compared with source-only training at matched KL.

Training further buys gold reward with distance from the initial policy, so two arms compared at equal steps
are compared at different KLs; the field compares them on the reward-KL frontier instead (Rafailov et al.,
2023, "Direct Preference Optimization", Fig. 2), and the gold reward is read as a function of the KL because
over-optimisation is one (Gao, Schulman & Hilton, 2023, "Scaling laws for reward model over-optimization").

Data. An arm is evaluated at points of its trajectory (e.g. after 1/4, 1/2, 3/4 and all of its steps): at
each :class:`Point`, replicate s and held-out prompt p give the mean gold reward g[s, p] and the KL to the
initial policy kl[s, p] (nats, averaged over the prompt's samples). The prompts are the same for every arm
and point (paired). A :class:`Curve` is an arm's points sorted by mean KL, starting at the initial policy's
point (fraction 0: KL 0, the initial policy's gold), joined by straight lines; it is never extended beyond
its last point.

Envelope (:func:`envelope`). Several source-only settings (longer training, a higher learning rate, a lower
beta) make one baseline frontier: the most gold source-only training reaches within a KL budget k, its own
policies and their mixtures counted,

    E(k) = max { lambda g_i + (1 - lambda) g_j :  lambda k_i + (1 - lambda) k_j <= k,  lambda in [0, 1] },   (1)

over every pair of points i, j (mean KL k, mean gold g) of every baseline curve, for k up to the largest KL a
point reaches, K_B = max_c K_c; beyond it E(k) is not defined (NaN): nothing is extrapolated. A mixture is
achievable: the policy that samples from policy i with probability lambda and from j otherwise has gold
lambda g_i + (1 - lambda) g_j and, KL being jointly convex, a KL to the initial policy of at most
lambda k_i + (1 - lambda) k_j, so mixing makes the achievable set convex (as randomised policies do in
constrained MDPs: Altman, 1999, "Constrained Markov Decision Processes"). E is therefore the least concave
majorant of the baseline's points, held level beyond its highest point: non-decreasing in k, since a policy that
stays within a smaller budget stays within a larger one. Two settings that reach very different KLs are thus
joined by a straight line between their points, not each read along its own path from the initial policy,
which would understate the baseline between them (and let it fall as the budget grows). The method's side is
its own curve, read as it is (see eq. 2), so the comparison errs against the method, not for it.

Matched KL (:func:`matched_kl`). A method m is compared with the envelope at a KL k:

    D(k) = f_m(k) - E(k),     k = min(k_asked, K_m, K_B),  K_B = max_c K_c,                          (2)

k_asked either the method's own final KL ("own": then f_m(k) is its final point's gold) or a given level; a
level the baseline (or the method) does not reach is replaced by the largest common KL, and the result says
so. :func:`default_levels` gives the usual three: the method's own final KL, and 1/2 and 1/4 of it.

The interval is a percentile interval over ``n`` draws; each draw resamples
  * the prompts, once, shared by every arm and point (paired): every point's mean gold and mean KL is
    recomputed on the resampled prompts, so the KL compared at (the method's own), every curve, the envelope
    and the curve that attains it move with the draw and are recomputed;
  * the training seeds: each trained curve k gets one deviation ~ N(0, sigma2* / S_k) per draw, added to the
    gold of all its trained points (a trajectory's points share the seed); the initial point and an
    untrained curve get none. sigma2* is the pooled seed variance of one replicate's mean gold
    (``statistics.pooled_seed_variance``, eq. 2 there, on the final points of the trained curves) drawn
    per draw as its generalised pivotal quantity (Weerahandi, 1993, "Generalized confidence intervals",
    JASA 88; statistics.py eq. 3, ``seed_variance_draws``):
        sigma2* = max(0, B df_B / chi2_{df_B} - (W / P) df_W / chi2_{df_W}),
    B and W the between-replicate and residual mean squares of eq. 2; a known variance (a float) is used
    as it is. This propagates the uncertainty of a variance pooled over few replicates (df 4 with two
    3-seed arms), which a fixed sigma^2_hat would not: with sigma^2_hat plugged in, the simulation of
    tests/test_frontier.py covered 0.89 (a 1-seed method) where the pivotal draw covers 0.96.
Replicates are not resampled within a curve: each point enters through its per-prompt replicate mean
mean_s g[s, p], whose spread over the resampled prompts already holds the prompt-by-seed noise
(statistics.py, eq. 1), and the seed effect is the deviation above, so resampling the replicates as well
would count the seed variance twice (and give a 3-seed curve a three-valued law and a 1-seed curve none).
The KL's own seed spread is not added: a seed that trains further moves a point along its curve, which the
gold deviation already covers for the method and which hardly moves an interpolated envelope (seeds that
also scale a curve's KL by 10-20 % gave coverage 0.97-0.995 in the same simulation: conservative, not short).
With no trained curve of two replicates the seed variance is unknown and the interval is over prompts only,
and says so. Measured in tests/test_frontier.py: 95 % intervals cover the true matched-KL difference at the
method's own KL in 0.953 (1 seed) and 0.953 (3 seeds) of 400 simulated experiments.

    from shiftalign.experiment.frontier import Curve, Point, default_levels, matched_kl
    init = Point("0", 0.0, g0, np.zeros_like(g0))
    dpo = Curve("source_only", (init, Point("1/2", 0.5, g1, k1), Point("1", 1.0, g2, k2)))
    rows = matched_kl(method, [dpo, dpo_long], at=default_levels(method))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shiftalign.experiment.statistics import (
    PROMPTS_AND_SEEDS,
    PROMPTS_ONLY,
    SeedVariance,
    pooled_seed_variance,
    seed_variance_draws,
)

OWN = "own"


@dataclass(frozen=True)
class Point:
    """One evaluation of an arm's trajectory: ``label`` ("1/4"), ``fraction`` of its training steps (0: the
    initial policy), per-prompt mean ``gold`` and ``kl`` to the initial policy, both (S, P)."""

    label: str
    fraction: float
    gold: np.ndarray
    kl: np.ndarray

    def __post_init__(self):
        g = np.atleast_2d(np.asarray(self.gold, np.float64))
        k = np.atleast_2d(np.asarray(self.kl, np.float64))
        if g.ndim != 2 or g.shape != k.shape or g.shape[1] < 2:
            raise ValueError(f"point {self.label!r}: gold {g.shape} and kl {k.shape} must be the same "
                             "(replicates, prompts) shape with at least 2 prompts")
        object.__setattr__(self, "gold", g)
        object.__setattr__(self, "kl", k)

    @property
    def initial(self) -> bool:
        return self.fraction == 0

    @property
    def mean_gold(self) -> float:
        return float(self.gold.mean())

    @property
    def mean_kl(self) -> float:
        return float(self.kl.mean())


@dataclass(frozen=True)
class Curve:
    """An arm's points sorted by mean KL (the initial policy's point first, for a trained arm); ``untrained``
    for the initial policy itself (no training seed)."""

    arm: str
    points: tuple[Point, ...]
    untrained: bool = False

    def __post_init__(self):
        if not self.points:
            raise ValueError(f"curve {self.arm!r} has no points")
        pts = tuple(sorted(self.points, key=lambda p: p.mean_kl))
        widths = {p.gold.shape[1] for p in pts}
        seeds = {len(p.gold) for p in pts if not p.initial}
        if len(widths) > 1 or len(seeds) > 1:
            raise ValueError(f"curve {self.arm!r}: points differ in prompts {sorted(widths)} or replicates "
                             f"{sorted(seeds)}")
        object.__setattr__(self, "points", pts)

    @property
    def replicates(self) -> int:
        """S_k: the trained points' replicates (0 for an untrained curve)."""
        return 0 if self.untrained else max((len(p.gold) for p in self.points if not p.initial), default=0)

    @property
    def final(self) -> Point:
        """The last point of training (largest fraction)."""
        return max(self.points, key=lambda p: p.fraction)

    @property
    def reach(self) -> float:
        """K_c: the largest mean KL of its points."""
        return self.points[-1].mean_kl


class Envelope(NamedTuple):
    """E(k) of eq. 1 at each asked KL (NaN where no curve reaches it) and the arm that attains it ("a + b" for a
    mixture of two curves' points; None where it is not defined)."""

    gold: np.ndarray
    arm: list[str | None]


class MatchedKL(NamedTuple):
    """The method against the baseline envelope at one KL (eq. 2) with its percentile interval."""

    asked: str | float   # "own" or the KL level asked for
    kl: float            # the KL compared at (point estimate)
    method_gold: float   # f_m(kl): its final point's gold at "own", else its curve interpolated
    baseline_gold: float  # E(kl)
    diff: float
    lo: float
    hi: float
    baseline_arm: str    # the baseline curve that attains the envelope at kl ("a + b": a mixture of two curves)
    attained_share: float  # share of draws in which the same curve (or pair) attains it
    capped: bool         # compared at the largest common KL instead of the one asked
    note: str            # why, in words ("" when not capped)
    method: str          # what the interval resamples

    @property
    def over_seeds(self) -> bool:
        return self.method.startswith(PROMPTS_AND_SEEDS)


def envelope(curves: Sequence[Curve], at_kl) -> Envelope:
    """The upper envelope (eq. 1) of ``curves`` at the KLs ``at_kl``, from their points' means."""
    q = np.atleast_1d(np.asarray(at_kl, np.float64))
    x, y = _stack(curves, None, None)
    g, i = _envelope(x, y, q[None, :])
    return Envelope(g[0], [_attaining(curves, j) for j in i[0]])


def envelope_line(curves: Sequence[Curve], n: int = 200) -> list[tuple[float, float]]:
    """Eq. 1 on ``n`` evenly spaced KLs from 0 to the largest a baseline point reaches, as (KL, gold) pairs to
    draw; empty without curves."""
    if not curves:
        return []
    q = np.linspace(0.0, max(c.reach for c in curves), n)
    return [(float(k), float(g)) for k, g in zip(q, envelope(curves, q).gold) if np.isfinite(g)]


def default_levels(method_curve: Curve, fractions: Sequence[float] = (0.25, 0.5)) -> list[str | float]:
    """The usual comparison levels: ``fractions`` of the method's own final mean KL, then its own ("own")."""
    k = method_curve.final.mean_kl
    return [f * k for f in sorted(fractions)] + [OWN]


def seed_variance(curves: Sequence[Curve]) -> SeedVariance:
    """Eq. 2 of statistics.py on the final points of the trained curves (one entry per curve)."""
    arms = {f"{i}:{c.arm}": c.final.gold for i, c in enumerate(curves) if not c.untrained}
    return pooled_seed_variance(arms)


def matched_kl(method_curve: Curve, baseline_curves: Sequence[Curve], at: str | float | Sequence = OWN,
               seed_var: SeedVariance | float | None = None, n: int = 2000, seed: int = 0,
               level: float = 0.95) -> list[MatchedKL]:
    """The method against the envelope of ``baseline_curves`` at each level of ``at`` ("own" or KLs, eq. 2),
    each with a ``level`` percentile interval over ``n`` draws of prompts and seeds (module docstring).
    ``seed_var``: default the pooled seed variance of the final points of the trained curves given; a
    float is a known variance."""
    if not baseline_curves:
        raise ValueError("matched KL: no baseline curve")
    asked = [at] if isinstance(at, (str, int, float)) else list(at)
    for a in asked:
        if isinstance(a, str) and a != OWN:
            raise ValueError(f"matched KL: a level is {OWN!r} or a KL in nats, got {a!r}")
    curves = [method_curve, *baseline_curves]
    P = method_curve.points[0].gold.shape[1]
    if any(p.gold.shape[1] != P for c in curves for p in c.points):
        raise ValueError("matched KL: the curves are evaluated on different numbers of prompts")
    sv = seed_var if seed_var is not None else seed_variance(curves)
    rng = np.random.default_rng(seed)

    # row 0 is the point estimate (every prompt once, no seed deviation); rows 1..n the draws
    idx = rng.integers(0, P, (n, P))
    counts = np.bincount((idx + P * np.arange(n)[:, None]).ravel(), minlength=n * P).reshape(n, P)
    w = np.vstack([np.ones((1, P)), counts]) / P
    shift = np.vstack([np.zeros((1, len(curves))), _seed_draws(sv, curves, n, rng)])
    xm, ym = _stack([method_curve], w, shift[:, :1])
    xb, yb = _stack(baseline_curves, w, shift[:, 1:])
    fin = method_curve.points.index(method_curve.final)
    own_k, own_g = xm[0][:, fin], ym[0][:, fin]
    reach_m = xm[0].max(1)
    reach_b = np.max([x.max(1) for x in xb], axis=0)

    out = []
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    for a in asked:
        want = own_k if a == OWN else np.full(n + 1, float(a))
        k = np.minimum(want, np.minimum(reach_m, reach_b))
        gm = _interp(xm[0], ym[0], k[:, None])[:, 0]
        if a == OWN:
            gm = np.where(k >= own_k, own_g, gm)
        gb, arm = _envelope(xb, yb, k[:, None])
        d = gm - gb[:, 0]
        lo, hi = np.quantile(d[1:], [lo_q, hi_q])
        j = int(arm[0, 0])
        capped = bool(k[0] < want[0])
        out.append(MatchedKL(a, float(k[0]), float(gm[0]), float(gb[0, 0]), float(d[0]), float(lo), float(hi),
                             _attaining(baseline_curves, j), float(np.mean(arm[1:, 0] == j)), capped,
                             _note(a, float(want[0]), float(k[0]), float(reach_b[0]), capped), _method(sv)))
    return out


def _note(asked, want: float, k: float, reach_b: float, capped: bool) -> str:
    if not capped:
        return ""
    who = "the baseline" if k == reach_b else "the method"
    what = "the method's own final KL" if asked == OWN else "the KL asked for"
    return f"compared at {k:.3g} nats, the largest KL {who} reaches ({what} is {want:.3g})"


def _method(sv) -> str:
    if isinstance(sv, SeedVariance) and sv.value is None:
        return f"{PROMPTS_ONLY} (no trained curve has two replicates); prompts resampled, paired"
    if isinstance(sv, SeedVariance):
        return (f"{PROMPTS_AND_SEEDS} (prompts resampled, paired; seed deviations per curve with the seed "
                f"variance pooled over {len(sv.arms)} curves, df {sv.df})")
    return f"{PROMPTS_AND_SEEDS} (prompts resampled, paired; seed deviations per curve, known seed variance)"


def _seed_draws(sv, curves: Sequence[Curve], n: int, rng) -> np.ndarray:
    """(n, C) gold deviations of each curve's trained points: N(0, sigma2* / S_k), sigma2* per draw."""
    if isinstance(sv, SeedVariance):
        s2 = seed_variance_draws(sv, n, rng)
    else:
        s2 = np.full(n, float(sv))
    per = np.array([0.0 if c.untrained or not c.replicates else 1.0 / c.replicates for c in curves])
    return rng.standard_normal((n, len(curves))) * np.sqrt(s2[:, None] * per[None, :])


def _stack(curves: Sequence[Curve], w: np.ndarray | None, shift: np.ndarray | None):
    """Per curve, (R, J) mean KLs and golds of its points, sorted by KL within each row: the means under the
    prompt weights ``w`` (R, P) (None: the plain means, R = 1), gold plus the row's seed ``shift`` (R, C) on
    the trained points."""
    xs, ys = [], []
    for c, curve in enumerate(curves):
        if w is None:
            x = np.array([[p.mean_kl for p in curve.points]])
            y = np.array([[p.mean_gold for p in curve.points]])
        else:
            x = w @ np.stack([p.kl.mean(0) for p in curve.points], 1)
            y = w @ np.stack([p.gold.mean(0) for p in curve.points], 1)
            trained = np.array([not p.initial for p in curve.points])
            y = y + shift[:, c:c + 1] * trained[None, :]
        order = np.argsort(x, 1, kind="stable")
        xs.append(np.take_along_axis(x, order, 1))
        ys.append(np.take_along_axis(y, order, 1))
    return xs, ys


def _interp(x: np.ndarray, y: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise piecewise-linear interpolation: x, y (R, J) with x ascending per row, q (R, Q); NaN outside
    [x_0, x_J-1] (no extrapolation)."""
    J = x.shape[1]
    i = (x[:, None, :] <= q[:, :, None]).sum(-1) - 1  # (R, Q): the last point at or left of q
    inside = (i >= 0) & (q <= x[:, -1:])
    i0 = np.clip(i, 0, J - 1)
    i1 = np.clip(i + 1, 0, J - 1)
    x0, x1 = np.take_along_axis(x, i0, 1), np.take_along_axis(x, i1, 1)
    y0, y1 = np.take_along_axis(y, i0, 1), np.take_along_axis(y, i1, 1)
    dx = x1 - x0
    t = np.where(dx > 0, (q - x0) / np.where(dx > 0, dx, 1.0), 0.0)
    return np.where(inside, y0 + t * (y1 - y0), np.nan)


def _envelope(xs: list[np.ndarray], ys: list[np.ndarray], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 1 row-wise: (R, Q) envelope gold (NaN beyond every point's KL) and the attaining pair's code
    (:func:`_attaining`; -1 there). Every pair (i, j) of points with k_i <= q contributes its mixture at KL
    min(q, k_j) when k_i < k_j, and point i alone contributes g_i."""
    x, y = np.concatenate(xs, 1), np.concatenate(ys, 1)  # (R, J): every curve's points side by side
    curve = np.concatenate([np.full(a.shape[1], c) for c, a in enumerate(xs)])
    C = len(xs)
    xi, xj = x[:, None, :, None], x[:, None, None, :]  # (R, 1, J, 1), (R, 1, 1, J)
    yi, yj = y[:, None, :, None], y[:, None, None, :]
    qq = q[:, :, None, None]  # (R, Q, 1, 1)
    ahead = xj > xi
    t = np.clip(np.where(ahead, (np.minimum(qq, xj) - xi) / np.where(ahead, xj - xi, 1.0), 0.0), 0.0, 1.0)
    value = np.where(qq >= xi, yi + t * (yj - yi), -math.inf)  # (R, Q, J, J); t = 0 unless j is ahead of i
    J = x.shape[1]
    flat = value.reshape(*value.shape[:2], J * J)
    best = flat.argmax(-1)  # (R, Q)
    i, j = np.divmod(best, J)
    g = np.take_along_axis(flat, best[..., None], -1)[..., 0]
    tb = np.take_along_axis(t.reshape(flat.shape), best[..., None], -1)[..., 0]
    ci, cj = curve[i], curve[j]
    alone = np.where(tb >= 1.0, cj, ci)  # the mixture's weight sits on one point
    mixed = (tb > 0.0) & (tb < 1.0) & (ci != cj)
    code = np.where(mixed, np.minimum(ci, cj) * C + np.maximum(ci, cj) + C, alone)
    none = (q > x.max(1, keepdims=True)) | ~np.isfinite(g)
    return np.where(none, np.nan, g), np.where(none, -1, code)


def _attaining(curves: Sequence[Curve], code: int) -> str | None:
    """The arm (or the two arms, "a + b") that an envelope code of :func:`_envelope` names; None for -1."""
    C = len(curves)
    if code < 0:
        return None
    if code < C:
        return curves[code].arm
    a, b = divmod(code - C, C)
    return f"{curves[a].arm} + {curves[b].arm}"
