"""Scalar scorers that drive online RL: ``score(prompts, responses) -> list[float]``.

Registered in :data:`SCORERS`, configured as ``scorer: {name: ..., ...}``:
- ``reward_model``: a model trained by the ``reward`` recipe (``path``), batched, or a directory of
  reward heads (``shiftalign heads fit``), scored by the heads' mean, or with ``bound: lcb | worst`` by a
  lower bound over the heads per response (``ops.ensemble_bound``: Coste et al., 2024's UWO, the mean minus
  ``lcb_lambda`` standard deviations, or WCO, the smallest head's score); a single model has no ensemble to
  bound and is refused with a bound;
- ``python``: any function ``path/to/file.py:function`` (or ``package.module:function``) taking
  (prompts, responses) and returning floats — gold rewards, unit tests, heuristics;
- ``vader``: the VADER compound sentiment of the response, in [-1, 1] (Hutto & Gilbert, 2014,
  "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text"); a real,
  independent scorer with its lexicon bundled, used as the gold reward of controlled experiments;
- ``readability``: the Flesch reading ease of the response divided by 100 (Flesch, 1948, "A new
  readability yardstick": 206.835 - 1.015 words/sentence - 84.6 syllables/word; syllables counted
  from pyphen's en_US hyphenation points), a second gold reward that is not about sentiment: plain
  language, short sentences and short words score high; an empty response scores 0. It has no floor
  under nonsense: "You got it. You got it." or strings of single letters score above 1, and DPO on its
  preferences finds them (BENCHMARKS.md);
- ``plain_language``: readable *and* well-formed text, in [0, 1]: the Flesch reading ease clipped to
  [0, 100] / 100, times the share of distinct word bigrams (repetition scores low), the share of
  well-formed words (a letter run of two or more with a vowel and no letter three times in a row, or
  "a" / "I") and min(1, words per sentence / 6) (fragments are not plain sentences); the second gold
  of the default benchmark profile;
- ``random``: a uniform number in [0, 1) per (prompt, response, seed), from a hash: labels drawn by
  it are coin flips, the control that tells drift from learning in an experiment.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import torch

from ..errors import ConfigError
from ..ops.ensemble_bound import DEFAULT_LAMBDA, bounded, check_bound, check_members
from ..registry import Registry

SCORERS: Registry = Registry("scorer")
WORD = r"[A-Za-z]+(?:'[A-Za-z]+)?"  # a word of the text scorers: a letter run, with an apostrophe part


def load_function(spec: str):
    if ":" not in spec:
        raise ConfigError(f"scorer function must look like path/to/file.py:function or module:function, got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise ConfigError(f"scorer file {where} not found")
        mod_spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(where)
    if not hasattr(mod, name):
        raise ConfigError(f"{where} has no function {name}")
    return getattr(mod, name)


class ScorerError(ConfigError):
    """A user's scorer function raised, or returned something other than one finite number per response."""


def python_scorer(function: str, **kw):
    """``function`` wrapped so that a fault in it stops the run with a message naming it."""
    fn = load_function(function)

    def score(prompts, responses):
        try:
            out = fn(prompts, responses, **kw)
        except Exception as e:  # the user's code: any exception, reported with the function's name
            raise ScorerError(f"scorer {function} raised {type(e).__name__}: {e}") from e
        try:
            values = [float(x) for x in out]
        except (TypeError, ValueError):
            raise ScorerError(f"scorer {function}: expected a list of numbers, got {str(out)[:80]!r}") from None
        if len(values) != len(responses):
            raise ScorerError(f"scorer {function}: expected {len(responses)} scores (one per response), "
                              f"got {len(values)}")
        bad = next((i for i, v in enumerate(values) if v != v or v in (float("inf"), float("-inf"))), None)
        if bad is not None:
            raise ScorerError(f"scorer {function}: score {bad} is {values[bad]}, expected a finite number")
        return values

    return score


