"""``pseudo``: rounds of sample -> label -> DPO on the policy's own samples of the target prompts
(``recipes.iterate``: the iterative DPO of Xiong et al., 2024, with ``reference: initial``, or of
Yuan et al., 2024, with ``reference: previous``). Labels come from the experiment's reward model
(``labeller: reward_model``), an LLM judge (``judge``; local model or API, see ``labeling``), the
gold scorer (``gold``: the oracle, the upper bound of what labels of the target can buy) or coin
flips (``random``: the control that tells drift from learning).

``orient`` (with ``labeller: reward_model``) makes the oracle and the control differ from the method in
the labels only (CONTRIBUTING.md, rule 14): every round the arm samples from its own policy, the
experiment's reward model selects the pairs and gives their confidence weights exactly as for the method,
and only the orientation of each pair comes from the gold scorer (``orient: gold``, the labels-only
oracle; gold ties are dropped and counted) or from a seeded coin (``orient: random``, the labels-only
control) (``labeling.orient``). The ``gold`` and ``random`` labellers stay as the recipe-level oracle
and control: they pick their own pairs by their own scores and weigh them as such.

As the published recipes run it (Xiong et al., 2024; Guo et al., 2024, "Direct Language Model
Alignment from Online AI Feedback"):
- ``init``: start from another arm's policy (e.g. source-only DPO) instead of the initial policy;
  round 1 then samples from it, and ``reference: initial`` means that starting policy;
- ``mix_source`` keeps the source pairs in every round, with ``source_weights`` (a ``dpo`` arm with
  an estimator) their density-ratio weights;
- ``confidence_temperature`` weights each pseudo-pair by 2 sigmoid(margin / T) - 1 (0 for a tie);
  ``max_spread`` drops pairs on which the reward model's ensemble (several heads) disagrees;
- ``bound: lcb | worst`` (with ``labeller: reward_model`` and an ensemble of heads): pairs labelled, and
  weighted, by a lower bound of the heads' score differences instead of their mean (``ops.ensemble_bound``:
  Coste et al., 2024's UWO with ``lcb_lambda`` standard deviations, fixed a priori, or their WCO);
- ``reward_weights``: label with an importance-weighted reward model instead of the shared one:
  density-ratio weights of the source pairs toward the initial policy's target samples (any
  estimator) weight its Bradley-Terry likelihood; its shift cost is reported beside the shared one's;
- ``refit_reward`` (with ``reward_weights`` and reward heads): that importance-weighted reward model is
  re-fitted every round toward the round's own samples (``recipes.iterate``'s ``refit``), so it
  follows the policy as it moves;
- ``align`` (``{method: coral, eps: 1.0}``; reward heads): label with reward heads fitted on the source pairs'
  features aligned toward the initial policy's target samples (CORAL, Sun, Feng & Saenko, 2016,
  ``models.align``), with ``reward_weights`` importance-weighted as well; its shift cost and the domain AUC
  of the features before and after the alignment are reported beside the shared reward model's;
- ``reward_members`` (feature sets) or ``reward_diverse: true`` (reward heads): label with heads split over
  several feature sets (``models.diverse_heads``, Eisenstein et al., 2023), its shift cost reported too.
Diagnostics: pseudo-pairs per round, their label accuracy against gold (gold ties left out) and, with an
ensemble reward model, its heads' agreement (``labeling.pairs.head_agreement``: needs no gold, so a user of the
method sees it too, where the label accuracy needs gold) and the AUROC of its spread for a wrong label, with a
bootstrap interval over the pairs (``labeling.gold_check``: whether the members' disagreement flags the labels
that are wrong, which a ``bound`` or ``max_spread`` relies on; Coste et al., 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar

from ...config import TrainConfig
from ...errors import ConfigError
from ...labeling.gold_check import round_label_check
from ...labeling.judge_labeller import JudgeLabelConfig
from ...labeling.reward_model import RewardLabelConfig
from ...labeling.scorer import ScorerLabelConfig
from ...log import log
from ...models.align import AlignConfig
from ...models.features import FeatureConfig
from ...ops.ensemble_bound import DEFAULT_LAMBDA, check_bound, check_members
from ...recipes.iterate import IterateConfig, NoPairsError, RefitConfig
from ...recipes.iterate import main as iterate_main
from ...recipes.label import LABELLERS, LabelConfig
from ...registry import Registry
from ...reweight.stabilize import StabiliserConfig
from ...rollout.sample import SampleConfig
from .dpo import check_estimator
from .spec import AddedOptions, ArmKind, ArmResult, register, snapshot_points


@dataclass(frozen=True)
class LabelSource:
    """Where a pseudo arm's labels come from: a labeller of ``recipes.label.LABELLERS`` (the one registry of
    labellers) set up from the arm's options and the experiment, and the role that gives the arm."""

    name: str
    role: str  # method | oracle | control
    labeller: str  # the recipes.label labeller it runs (its LabelConfig section has the same name)
    settings: Callable  # (ctx, opts, reward_model) -> that labeller's config section
    scorer: Callable | None = None  # (cfg) -> the scorer mapping it labels or orients by (gold, coin flips)


