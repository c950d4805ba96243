"""The candidates of gold-free selection and their evidence: the experiment's ``selection`` stage, which reads no gold.

``shiftalign experiment`` runs it after the evaluation (``experiment.engine``); the selectors and the regret that
grades them are in ``experiment.selection``, the report's tables in ``experiment.tables``.

**Candidates**: each trajectory point (``experiment.points``: frontier snapshots, and the ends of rounds before the
last) and the final policy of every replicate of the arms a user could deploy without gold: the method arms and
the source-only arms (source-only DPO is what a user has without any method, so a selector must be able to keep
it). Not the oracles (trained on gold labels), nor the controls that carry no information by design (random
labels), nor the initial policy. A candidate's samples are the evaluation's, of the held-out target prompts:
``<output_dir>/points/samples/<replicate> <label>.jsonl`` for a point, whose weights are gone once evaluated (the
samples are all that selection reads), and ``<output_dir>/evaluate/samples/<replicate>.jsonl`` for a final policy
(``recipes.evaluate.samples_file``); its KL to the initial policy is the evaluation's.

**Evidence** (:func:`gather`, eqs. 1 and 2 of ``experiment.selection``): the experiment's reward model scores every
sample, member by member for a directory of reward heads (``RewardHeads.score_texts``, one feature extraction for
all heads, cached on content under ``$SHIFTALIGN_CACHE/features`` as the heads' own training features are); on the
same features, ESS/N of cross-fitted classifier density-ratio weights (``reweight.classifier``, its defaults:
logistic regression on standardised features, 5 folds) of the source pairs' chosen and rejected responses toward
the candidate's samples. A fine-tuned reward model is one member and has no features of its own here: its scores
serve ``reward_model``, and ``conservative`` abstains. A candidate whose samples file is missing is left out of
every selector and listed, with the reason, under ``unscored``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.text import text_of
from ..io import read_jsonl
from ..recipes.evaluate import samples_file
from .arms import source_only
from .points import point_name
from .seeds import replicate_name
from .selection import LCB_LAMBDA, MIN_ESS, Evidence, grade

OVERLAP = ("classifier density ratio (logistic, 5 folds, cross-fitted) of the reward model's training responses "
           "toward the candidate's samples, on the reward model's features")
SETTINGS = {"lcb_lambda": LCB_LAMBDA, "min_ess": MIN_ESS, "overlap": OVERLAP}  # part of the stage's key


def eligible(arm) -> bool:
    """Whether an arm's policies are candidates: a method, or trained on the source pairs alone."""
    return arm.role == "method" or source_only(arm.options)


def candidates(arms: list, results: dict, evaluation: dict, root: Path) -> list[dict]:
    """[{name, arm, replicate, point, kl, samples}] in config order, each replicate's points then its final
    policy (``point`` None); ``name`` is the policy's name in its evaluation."""
    out = []
    for arm in (a for a in arms if eligible(a)):
        for rep in (replicate_name(arm.name, k) for k in range(arm.seeds)):
            if rep not in results:
                continue
            for p in results[rep].points:
                name = point_name(rep, p["label"])
                out.append({"name": name, "arm": arm.name, "replicate": rep, "point": p["label"],
                            "kl": p["kl_to_baseline"], "samples": str(samples_file(root / "points", name))})
            if rep in evaluation["policies"]:
                out.append({"name": rep, "arm": arm.name, "replicate": rep, "point": None,
                            "kl": evaluation["policies"][rep]["kl_to_baseline"],
                            "samples": str(samples_file(root / "evaluate", rep))})
    return out


def overlap(Xs: np.ndarray, Xt: np.ndarray, seed: int = 0) -> float | None:
    """ESS/N (eq. 2) of classifier density-ratio weights of the rows of ``Xs`` (n_s, d) toward ``Xt`` (n_t, d);
    None with fewer than two rows on either side."""
    from ..reweight.classifier import ClassifierParams
    from ..reweight.classifier import fit as classifier_fit
    from ..reweight.diagnostics import ess_fraction

    if min(len(Xs), len(Xt)) < 2:
        return None
    w, _ = classifier_fit(np.asarray(Xs, np.float64), np.asarray(Xt, np.float64),
                          ClassifierParams(folds=min(5, len(Xs), len(Xt)), seed=seed))
    return ess_fraction(w)