def reward_model_scorer(path: str, batch_size: int = 16, max_length: int = 1024, wrap_text_as_chat: bool = False,
                        bound: str = "mean", lcb_lambda: float = DEFAULT_LAMBDA):
    """A reward model trained by the ``reward`` recipe, or a directory of reward heads: their mean, or the
    ``bound`` of their scores per response (``ops.ensemble_bound``)."""
    from ..models.reward_heads import RewardHeads, is_heads_dir

    check_bound(bound, lcb_lambda, "scorer reward_model: ")
    if is_heads_dir(path):  # features of fresh samples are not cached: each call scores new texts
        from ..data.text import text_of

        heads = RewardHeads.load(path)
        check_members(heads.size, bound, f"scorer reward_model: {path}")
        return lambda prompts, responses: bounded(heads.score_texts(
            [(text_of(p), text_of(r)) for p, r in zip(prompts, responses)], None), bound, lcb_lambda).tolist()
    check_members(1, bound, f"scorer reward_model: {path} (a single reward model, not a directory of heads)")
    from ..config import ModelConfig
    from ..data.batching import collate
    from ..data.schema import Example
    from ..data.tokenize import tokenize_examples
    from ..models.load import load_reward_model, process_device
    from ..ops.logprobs import BranchRewards

    model, tok = load_reward_model(ModelConfig(path=path))
    model.eval()
    scorer = BranchRewards(model)
    device = process_device()
    model.to(device)

    @torch.inference_mode()
    def score(prompts, responses):
        ex = [Example(id=str(i), prompt=p, completions=[r if isinstance(p, str) else [{"role": "assistant", "content": r}]])
              for i, (p, r) in enumerate(zip(prompts, responses))]
        items, _ = tokenize_examples(ex, tok, max_length, max_length // 2, "truncate", wrap_text_as_chat)
        out = []
        for s in range(0, len(items), batch_size):
            batch = {k: v.to(device) for k, v in collate(items[s:s + batch_size], tok.pad_token_id).items()}
            out += scorer(batch)["rewards"][:, 0].tolist()
        return out

    return score


def vader_scorer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ConfigError("the vader scorer needs the package vadersentiment (installed by the Makefile)") from None
    analyzer = SentimentIntensityAnalyzer()
    return lambda prompts, responses: [analyzer.polarity_scores(r)["compound"] for r in responses]


def sentence_count(text: str) -> int:
    """Sentence ends (runs of . ! ? before a space or the end); at least 1."""
    return max(1, len(re.findall(r"[.!?]+(?:\s|$)", text.strip() + " ")))


def flesch_reading_ease(text: str, syllables) -> float | None:
    """Flesch (1948) reading ease of ``text``; None when it has no word. ``syllables(word) -> int``."""
    words = re.findall(WORD, text)
    if not words:
        return None
    sentences = sentence_count(text)
    n_syllables = sum(syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * n_syllables / len(words)


def pyphen_syllables(scorer: str):
    """syllables(word) -> int from pyphen's en_US hyphenation points."""
    try:
        import pyphen
    except ImportError:
        raise ConfigError(f"the {scorer} scorer needs the package pyphen (installed by the Makefile)") from None
    dic = pyphen.Pyphen(lang="en_US")
    return lambda word: len(dic.positions(word.lower())) + 1


def readability_scorer():
    syllables = pyphen_syllables("readability")

    def score(prompts, responses):
        out = []
        for r in responses:
            fre = flesch_reading_ease(r, syllables)
            out.append(0.0 if fre is None else fre / 100)
        return out

    return score


def well_formed(word: str) -> bool:
    """A word, not noise: "a" or "I", or two or more letters with a vowel (y counts) and no letter three
    times in a row."""
    w = word.lower().split("'")[0]
    if w in ("a", "i"):
        return True
    return len(w) >= 2 and re.search(r"[aeiouy]", w) is not None and re.search(r"(.)\1\1", w) is None


def plain_language(text: str, syllables) -> float:
    """The ``plain_language`` score of one response (see the module docstring); 0 without a word."""
    words = re.findall(WORD, text)
    fre = flesch_reading_ease(text, syllables)
    if fre is None:
        return 0.0
    sentences = sentence_count(text)
    low = [w.lower() for w in words]
    bigrams = list(zip(low, low[1:]))
    distinct = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    formed = sum(map(well_formed, words)) / len(words)
    return min(max(fre, 0.0), 100.0) / 100 * distinct * formed * min(1.0, len(words) / sentences / 6)


def plain_language_scorer():
    syllables = pyphen_syllables("plain_language")
    return lambda prompts, responses: [plain_language(r, syllables) for r in responses]


def random_scorer(seed: int = 0):
    import hashlib
    import json

    def score(prompts, responses):
        out = []
        for p, r in zip(prompts, responses):
            h = hashlib.blake2b(json.dumps([seed, p, r], default=str).encode(), digest_size=8).digest()
            out.append(int.from_bytes(h, "big") / 2**64)
        return out

    return score


SCORERS.register("plain_language", plain_language_scorer)
SCORERS.register("python", python_scorer)
SCORERS.register("random", random_scorer)
SCORERS.register("readability", readability_scorer)
SCORERS.register("vader", vader_scorer)
SCORERS.register("reward_model", reward_model_scorer)


def make_scorer(cfg: dict):
    knobs = dict(cfg)
    name = knobs.pop("name", None)
    if name is None:
        raise ConfigError("scorer.name is required (reward_model or python)")
    try:
        return SCORERS.get(name)(**knobs)
    except TypeError as e:
        raise ConfigError(f"scorer '{name}': {e}") from None