LABEL_SOURCES: Registry[LabelSource] = Registry("label source")


def _rm_settings(ctx, opts, reward_model: str) -> RewardLabelConfig:
    return RewardLabelConfig(models=[reward_model], pairs=opts.pairs, margin=opts.margin, max_spread=opts.max_spread,
                             min_agreement=opts.min_agreement, bound=opts.bound, lcb_lambda=opts.lcb_lambda,
                             wrap_text_as_chat=ctx.cfg.wrap_text_as_chat,
                             orient=LABEL_SOURCES.get(opts.orient).scorer(ctx.cfg) if opts.orient else None)


def _scorer_settings(source: str):
    def settings(ctx, opts, reward_model: str) -> ScorerLabelConfig:
        return ScorerLabelConfig(scorer=LABEL_SOURCES.get(source).scorer(ctx.cfg), pairs=opts.pairs, margin=opts.margin)
    return settings


for _source in (LabelSource("reward_model", "method", "reward_model", _rm_settings),
                LabelSource("judge", "method", "judge", lambda ctx, opts, reward_model: opts.judge),
                LabelSource("gold", "oracle", "scorer", _scorer_settings("gold"), lambda cfg: dict(cfg.gold)),
                LabelSource("random", "control", "scorer", _scorer_settings("random"),
                            lambda cfg: {"name": "random", "seed": cfg.seed})):
    LABELLERS.get(_source.labeller)  # every source runs a registered labeller
    LABEL_SOURCES.register(_source.name, _source)
ORIENTS = [n for n in LABEL_SOURCES.names() if LABEL_SOURCES.get(n).scorer is not None]  # what can orient pairs


@dataclass
class RewardWeights:
    """An importance-weighted reward model: density-ratio weights of the source pairs toward the target."""

    estimator: dict | None = None  # {name, <its parameters>} (required)
    stabilise: StabiliserConfig = field(default_factory=StabiliserConfig)  # the experiment's, with these overrides

    def __post_init__(self):
        if self.estimator is None:
            raise ConfigError("reward_weights: expected {estimator: {name, ...}, stabilise: {...}}, got no estimator")
        check_estimator(self.estimator, "reward_weights.estimator")


