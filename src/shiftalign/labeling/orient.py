"""Labels only: pairs selected and weighted by the reward model, oriented by another source.

An oracle or a control should differ from its method in the labels only (CONTRIBUTING.md, rule 14).
With ``reward_model.orient`` the reward-model labeller builds its pairs as always — best-vs-worst,
random or all pairs by the reward model's (ensemble mean) scores, the margin and ensemble filters — and
each kept pair keeps the reward model's margin m = |r(a) − r(b)|, hence its confidence weight
2σ(m / T) − 1 = tanh(m / 2T) (``recipes.iterate.confidence_weight``); only which response of the pair
is chosen comes from a registered scorer (``rl.scorers``):

- the gold reward of a controlled experiment: the *labels-only oracle*, which measures what gold labels
  buy with the method's own pairs and weights (the gap-recovery ratio's denominator);
- ``random`` (a uniform number per (prompt, response, seed)): the *labels-only control*. With one pair
  per prompt (``best_vs_worst``, ``random``) each pair's orientation is a fair coin, independent of the
  reward model and of the other pairs, reproducible from the seed; with ``all`` it is a random ranking of
  the prompt's samples (each pair a fair coin, a prompt's pairs consistent with one another).

A pair the orienting scorer ties is dropped and recorded as unlabelled (reason ``orient tie``): a tie
never becomes a label. Each pair's provenance keeps the reward model's scores (as chosen, rejected),
margin, spread and confidence, and adds ``orient``: the scorer, its two scores and whether it reversed
the reward model's order (``flipped``).

    shiftalign label configs/label_rm.yaml reward_model.orient='{name: vader}'
"""

from __future__ import annotations

from ..data.text import text_of
from ..log import log

TIE = "orient tie"


def orient_pairs(pairs: list[dict], scorer: dict) -> tuple[list[dict], list[dict], dict]:
    """(pairs oriented by ``scorer``, records of the pairs it ties, stats): ``pairs`` are rows of
    ``pairs.pairs_from_scores``; margin, spread and confidence are left as the reward model gave them."""
    from ..rl.scorers import make_scorer

    fn = make_scorer(dict(scorer))
    prompts = [text_of(p["prompt"]) for p in pairs]
    scores = fn(prompts + prompts, [text_of(p["chosen"]) for p in pairs] + [text_of(p["rejected"]) for p in pairs])
    oriented, ties = [], []
    for p, a, b in zip(pairs, scores[:len(pairs)], scores[len(pairs):]):
        prov = p["provenance"]
        if a == b:
            ties.append({"prompt": p["prompt"], "a_id": p["chosen_id"], "b_id": p["rejected_id"], "reason": TIE,
                         "scores": prov["scores"], "orient_scores": [a, b]})
            continue
        flipped = b > a
        if not flipped:
            oriented.append({**p, "provenance": {**prov, "orient": {"scorer": scorer, "scores": [a, b], "flipped": False}}})
            continue
        oriented.append({"id": f"{p['rejected_id']}>{p['chosen_id']}", "prompt": p["prompt"], "chosen": p["rejected"],
                         "rejected": p["chosen"], "chosen_id": p["rejected_id"], "rejected_id": p["chosen_id"],
                         "provenance": {**prov, "scores": prov["scores"][::-1],
                                        **({"model_scores": prov["model_scores"][::-1]} if "model_scores" in prov else {}),
                                        "orient": {"scorer": scorer, "scores": [b, a], "flipped": True}}})
    flips = sum(p["provenance"]["orient"]["flipped"] for p in oriented)
    stats = {"scorer": scorer.get("name"), "pairs": len(oriented), "ties": len(ties), "flipped": flips,
             "reward_model_agreement": 1 - flips / len(oriented) if oriented else None}
    log(f"oriented {len(oriented)} reward-model pairs with scorer {scorer.get('name')}: {flips} reversed, "
        f"{len(ties)} ties dropped")
    return oriented, ties, stats
