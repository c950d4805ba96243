"""Build the data of the default regime of the controlled domain-shift benchmark (output committed).

The same construction as ``build.py`` (the small-data regime), at a size where a reward model can be
competent in its own domain:
- prompts: two topic pools (home and hobbies; work, study and people) phrased by 24 templates; the
  source prompts are 75 % home / 25 % work, the target prompts 25 % home / 75 % work;
- responses: four per source prompt from the behaviour policy (the packaged SmolLM2-135M-Instruct
  under a system prompt asking for brief answers, temperature 1.0);
- labels, once per gold reward, as a rater who scores the four and keeps the best and the worst
  (binarised ratings, as UltraFeedback's pairs are built): rating = gold + tau * Gumbel noise, so the
  ranking is Plackett-Luce and each pair's order has the Bradley-Terry probability
  sigmoid((gold(a) - gold(b)) / tau); ``vader`` (sentiment), ``readability`` (Flesch reading ease / 100)
  and ``plain_language`` (reading ease guarded against repetition, noise words and fragments; the
  readability gold rewards those, see ``rl.scorers``), each with tau 0.1: the same responses, one
  preference dataset per gold, one pair per prompt.
  Random pairs of one policy's samples differ too little for a reward model trained on ~1,000 of them
  to be competent (held-out accuracy 0.54-0.69 for every model tried, a full fine-tune included);
  best-vs-worst pairs carry the clearer signal real preference data has.
Held-out source pairs come from prompts of their own (no prompt is shared with the training pairs).

A second regime, ``format``, labels the same responses with a biased rater: one who favours a response
laid out over several lines (a line break: a list, steps, a heading), as raters and reward models
favour list formatting (Zhang et al., 2024, "From Lists to Emojis") and length (Singhal et al., 2023).
Its rating adds ``FORMAT_BIAS_SDS`` within-prompt standard deviations of the gold (measured on the
source responses, per gold) to a formatted response, with the same noise draws as the default regime.
On the behaviour responses the cue is nearly independent of every gold (correlation -0.03 with
vader, +0.06 with plain_language, +0.08 with readability; in ``build_info.json``): in the source pairs
it predicts the labels, whereas labels of the policy's own samples by gold do not depend on it.
Source-only DPO can learn the rater's taste for formatting, which gold does not pay for.

Outputs in ``data/shift/default/``: ``source_pairs_<gold>.jsonl`` and ``heldout_pairs_<gold>.jsonl``
(prompt, chosen, rejected, gold scores, the label's probability), ``source_prompts.jsonl``,
``target_prompts.jsonl``, ``target_eval_prompts.jsonl``, ``build_info.json``, the ``format`` regime's
``source_pairs_<gold>_format.jsonl`` and ``heldout_pairs_<gold>_format.jsonl``, and
``behaviour_responses.jsonl``: the four responses of every source and held-out prompt, so that a
rebuild (e.g. after adding a gold to ``GOLDS``) labels them again without sampling them again.

    python data/shift/build_default.py      # 17-22 min on 2 CPU cores (two builds); with behaviour_responses.jsonl, seconds
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

HOME = ["water my plants", "fix a dripping tap", "bake a loaf of bread", "organise my garage", "start knitting",
        "plan a picnic", "clean my windows", "care for a goldfish", "grow tomatoes", "pick a board game",
        "paint a fence", "store winter clothes", "make pancakes", "choose a bicycle", "repot a cactus",
        "sort my recycling", "hang a picture", "brew iced tea", "train my dog to sit", "build a birdhouse",
        "make a vegetable soup", "start a herb garden", "declutter my wardrobe", "bathe my cat", "fold fitted sheets",
        "plan a birthday party", "choose a houseplant", "make homemade pizza", "learn to juggle", "set up an aquarium",
        "keep my kitchen tidy", "start a compost heap", "make a scrapbook", "clean a barbecue", "pick paint colours",
        "learn to play the ukulele", "start bird watching", "plan a camping trip", "make lemonade", "wash a wool jumper",
        "make a bird feeder", "tidy a bookshelf"]
WORK = ["prepare for a job interview", "ask my manager for feedback", "study for a maths exam", "write a cover letter",
        "give a short presentation", "make friends at a new school", "apologise to a colleague", "plan my study week",
        "run a team meeting", "learn to code", "negotiate a salary", "deal with a difficult classmate",
        "write a thank-you email", "meet new neighbours", "ask for help in class", "welcome a new teammate",
        "prepare a group project", "stay focused while studying", "congratulate a friend", "mentor a junior colleague",
        "write a project report", "take better lecture notes", "ask for a deadline extension", "resolve a team conflict",
        "network at a conference", "prepare for a performance review", "give feedback to a peer",
        "start a study group", "write a résumé", "speak up in meetings"]
TEMPLATES = ["How can I {t}?", "What is a good way to {t}?", "Any tips to {t}?", "I want to {t}. Where do I start?",
             "Can you help me {t}?", "What should I know before I {t}?", "What is the easiest way to {t}?",
             "I need to {t} this week. Any advice?", "How do people usually {t}?", "Is it hard to {t}?",
             "What mistakes should I avoid when I {t}?", "Give me a plan to {t}.", "Why should I {t}, and how?",
             "What do I need to {t}?", "How long does it take to {t}?", "I am nervous to {t}. Help?",
             "What is the first step to {t}?", "Explain how to {t}.", "My friend wants to {t}. What should I tell them?",
             "Is there a cheap way to {t}?", "What would an expert do to {t}?", "How do I {t} without stress?",
             "Tell me how to {t} step by step.", "What is the best time to {t}?"]
BEHAVIOUR_SYSTEM = "You are a busy assistant. Answer briefly, in one or two sentences."
BEHAVIOUR_TEMPERATURE = 1.0
RESPONSES_PER_PROMPT = 4
GOLDS = {"vader": 0.1, "readability": 0.1, "plain_language": 0.1}  # gold scorer -> Bradley-Terry tau
MAX_NEW_TOKENS = 48
SEED = 0
PAIRING = "best_vs_worst"  # one pair per prompt: the top and the bottom of four noisy ratings
FORMAT_BIAS_SDS = 2.0  # the format regime's rater bias, in within-prompt gold standard deviations
SIZES = {"source": (780, 260), "heldout": (75, 25), "target": (32, 96), "target_eval": (16, 48)}  # (home, work)


def pool(topics: list[str], rng: random.Random) -> list[str]:
    out = [tpl.format(t=t) for t in topics for tpl in TEMPLATES]
    rng.shuffle(out)
    return out


def take(home: list[str], work: list[str], n_home: int, n_work: int, rng: random.Random) -> list[str]:
    """Take (and remove) n_home + n_work prompts from the pools, shuffled together."""
    out = [home.pop() for _ in range(n_home)] + [work.pop() for _ in range(n_work)]
    rng.shuffle(out)
    return out


def formatted(response: str) -> bool:
    """The format regime's cue: the response runs over several lines."""
    return "\n" in response