class _Scorer:
    """The reward model as selection reads it: (K, N) member scores of (prompt, response) rows, and their
    features (None for a model without features of its own). A diverse ensemble's features are every member
    set's, side by side (``models.diverse_heads``)."""

    def __init__(self, path: str, source_pairs: str, wrap: bool):
        from ..models.reward_heads import RewardHeads, is_heads_dir

        self.heads, self.source = None, None
        if not is_heads_dir(path):
            from ..rl.scorers import reward_model_scorer

            self.score = reward_model_scorer(path, wrap_text_as_chat=wrap)
            return
        from ..data.load import load_examples
        from ..models.packaged import cache_root
        from ..reweight.pairs import source_texts

        self.heads, self.cache = RewardHeads.load(path), cache_root() / "features"
        sets = self.heads.features
        self.sets = sets if isinstance(sets, list) else [sets]
        chosen, rejected = source_texts(load_examples(source_pairs, "paired"), "both")
        self.source = self.features(chosen + rejected)  # in the order the heads were fitted on: cached then

    def features(self, texts: list[tuple[str, str]]) -> np.ndarray:
        from ..models.features import extract

        return np.hstack([extract(texts, f, self.cache) for f in self.sets])

    def __call__(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
        if self.heads is None:
            return np.array([self.score([r["prompt"] for r in rows], [r["completion"] for r in rows])], np.float64), None
        texts = [(text_of(r["prompt"]), text_of(r["completion"])) for r in rows]
        return np.asarray(self.heads.score_texts(texts, self.cache), np.float64), self.features(texts)


def gather(cands: list[dict], reward_model: str, source_pairs: str, wrap: bool = False, seed: int = 0) -> dict:
    """The selection stage's record: per candidate its metadata and :class:`Evidence`; ``unscored``: candidate
    -> why it has none. Reads the candidates' samples, the reward model and the source pairs; no gold."""
    if not cands:
        return {"skipped": "no candidate policies: no method or source-only arm has an evaluated policy"}
    scorer = _Scorer(reward_model, source_pairs, wrap)
    out, unscored = [], {}
    for c in cands:
        rows = read_jsonl(c["samples"]) if Path(c["samples"]).is_file() else []
        if not rows:
            unscored[c["name"]] = f"no samples in {c['samples']}"
            continue
        scores, X = scorer(rows)
        ess = overlap(scorer.source, X, seed) if X is not None else None
        out.append({**c, "samples_n": len(rows), **Evidence.from_scores(c["name"], c["kl"], scores, ess).record()})
    return {"reward_model": reward_model, "members": out[0]["members"] if out else None, **SETTINGS,
            **({"overlap": None} if scorer.heads is None else {}), "candidates": out, "unscored": unscored}


def candidate_gold(run, c: dict) -> list[float] | None:
    """The candidate's per-prompt gold: its point's record in its arm's stage, or its final policy's evaluation."""
    if c["point"] is None:
        return run.evaluation["policies"].get(c["replicate"], {}).get("gold_per_prompt")
    result = run.results.get(c["replicate"])
    point = next((p for p in (result.points if result else []) if p["label"] == c["point"]), None)
    return point.get("gold_per_prompt") if point else None


def selection_results(run) -> dict:
    """The picks of every selector on the run's selection record, graded with gold (``experiment.selection.grade``);
    {skipped: why} when there is none to grade."""
    record = run.selection
    if not record:
        return {"skipped": "no gold-free selection in this run: no reward model's evidence on the candidates "
                           "was recorded (the selection stage did not run)"}
    if record.get("skipped"):
        return {"skipped": record["skipped"]}
    if not record["candidates"]:
        return {"skipped": "no candidate could be scored: " + "; ".join(f"{k}: {v}" for k, v in
                                                                         record.get("unscored", {}).items())}
    return grade(record, {c["name"]: candidate_gold(run, c) for c in record["candidates"]})
