"""Reward-model labeller: score every sample with one or more reward models trained by the
``reward`` recipe, then build pairs per prompt.

With K > 1 models (an ensemble) a sample's score is the mean over models, and a pair is dropped
when the models disagree too much about it: the spread (standard deviation over models) of the
score difference is above ``max_spread`` (uncertainty filtering as in Coste et al., 2024, "Reward
Model Ensembles Help Mitigate Overoptimization"), or when the mean difference is less than
``min_agreement`` times that spread (a scale-free form of the same filter: the ensemble is not sure
of the order). Confidence is sigmoid(mean difference): the
Bradley-Terry probability that the chosen response is preferred.

``bound: lcb | worst`` labels from a lower bound of the ensemble instead (``ops.ensemble_bound``: the UWO
and WCO of Coste et al., 2024, on each pair's score difference): a pair is kept only if the mean minus
``lcb_lambda`` standard deviations over the models (``lcb``), or the smallest difference of any model
(``worst``), is above ``margin``, and that bound becomes its margin, its confidence and so its confidence
weight in training. ``lcb_lambda`` is fixed a priori (1.0: one standard deviation; no gold is read). It needs
two or more models or heads, and is refused before any scoring otherwise.

A path may also be a directory of reward heads (``shiftalign heads fit``, ``models.reward_heads``):
its K heads count as K models of the ensemble, scored from one feature extraction (a diverse ensemble's,
``models.diverse_heads``: one per feature set, the layers of one model from one pass).

With ``orient`` (a scorer of ``rl.scorers``) the pairs are selected and weighted by the reward model as
above and oriented by that scorer instead (``labeling.orient``): the labels-only oracle (the gold
reward) and control (``random``) of an experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ModelConfig
from ..data.batching import collate
from ..data.tokenize import tokenize_examples
from ..log import log
from ..ops.ensemble_bound import DEFAULT_LAMBDA, check_bound, check_members
from ..ops.logprobs import BranchRewards
from .orient import orient_pairs
from .pairs import pairs_from_scores


@dataclass
class RewardLabelConfig:
    models: list[str] = field(default_factory=list)  # reward-model paths (one, or several for an ensemble)
    pairs: str = "best_vs_worst"  # best_vs_worst | random | all
    margin: float = 0.0  # keep pairs whose mean score difference is above this
    max_spread: float | None = None  # ensemble: drop pairs whose difference has a larger std over models
    min_agreement: float | None = None  # ensemble: drop pairs whose mean difference is under this many of its stds
    bound: str = "mean"  # mean | lcb | worst: what of the models' score differences labels a pair (ops.ensemble_bound)
    lcb_lambda: float = DEFAULT_LAMBDA  # lcb: standard deviations over the models below their mean difference
    batch_size: int = 16
    max_length: int = 1024
    max_prompt_length: int = 512
    wrap_text_as_chat: bool = False
    orient: dict | None = None  # None: the reward model orients its pairs; a scorer {name, ...} (rl.scorers):
    # the reward model's pairs, margins and weights, with chosen / rejected decided by that scorer (ties dropped)

    def __post_init__(self):
        check_bound(self.bound, self.lcb_lambda, "reward_model.")
        if self.orient is not None and not (isinstance(self.orient, dict) and self.orient.get("name")):
            from ..errors import ConfigError
            raise ConfigError(f"reward_model.orient: expected a scorer {{name: ..., ...}} or null, got {self.orient!r}")


@torch.inference_mode()
def score(model_path: str, examples, cfg: RewardLabelConfig) -> list[float]:
    from ..models.load import load_reward_model

    model, tok = load_reward_model(ModelConfig(path=model_path))
    model.eval()
    items, _ = tokenize_examples(examples, tok, cfg.max_length, cfg.max_prompt_length, "truncate", cfg.wrap_text_as_chat)
    scorer = BranchRewards(model)
    out = [0.0] * len(items)
    order = sorted(range(len(items)), key=lambda i: items[i].row_length)
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s:s + cfg.batch_size]
        r = scorer(collate([items[i] for i in idx], tok.pad_token_id))["rewards"][:, 0]
        for i, v in zip(idx, r.tolist()):
            out[i] = v
    return out


def score_lists(path: str, examples, cfg: RewardLabelConfig) -> list[list[float]]:
    """One score list per model at ``path``: K for a directory of reward heads, else one."""
    from ..models.reward_heads import RewardHeads, is_heads_dir

    if not is_heads_dir(path):
        return [score(path, examples, cfg)]
    from ..data.text import text_of
    from ..models.packaged import cache_root

    texts = [(text_of(ex.prompt), text_of(ex.completions[0])) for ex in examples]
    return RewardHeads.load(path).score_texts(texts, cache_root() / "features").tolist()


def ensemble_size(path: str) -> int:
    """How many models the path counts as in an ensemble: its K heads for a directory of reward heads, else 1."""
    from ..models.reward_heads import RewardHeads, is_heads_dir

    return RewardHeads.load(path).size if is_heads_dir(path) else 1


def label(groups, cfg: RewardLabelConfig, seed: int = 0):
    """(pairs, dropped, stats): pair rows with provenance, records of what was dropped and why, and with
    ``orient`` the orientation's counts (``{"orient": ...}``)."""
    if not cfg.models:
        from ..errors import ConfigError
        raise ConfigError("reward_model.models: give at least one reward-model path")
    if cfg.bound != "mean":  # before anything is scored
        check_members(sum(map(ensemble_size, cfg.models)), cfg.bound, f"reward_model.models {cfg.models}")
    flat = [ex for g in groups for ex in g]
    per_model = [scores for m in cfg.models for scores in score_lists(m, flat, cfg)]
    log(f"scored {len(flat)} samples with {len(per_model)} reward model(s) or head(s)")
    pairs, dropped = pairs_from_scores(groups, per_model, cfg.pairs, cfg.margin, cfg.max_spread, seed,
                                       {"labeller": "reward_model", "models": cfg.models}, cfg.min_agreement,
                                       cfg.bound, cfg.lcb_lambda)
    if cfg.orient is None:
        return pairs, dropped, {}
    pairs, ties, stats = orient_pairs(pairs, cfg.orient)
    return pairs, dropped + ties, {"orient": stats}
