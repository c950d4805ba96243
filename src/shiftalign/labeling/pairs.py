"""Pair builders: from scored samples of one prompt to (chosen, rejected) pairs.

- ``best_vs_worst``: the highest- against the lowest-scored sample;
- ``random``: two distinct samples drawn with a seeded RNG, oriented by score;
- ``all``: every pair of samples.
``pairs_from_scores`` builds and orients them from one or several score lists (reward models, a scorer);
``head_agreement`` is the share of the pairs on which every model of an ensemble agrees.
Pairs whose score difference is not above ``margin`` are dropped (ties always are: a tie never
becomes a label by default ordering). With ``bound`` (``lcb`` or ``worst``, ``ops.ensemble_bound``: Coste et
al., 2024) an ensemble's pair is kept only if a lower bound of its difference over the models is above
``margin`` too, and that bound is its margin and confidence.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

from ..ops.ensemble_bound import DEFAULT_LAMBDA, bounded, check_bound, check_members

BUILDERS = ("best_vs_worst", "random", "all")


def candidate_pairs(n: int, how: str, rng: random.Random, scores=None) -> list[tuple[int, int]]:
    """Index pairs (i, j) among n samples; with scores, best_vs_worst needs them."""
    if n < 2:
        return []
    if how == "all":
        return list(itertools.combinations(range(n), 2))
    if how == "random":
        return [tuple(rng.sample(range(n), 2))]
    if how == "best_vs_worst":
        order = sorted(range(n), key=lambda i: scores[i])
        return [(order[-1], order[0])]
    raise ValueError(f"pairs must be one of {BUILDERS}, got {how!r}")


def orient(i: int, j: int, si: float, sj: float, margin: float):
    """(chosen, rejected, difference) or None for a tie / a difference not above the margin."""
    d = si - sj
    if abs(d) <= margin or d == 0:
        return None
    return (i, j, d) if d > 0 else (j, i, -d)


def pairs_from_scores(groups, per_model: list[list[float]], how: str, margin: float, max_spread: float | None,
                      seed: int, provenance: dict, min_agreement: float | None = None, bound: str = "mean",
                      lcb_lambda: float = DEFAULT_LAMBDA):
    """Pairs per prompt from K score lists over the flattened samples (K = 1: a single scorer), selected and
    oriented by the mean score. Ensemble filters: ``max_spread`` drops a pair whose score difference has a
    larger std over the models; ``min_agreement`` drops one whose mean difference is under that many stds of
    it; ``bound`` (``lcb``: mean - ``lcb_lambda`` std, ``worst``: min over the models, of the difference) drops
    one whose bounded difference is not above ``margin``, and gives a kept pair that bound as its ``margin``
    and confidence (the mean difference stays as ``mean_margin``)."""
    check_bound(bound, lcb_lambda)
    check_members(len(per_model), bound, f"{len(per_model)} score list(s)")
    rng = random.Random(seed)
    pairs, dropped, k = [], [], 0
    for g in groups:
        sc = [[per_model[m][k + i] for m in range(len(per_model))] for i in range(len(g))]
        mean = [sum(s) / len(s) for s in sc]
        k += len(g)
        for i, j in candidate_pairs(len(g), how, rng, mean):
            base = {"prompt": g[i].prompt, "a_id": g[i].id, "b_id": g[j].id}
            if _response(g[i]) == _response(g[j]):
                dropped.append({**base, "reason": "identical responses"})
                continue
            o = orient(i, j, mean[i], mean[j], margin)
            if o is None:
                dropped.append({**base, "reason": "tie" if mean[i] == mean[j] else "margin", "scores": [mean[i], mean[j]]})
                continue
            c, r, d = o
            diffs = [sc[c][m] - sc[r][m] for m in range(len(per_model))]
            spread = statistics.pstdev(diffs) if len(diffs) > 1 else 0.0
            if (max_spread is not None and spread > max_spread) or \
                    (min_agreement is not None and d < min_agreement * spread):
                dropped.append({**base, "reason": "ensemble spread", "spread": spread, "margin": d})
                continue
            extra = {}
            if bound != "mean":
                b = bounded(diffs, bound, lcb_lambda)
                if b <= margin:
                    dropped.append({**base, "reason": "ensemble bound", "bound": bound, "bounded_margin": b,
                                    "margin": d, "spread": spread})
                    continue
                extra = {"mean_margin": d, "bound": bound, **({"lcb_lambda": lcb_lambda} if bound == "lcb" else {})}
                d = b
            pairs.append({"id": f"{g[c].id}>{g[r].id}", "prompt": g[c].prompt, "chosen": _response(g[c]),
                          "rejected": _response(g[r]), "chosen_id": g[c].id, "rejected_id": g[r].id,
                          "provenance": {**provenance, "scores": [mean[c], mean[r]], "model_scores": [sc[c], sc[r]],
                                         "margin": d, "spread": spread, "confidence": 1 / (1 + math.exp(-d)),
                                         **extra}})
    return pairs, dropped


def head_agreement(pairs: list[dict]) -> float | None:
    """Share of ``pairs`` (rows of ``pairs_from_scores``) that every model of the ensemble orders as the ensemble
    mean does (``every_model_agrees``): a label-free sign of how sure the ensemble is of its labels.
    A warning, not a measurement: models fitted on the same features share many of their errors, so agreement
    that holds does not show the labels are right (BENCHMARKS.md, "the heads' agreement by round"). None unless
    the pairs were scored by two or more models."""
    votes = [v for v in map(every_model_agrees, pairs) if v is not None]
    return sum(votes) / len(votes) if votes else None


def every_model_agrees(pair: dict) -> bool | None:
    """Whether every model orders ``pair`` as the ensemble mean does (provenance ``model_scores``): for the
    reward model's own pairs, every model scores the chosen response above the rejected one; a pair
    reoriented by another source (``labeling.orient``) is read in the reward model's order, so the
    agreement describes the ensemble, not the orientation. None unless two or more models scored it."""
    scores = (pair.get("provenance") or {}).get("model_scores")
    if not scores or len(scores[0]) < 2:
        return None
    sign = 1 if sum(scores[0]) >= sum(scores[1]) else -1
    return all(sign * (c - r) > 0 for c, r in zip(*scores))


def _response(ex):
    return ex.completions[0]
