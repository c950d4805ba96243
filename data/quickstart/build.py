"""Build the quick start's small preference set (committed beside this script).

Chosen responses are short, polite and on topic; rejected ones are curt or dismissive. The rows
are composed deterministically from the lists below, so running this script again gives the same
files:  python data/quickstart/build.py
"""

import json
import random
from pathlib import Path

TOPICS = ["water plants", "learn to juggle", "save money on groceries", "sleep better", "start running",
          "make tea", "write a thank-you note", "clean a laptop keyboard", "remember names", "fold a shirt",
          "bake bread", "plan a picnic", "study for an exam", "fix a squeaky door", "choose a book",
          "cook rice", "keep a journal", "stretch after sitting", "pack for a trip", "care for a cat",
          "learn a new word each day", "organise a desk", "make a budget", "grow basil", "brew coffee",
          "practise the guitar", "walk more each day", "prepare for an interview", "write a short poem",
          "sort recycling", "paint a wall", "make friends in a new city"]
CHOSEN = ["Happy to help! To {t}, start small: pick one simple step today and repeat it. Keep it friendly and steady.",
          "Great question. A good way to {t} is to set a clear goal, try it for a week, and adjust what does not work.",
          "Sure! To {t}, gather what you need first, follow one step at a time, and be patient with yourself."]
REJECTED = ["Figure it out yourself.", "Why would you even want to {t}? That is a waste of time.",
            "No. Ask someone else.", "{t}? Boring. Not answering."]


def main() -> None:
    rng = random.Random(0)
    rows = []
    for i, t in enumerate(TOPICS):
        rows.append({"id": f"qs-{i:03d}", "prompt": f"How can I {t}?", "chosen": rng.choice(CHOSEN).format(t=t),
                     "rejected": rng.choice(REJECTED).format(t=t)})
    here = Path(__file__).parent
    for name, part in [("train.jsonl", rows[:24]), ("eval.jsonl", rows[24:])]:
        (here / name).write_text("".join(json.dumps(r) + "\n" for r in part))


if __name__ == "__main__":
    main()