@dataclass
class PseudoOptions(AddedOptions):
    labeller: str = "reward_model"  # a LABEL_SOURCES entry: reward_model | judge | gold | random
    judge: JudgeLabelConfig = field(default_factory=JudgeLabelConfig)  # with judge: the judge's settings
    rounds: int = 1
    pairs: str = "best_vs_worst"  # reward_model / gold: best_vs_worst | random | all
    margin: float = 0.0  # reward_model / gold: keep pairs whose score difference is above this
    reference: str = "initial"  # initial | previous
    mix_source: bool = False  # add the source pairs to every round
    mix_source_pairs: int | None = None  # with mix_source: that many source pairs per round, at random
    source_weights: str | None = None  # with mix_source: the weights fitted by this (earlier) dpo arm
    init: str | None = None  # start from this (earlier) arm's policy; default the initial policy
    confidence_temperature: float | None = None  # weight pseudo-pairs by 2 sigmoid(margin / T) - 1
    max_spread: float | None = None  # reward_model with several heads: drop pairs whose margin's std is above
    min_agreement: float | None = None  # ... or whose mean margin is under this many of its stds
    bound: str = "mean"  # reward_model with several heads: mean | lcb | worst of the heads' margins labels a pair
    lcb_lambda: float = DEFAULT_LAMBDA  # with bound: lcb, that many stds of the heads' margins below their mean
    reward_weights: RewardWeights | None = None  # label with an importance-weighted reward model
    refit_reward: bool = False  # with reward_weights: re-fit it every round toward that round's samples
    align: AlignConfig | None = None  # label with reward heads on features aligned toward the initial policy's
    # target samples ({method: coral, eps}: models.align)
    reward_members: list[FeatureConfig] | None = None  # label with reward heads split over these feature sets
    reward_diverse: bool = False  # ... or over every candidate layer of reward_model.features and the embedding
    orient: str | None = None  # with reward_model: gold | random orients the reward model's pairs (same pairs and
    # weights): the labels-only oracle (gold; gold ties dropped) or control (a seeded coin flip per pair)
    train: TrainConfig = field(default_factory=TrainConfig)  # the experiment's dpo_train, with this arm's overrides

    INHERITS: ClassVar[dict] = {"train": "dpo_train", "reward_weights.stabilise": "stabilise"}
    # options added after runs were made, with their defaults
    ADDED: ClassVar[dict] = {"orient": None, "bound": "mean", "lcb_lambda": DEFAULT_LAMBDA, "align": None,
                             "reward_members": None, "reward_diverse": False}

    def arm_refs(self) -> list[str]:
        return [r for r in (self.init, self.source_weights) if r]

    def start_arm(self) -> str | None:
        return self.init

    def diverse(self) -> bool:
        return self.reward_members is not None or self.reward_diverse

    def role(self) -> str:
        """Random labels carry no information about the target: that arm is the drift control; gold labels
        are all of it: that arm is an oracle."""
        return LABEL_SOURCES.get(self.orient or self.labeller).role

    def __post_init__(self):
        if self.labeller not in LABEL_SOURCES.names():
            raise ConfigError(f"labeller: expected one of {', '.join(LABEL_SOURCES.names())}, got {self.labeller!r}")
        if self.reference not in ("initial", "previous"):
            raise ConfigError(f"reference: expected initial or previous, got {self.reference!r}")
        if self.source_weights and not self.mix_source:
            raise ConfigError("source_weights: weights of the source pairs need mix_source: true")
        if self.reward_weights is not None and self.labeller != "reward_model":
            raise ConfigError("reward_weights: an importance-weighted reward model needs labeller: reward_model")
        if self.orient is not None and self.orient not in ORIENTS:
            raise ConfigError(f"orient: expected one of {', '.join(ORIENTS)} or null, got {self.orient!r}")
        if self.orient is not None and self.labeller != "reward_model":
            raise ConfigError("orient: orienting the reward model's pairs needs labeller: reward_model")
        if self.refit_reward and self.reward_weights is None:
            raise ConfigError("refit_reward: re-fitting needs reward_weights (its estimator and stabiliser)")
        if self.align is not None and self.labeller != "reward_model":
            raise ConfigError("align: a reward model on aligned features needs labeller: reward_model")
        if self.align is not None and self.refit_reward:
            raise ConfigError("align: the per-round refit (refit_reward) fits unaligned heads; use one or the other")
        if self.diverse() and (self.labeller != "reward_model" or self.align is not None):
            raise ConfigError("reward_members / reward_diverse: heads on several feature sets need labeller: "
                              "reward_model, and no align (which maps one feature set)")
        if self.reward_members is not None and self.reward_diverse:
            raise ConfigError("reward_members / reward_diverse: give the feature sets or reward_diverse: true, not both")
        check_bound(self.bound, self.lcb_lambda)
        if self.bound != "mean" and self.labeller != "reward_model":
            raise ConfigError(f"bound: a bound of the reward model's ensemble needs labeller: reward_model, got "
                              f"{self.labeller!r}")