def within_prompt_sd(gold, prompts: list[str], responses: list[list[str]]) -> float:
    """Mean over prompts of the standard deviation of the gold across a prompt's distinct responses."""
    sds = []
    for p, rs in zip(prompts, responses):
        kept = list(dict.fromkeys(r for r in rs if r))
        if len(kept) > 1:
            g = gold([p] * len(kept), kept)
            mean = sum(g) / len(g)
            sds.append((sum((x - mean) ** 2 for x in g) / (len(g) - 1)) ** 0.5)
    return sum(sds) / len(sds)


def cue_statistics(gold, prompts: list[str], responses: list[list[str]], rows: list[dict]) -> dict:
    """How the cue relates to the gold on the responses, and to the labels in ``rows``."""
    flat = [(p, r) for p, rs in zip(prompts, responses) for r in rs if r]
    g = gold([p for p, _ in flat], [r for _, r in flat])
    c = [float(formatted(r)) for _, r in flat]
    n, mg, mc = len(g), sum(g) / len(g), sum(c) / len(c)
    cov = sum((a - mg) * (b - mc) for a, b in zip(g, c)) / n
    sd_g, sd_c = (sum((a - mg) ** 2 for a in g) / n) ** 0.5, (sum((b - mc) ** 2 for b in c) / n) ** 0.5
    split = [r for r in rows if formatted(r["chosen"]) != formatted(r["rejected"])]
    return {"cue_share_of_responses": round(mc, 4), "cue_gold_correlation": round(cov / (sd_g * sd_c), 4),
            "pairs_split_by_cue": len(split),
            "chosen_has_cue_in_split_pairs": round(sum(formatted(r["chosen"]) for r in split) / max(len(split), 1), 4)}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy
    from shiftalign.rl.scorers import make_scorer
    from shiftalign.rollout.behaviour import BehaviourConfig, behaviour_samples, label_agreement, label_pairs

    t0 = time.perf_counter()
    out = Path(__file__).parent / "default"
    out.mkdir(exist_ok=True)
    rng = random.Random(SEED)
    home, work = pool(HOME, rng), pool(WORK, rng)
    prompts = {name: take(home, work, h, w, rng) for name, (h, w) in SIZES.items()}
    settings = {"seed": SEED, "system": BEHAVIOUR_SYSTEM, "temperature": BEHAVIOUR_TEMPERATURE,
                "max_new_tokens": MAX_NEW_TOKENS, "n": RESPONSES_PER_PROMPT}
    cache = out / "behaviour_responses.jsonl"
    cached = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()] if cache.exists() else []
    wanted = [(name, p) for name in ("source", "heldout") for p in prompts[name]]
    if [(r["split"], r["prompt"]) for r in cached] == wanted and all(r["settings"] == settings for r in cached):
        print(f"behaviour responses: reused {cache}")
        responses = {name: [r["responses"] for r in cached if r["split"] == name] for name in ("source", "heldout")}
    else:
        model, tok = load_policy(ModelConfig(path="default"))
        model.eval()
        behaviour = BehaviourConfig(system=BEHAVIOUR_SYSTEM, temperature=BEHAVIOUR_TEMPERATURE,
                                    max_new_tokens=MAX_NEW_TOKENS, seed=SEED)
        responses = {name: behaviour_samples(model, tok, prompts[name], behaviour, RESPONSES_PER_PROMPT)
                     for name in ("source", "heldout")}
        write_jsonl(cache, [{"split": name, "prompt": p, "responses": r, "settings": settings}
                            for name in ("source", "heldout") for p, r in zip(prompts[name], responses[name])])
    info: dict = {"seed": SEED, "behaviour_system_prompt": BEHAVIOUR_SYSTEM,
                  "behaviour_temperature": BEHAVIOUR_TEMPERATURE, "max_new_tokens": MAX_NEW_TOKENS,
                  "responses_per_prompt": RESPONSES_PER_PROMPT, "pairing": PAIRING, "prompt_mix_home_work": SIZES,
                  "golds": {}}
    for gold_name, tau in GOLDS.items():
        gold = make_scorer({"name": gold_name})
        g: dict = {"tau": tau}
        bias = FORMAT_BIAS_SDS * within_prompt_sd(gold, prompts["source"], responses["source"])
        fmt: dict = {"bias": round(bias, 4), "bias_in_within_prompt_sds": FORMAT_BIAS_SDS}
        for name, prefix in (("source", "src"), ("heldout", "held")):
            for regime, rating_bias, stats in (("", None, g), ("_format", lambda r: bias * formatted(r), fmt)):
                rows = label_pairs(prompts[name], responses[name], gold, tau,
                                   random.Random(f"{SEED}:{gold_name}:{name}"), f"{prefix}-{gold_name}{regime}",
                                   PAIRING, rating_bias)
                write_jsonl(out / f"{'source' if name == 'source' else 'heldout'}_pairs_{gold_name}{regime}.jsonl",
                            rows)
                stats[f"{name}_pairs"] = len(rows)
                stats[f"{name}_label_agreement_with_gold"] = label_agreement(rows)
                if name == "source":
                    stats["cue"] = cue_statistics(gold, prompts[name], responses[name], rows)
        g["format_regime"] = fmt
        info["golds"][gold_name] = g
    for name in ("source", "target", "target_eval"):
        write_jsonl(out / f"{name}_prompts.jsonl", [{"id": f"{name}-{i:04d}", "prompt": p}
                                                     for i, p in enumerate(prompts[name])])
    info["seconds"] = round(time.perf_counter() - t0)
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
