"""Build the bundled source-domain data of the controlled domain-shift setting (small output committed).

The shift, by construction:
- prompts: two topic pools (home and hobbies; work, study and people), phrased by the same
  templates; the source prompts are 75 % home / 25 % work, the target prompts 25 % home / 75 % work,
  so the two domains differ in mix but overlap in support;
- responses: the source responses are written by a behaviour policy that differs from the target
  policy: the same packaged SmolLM2-135M-Instruct under a system prompt asking for brief answers,
  at temperature 1.0 (the target policy is the model with its own default system prompt);
- labels: a gold reward, the VADER compound sentiment of the response (registered scorer
  ``vader``), turned into preferences with Bradley-Terry noise: P(a preferred to b) =
  sigmoid((gold(a) - gold(b)) / TAU).

Outputs (beside this script): ``source_pairs.jsonl`` (prompt, chosen, rejected, with the gold scores
and the label-noise draw recorded for analysis; built by ``shiftalign.rollout.behaviour``),
``source_prompts.jsonl`` (the prompts of those pairs, for ``bench/shift`` to rebuild them under other
behaviour settings), ``target_prompts.jsonl`` (prompts to sample the
policy on), ``target_eval_prompts.jsonl`` (held-out target prompts), ``build_info.json``.

    python data/shift/build.py            # ~3 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SOURCE_TOPICS = ["water my plants", "fix a dripping tap", "bake a loaf of bread", "organise my garage",
                 "start knitting", "plan a picnic", "clean my windows", "care for a goldfish", "grow tomatoes",
                 "pick a board game", "paint a fence", "store winter clothes", "make pancakes",
                 "choose a bicycle", "repot a cactus", "sort my recycling", "hang a picture", "brew iced tea",
                 "train my dog to sit", "build a birdhouse"]
TARGET_TOPICS = ["prepare for a job interview", "ask my manager for feedback", "study for a maths exam",
                 "write a cover letter", "give a short presentation", "make friends at a new school",
                 "apologise to a colleague", "plan my study week", "run a team meeting", "learn to code",
                 "negotiate a salary", "deal with a difficult classmate", "write a thank-you email",
                 "meet new neighbours", "ask for help in class", "welcome a new teammate",
                 "prepare a group project", "stay focused while studying", "congratulate a friend",
                 "mentor a junior colleague"]
TEMPLATES = ["How can I {t}?", "What is a good way to {t}?", "Any tips to {t}?", "I want to {t}. Where do I start?",
             "Can you help me {t}?", "What should I know before I {t}?"]
BEHAVIOUR_SYSTEM = "You are a busy assistant. Answer briefly, in one or two sentences."
BEHAVIOUR_TEMPERATURE = 1.0
TAU = 0.1  # Bradley-Terry temperature on the gold-score difference
MAX_NEW_TOKENS = 48
SEED = 0


def pool(topics: list[str], rng: random.Random) -> list[str]:
    out = [tpl.format(t=t) for t in topics for tpl in TEMPLATES]
    rng.shuffle(out)
    return out


def mix(home: list[str], work: list[str], n_home: int, n_work: int, rng: random.Random) -> list[str]:
    """Take (and remove) n_home + n_work prompts from the pools, shuffled together."""
    out = [home.pop() for _ in range(n_home)] + [work.pop() for _ in range(n_work)]
    rng.shuffle(out)
    return out


def main() -> None:
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy
    from shiftalign.rl.scorers import make_scorer
    from shiftalign.rollout.behaviour import BehaviourConfig, gold_labelled_pairs, label_agreement

    here = Path(__file__).parent
    rng = random.Random(SEED)
    home, work = pool(SOURCE_TOPICS, rng), pool(TARGET_TOPICS, rng)
    source_prompts = mix(home, work, 72, 24, rng)
    target_train = mix(home, work, 16, 48, rng)
    target_eval = mix(home, work, 8, 24, rng)

    model, tok = load_policy(ModelConfig(path="default"))
    model.eval()
    gold = make_scorer({"name": "vader"})
    behaviour = BehaviourConfig(system=BEHAVIOUR_SYSTEM, temperature=BEHAVIOUR_TEMPERATURE,
                                max_new_tokens=MAX_NEW_TOKENS, tau=TAU, seed=SEED)
    rows = gold_labelled_pairs(model, tok, source_prompts, behaviour, gold, rng, log=print)
    (here / "source_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, ps in [("source_prompts.jsonl", source_prompts), ("target_prompts.jsonl", target_train),
                     ("target_eval_prompts.jsonl", target_eval)]:
        (here / name).write_text("".join(json.dumps({"id": f"{name[:-6]}-{i:03d}", "prompt": p}) + "\n"
                                         for i, p in enumerate(ps)))
    agree = label_agreement(rows)
    info = {"source_pairs": len(rows), "target_prompts": len(target_train), "target_eval_prompts": len(target_eval),
            "behaviour_system_prompt": BEHAVIOUR_SYSTEM, "behaviour_temperature": BEHAVIOUR_TEMPERATURE,
            "tau": TAU, "max_new_tokens": MAX_NEW_TOKENS, "seed": SEED,
            "source_mix": "72 home + 24 work prompts", "target_mix": "16 home + 48 work (eval: 8 + 24)",
            "label_agreement_with_gold": agree, "gold": "vader compound sentiment of the response"}
    (here / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