def label_settings(ctx, name: str, opts: PseudoOptions, reward_model: str) -> LabelConfig:
    """The label recipe's config for one round of the arm: its source's labeller and that labeller's section."""
    source = LABEL_SOURCES.get(opts.labeller)
    return LabelConfig(labeller=source.labeller, seed=ctx.cfg.seed, progress=ctx.cfg.progress,
                       **{source.labeller: source.settings(ctx, opts, reward_model)})


def adapted_reward(ctx, name: str, rw: RewardWeights | None, align: AlignConfig | None = None,
                   members: list[FeatureConfig] | None = None) -> tuple[str, dict]:
    """A reward model of the experiment's kind, importance-weighted (``rw``) and / or on features aligned toward
    the initial policy's target samples (``align``) or split over feature sets (``members``): (path, its
    diagnostics)."""
    from ...models.reward_heads import RewardHeads
    from ..rewards import shift_cost, train_reward
    from .dpo import fit_weights

    fitted = fit_weights(ctx, name, rw.estimator, rw.stabilise, ctx.cfg.pair_mode) if rw is not None else None
    path = train_reward(ctx, ctx.root / "rewards" / name, weights=fitted.file if fitted else None, align=align,
                        target=ctx.samples, members=members)
    kind = ", ".join([ctx.cfg.reward_model.kind] + (["importance-weighted"] if rw is not None else [])
                     + ([f"{align.method}-aligned"] if align is not None else [])
                     + ([f"diverse over {len(members)} feature sets"] if members is not None else []))
    aligned = {}
    if align is not None:
        a = RewardHeads.load(path).info["alignment"]
        aligned = {"align_domain_auc_before": a["domain_auc_before"], "align_domain_auc_after": a["domain_auc_after"]}
    return path, {"kind": kind, **(fitted.diagnostics if fitted else {}), **aligned, **shift_cost(ctx, path, ctx.samples)}


def refit_settings(ctx, name: str, rw: RewardWeights, members: list[FeatureConfig] | None = None) -> RefitConfig:
    """``iterate``'s per-round refit from the experiment's reward heads (on the arm's feature sets ``members``
    when given) and the arm's reward_weights."""
    from ...recipes.reward_heads import RewardHeadsConfig
    from ...recipes.weights import WeightsConfig
    from ..rewards import REWARD_KINDS, heads_members

    cfg, spec = ctx.cfg, ctx.cfg.reward_model
    if not REWARD_KINDS.get(spec.kind).refits_per_round:
        kinds = [k for k in REWARD_KINDS.names() if REWARD_KINDS.get(k).refits_per_round]
        raise ConfigError(f"arms.{name}.refit_reward: re-fitting every round needs reward_model.kind: "
                          f"{' or '.join(kinds)}, got {spec.kind}")
    return RefitConfig(
        weights=WeightsConfig(source=ctx.data.source_pairs, pair_mode=cfg.pair_mode, features=cfg.features,
                              estimator=dict(rw.estimator), stabilise=rw.stabilise),
        heads=RewardHeadsConfig(pairs=ctx.data.source_pairs, features=spec.features, heads=spec.heads, l2=spec.l2,
                                seed=cfg.seed, **heads_members(spec, members)))


