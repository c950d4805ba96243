"""Source-domain preference pairs of a controlled shift: a behaviour policy writes two responses per
prompt, a gold scorer labels them with Bradley-Terry noise.

The behaviour policy is a causal LM under its own system prompt and temperature (so style and
length differ from the target policy's). For responses a and b with gold scores g(a), g(b), a is
chosen with probability sigmoid((g(a) - g(b)) / tau) (Bradley & Terry, 1952): tau -> 0 gives gold
labels, larger tau more label noise. Every row records both gold scores and the label's probability,
so label accuracy can be analysed afterwards.

A rater may also be biased: ``rating_bias(response)`` is added to the gold score in the rating, as a
rater who favours a feature the gold does not reward (raters and reward models favour longer and
list-formatted answers: Singhal et al., 2023; Zhang et al., 2024, "From Lists to Emojis"). The recorded
``p_label`` stays the gold's Bradley-Terry probability, so the bias shows as lower agreement with gold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..log import log
from .generate import generate_hf
from .params import SamplingParams


@dataclass
class BehaviourConfig:
    system: str = "You are a busy assistant. Answer briefly, in one or two sentences."
    temperature: float = 1.0
    max_new_tokens: int = 48
    tau: float = 0.1  # Bradley-Terry temperature on the gold-score difference
    seed: int = 0


def behaviour_samples(model, tok, prompts: list[str], cfg: BehaviourConfig, n: int = 2,
                      batch: int = 16) -> list[list[str]]:
    """``n`` responses of the behaviour policy to each prompt (seeded by ``cfg.seed`` and the batch)."""
    from ..data.text import encode, render_prompt

    params = SamplingParams(n=n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=1.0,
                            seed=cfg.seed)
    out: list[list[str]] = []
    for s in range(0, len(prompts), batch):
        chunk = prompts[s:s + batch]
        ids = [encode(tok, render_prompt(tok, [{"role": "system", "content": cfg.system},
                                                 {"role": "user", "content": p}], False)) for p in chunk]
        for samples in generate_hf(model, tok, ids, params, seed=cfg.seed + s):
            out.append([tok.decode(x["completion_ids"], skip_special_tokens=True).strip() for x in samples])
        log(f"behaviour samples: {min(s + batch, len(prompts))}/{len(prompts)} prompts")
    return out


PAIRINGS = ("disjoint", "best_vs_worst")


def label_pairs(prompts: list[str], responses: list[list[str]], gold, tau: float, rng: random.Random,
                id_prefix: str = "src", pairing: str = "disjoint",
                rating_bias: Callable[[str], float] | None = None) -> list[dict]:
    """Preference rows from each prompt's responses, labelled by ``gold`` with noise of temperature ``tau``.

    - ``disjoint``: pairs 1-2, 3-4, ...; a is chosen with probability sigmoid((g(a) - g(b)) / tau);
    - ``best_vs_worst``: one pair per prompt, as a rater who scores all responses and keeps the top and
      the bottom one (binarised ratings, as in UltraFeedback): each response gets the rating
      g + tau * Gumbel noise, the highest rating is chosen and the lowest rejected. The ratings follow a
      Plackett-Luce model, whose pairwise marginals are the Bradley-Terry probabilities above.
    Responses that are empty or repeated within a pair are left out. ``p_label`` is the Bradley-Terry
    probability of the recorded order under the gold. ``rating_bias`` (default none) adds its value for
    each response to the gold score the rater sees; the noise draws are the same with and without it."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing: expected one of {', '.join(PAIRINGS)}, got {pairing!r}")
    rows: list[dict] = []
    bias = rating_bias or (lambda response: 0.0)

    def add(p: str, a: str, b: str, ga: float, gb: float) -> None:  # a is chosen
        rows.append({"id": f"{id_prefix}-{len(rows):04d}", "prompt": p, "chosen": a, "rejected": b,
                     "gold_chosen": ga, "gold_rejected": gb, "p_label": 1 / (1 + math.exp(-(ga - gb) / tau))})

    for p, rs in zip(prompts, responses):
        if pairing == "disjoint":
            for a, b in zip(rs[0::2], rs[1::2]):
                if not a or not b or a == b:
                    continue
                ga, gb = gold([p, p], [a, b])
                if rng.random() < 1 / (1 + math.exp(-(ga + bias(a) - gb - bias(b)) / tau)):
                    add(p, a, b, ga, gb)
                else:
                    add(p, b, a, gb, ga)
            continue
        kept = list(dict.fromkeys(r for r in rs if r))  # distinct, non-empty, in order
        if len(kept) < 2:
            continue
        scores = gold([p] * len(kept), kept)
        ratings = [g + bias(r) - tau * math.log(-math.log(rng.random() or 1e-300))  # + tau * Gumbel(0, 1)
                   for g, r in zip(scores, kept)]
        hi, lo = max(range(len(kept)), key=ratings.__getitem__), min(range(len(kept)), key=ratings.__getitem__)
        add(p, kept[hi], kept[lo], scores[hi], scores[lo])
    return rows


def gold_labelled_pairs(model, tok, prompts: list[str], cfg: BehaviourConfig, gold, rng: random.Random,
                        batch: int = 16, id_prefix: str = "src") -> list[dict]:
    """One (chosen, rejected) row per prompt whose two samples are non-empty and distinct."""
    responses = behaviour_samples(model, tok, prompts, cfg, 2, batch)
    return label_pairs(prompts, responses, gold, cfg.tau, rng, id_prefix)


def label_agreement(rows: list[dict]) -> float:
    """Fraction of rows whose chosen response has the higher (or equal) gold score."""
    return sum(r["gold_chosen"] >= r["gold_rejected"] for r in rows) / max(len(rows), 1)