def run(ctx, name: str, opts: PseudoOptions) -> ArmResult:
    cfg = ctx.cfg
    reward_model, diagnostics, files = ctx.reward_model, {}, {}
    if opts.bound != "mean":  # before anything is trained or sampled; an importance-weighted or re-fitted
        # reward model is of the shared one's kind and size
        from ...labeling.reward_model import ensemble_size

        check_members(ensemble_size(reward_model), opts.bound, f"arms.{name}: the experiment's reward model")
    if opts.align is not None:
        from ..rewards import check_aligns

        check_aligns(cfg.reward_model.kind, f"arms.{name}.align")
    from ..rewards import reward_member_sets

    members = reward_member_sets(cfg.reward_model, opts.reward_members, opts.reward_diverse,
                                 f"arms.{name}.reward_") if opts.diverse() else None  # the arm's own heads' sets
    if (opts.reward_weights is not None or opts.align is not None or members) and not opts.refit_reward:
        # with refit_reward: fitted in every round
        reward_model, diagnostics["reward_model"] = adapted_reward(ctx, name, opts.reward_weights, opts.align, members)
        files["reward_model"] = reward_model
    train = ctx.run_config("preference", None, None, opts.train, cfg.dpo_loss)
    if opts.init:
        start = ctx.arm(opts.init).model
        if not start:
            raise ConfigError(f"arms.{name}.init: arm '{opts.init}' produced no policy")
        train = replace(train, model=replace(train.model, path=start))
    it = IterateConfig(output_dir=str(ctx.root / name), rounds=opts.rounds, prompts=ctx.data.target_prompts,
                       reference=opts.reference,
                       sample=SampleConfig(sampling=replace(cfg.policy_sampling), wrap_text_as_chat=cfg.wrap_text_as_chat,
                                           backend=cfg.backend, vllm=cfg.vllm,
                                           progress=cfg.progress),
                       label=label_settings(ctx, name, opts, reward_model), train=train,
                       mix_source=ctx.data.source_pairs if opts.mix_source else None,
                       mix_source_pairs=opts.mix_source_pairs,
                       mix_weights=ctx.arm(opts.source_weights).files.get("weights") if opts.source_weights else None,
                       confidence_temperature=opts.confidence_temperature,
                       round1_samples=ctx.samples_of(opts.init) if opts.init else ctx.samples,
                       refit=refit_settings(ctx, name, opts.reward_weights, members) if opts.refit_reward else None)
    try:
        history = iterate_main(it)
    except NoPairsError as e:  # recorded, shown in the results, and left out of the evaluation
        log(f"arm {name}: {e}")
        return ArmResult(model=None, failed=str(e), diagnostics=diagnostics, files=files)
    rounds = [{"round": h["round"], "pairs": h["labels"]["pairs"], "unlabelled": h["labels"]["unlabelled"],
               **round_label_check(Path(h["samples"]).parent / "labels" / "pseudo_pairs.jsonl", cfg.gold, cfg.seed),
               "head_agreement": h["labels"].get("head_agreement"),
               **({"reward_" + k: h["refit"].get(k) for k in ("ess_fraction", "domain_auc_before", "domain_auc_after")}
                  if "refit" in h else {})} for h in history]
    acc = [r["label_accuracy"] for r in rounds if r["label_accuracy"] is not None]
    points = []
    for h in history:  # each round's snapshots, then its final policy (the last round's is the arm's)
        points += snapshot_points(Path(h["model"]).parent, f"round {h['round']} " if len(history) > 1 else "")
        if h is not history[-1]:
            points.append({"label": f"round {h['round']} end", "model": h["model"]})
    return ArmResult(model=history[-1]["model"], files=files, points=points, diagnostics={
        **diagnostics, "rounds": rounds, "pseudo_pairs": sum(r["pairs"] for r in rounds),
        "label_accuracy": sum(acc) / len(acc) if acc else None})


register(ArmKind("pseudo", PseudoOptions, run))
