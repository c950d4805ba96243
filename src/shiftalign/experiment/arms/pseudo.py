"""``pseudo``: rounds of sample -> label -> DPO on the policy's own samples of the target prompts
(``recipes.iterate``: the iterative DPO of Xiong et al., 2024, with ``reference: initial``, or of
Yuan et al., 2024, with ``reference: previous``). Labels come from the experiment's reward model
(``labeller: reward_model``), an LLM judge (``judge``; local model or API, see ``labeling``) or the
gold scorer (``gold``: the oracle, the upper bound of what labels of the target can buy).
Round 1 labels the shared samples of the initial policy. ``mix_source`` adds the source pairs to
every round. Diagnostics: pseudo-pairs per round and their label accuracy against gold (gold ties
left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ...config import from_dict
from ...data.text import response_text
from ...errors import ConfigError
from ...io import read_jsonl
from ...labeling.judge_labeller import JudgeLabelConfig
from ...log import log
from ...recipes.iterate import IterateConfig, NoPairsError
from ...recipes.iterate import main as iterate_main
from ...recipes.label import LabelConfig
from ...reweight.pairs import text_of
from ...rl.scorers import make_scorer
from ...rollout.sample import SampleConfig
from . import ArmKind, ArmResult, register

LABELLERS = {"reward_model": "reward_model", "judge": "judge", "gold": "scorer"}  # arm option -> recipes.label


@dataclass
class PseudoOptions:
    labeller: str = "reward_model"  # reward_model | judge | gold
    judge: dict = field(default_factory=dict)  # with judge: labeling.judge_labeller.JudgeLabelConfig fields
    rounds: int = 1
    pairs: str = "best_vs_worst"  # reward_model / gold: best_vs_worst | random | all
    margin: float = 0.0  # reward_model / gold: keep pairs whose score difference is above this
    reference: str = "initial"  # initial | previous
    mix_source: bool = False  # add the source pairs to every round
    train: dict = field(default_factory=dict)  # overrides of the experiment's dpo_train

    def __post_init__(self):
        if self.labeller not in LABELLERS:
            raise ConfigError(f"labeller: expected one of {', '.join(LABELLERS)}, got {self.labeller!r}")
        if self.reference not in ("initial", "previous"):
            raise ConfigError(f"reference: expected initial or previous, got {self.reference!r}")
        if self.labeller == "judge":
            from_dict(JudgeLabelConfig, {"pairs": "random", **self.judge}, "judge")


def label_settings(ctx, name: str, opts: PseudoOptions) -> LabelConfig:
    cfg = ctx.cfg
    kind = LABELLERS[opts.labeller]
    label = {"labeller": kind, "seed": cfg.seed, "progress": cfg.progress}
    if kind == "reward_model":
        label["reward_model"] = {"models": [ctx.shared.reward_model], "pairs": opts.pairs, "margin": opts.margin,
                                 "wrap_text_as_chat": cfg.wrap_text_as_chat}
    elif kind == "scorer":
        label["scorer"] = {"scorer": dict(cfg.gold), "pairs": opts.pairs, "margin": opts.margin}
    else:
        label["judge"] = {"pairs": "random", **opts.judge}
    return from_dict(LabelConfig, label, f"arms.{name}")


def run(ctx, name: str, opts: PseudoOptions) -> ArmResult:
    cfg = ctx.cfg
    train = ctx.run_config("preference", None, None, ctx.train_settings(opts.train, f"arms.{name}.train"), cfg.dpo_loss)
    it = IterateConfig(output_dir=str(ctx.root / name), rounds=opts.rounds, prompts=ctx.shared.target_prompts,
                       reference=opts.reference,
                       sample=SampleConfig(sampling=replace(cfg.policy_sampling), wrap_text_as_chat=cfg.wrap_text_as_chat,
                                           progress=cfg.progress),
                       label=label_settings(ctx, name, opts), train=train,
                       mix_source=ctx.shared.source_pairs if opts.mix_source else None,
                       round1_samples=ctx.shared.samples)
    try:
        history = iterate_main(it)
    except NoPairsError as e:  # recorded, shown in the results, and left out of the evaluation
        log(f"arm {name}: {e}")
        return ArmResult(model=None, failed=str(e))
    rounds = [{"round": h["round"], "pairs": h["labels"]["pairs"], "unlabelled": h["labels"]["unlabelled"],
               "label_accuracy": pair_label_accuracy(Path(h["samples"]).parent / "labels" / "pseudo_pairs.jsonl",
                                                     cfg.gold)} for h in history]
    acc = [r["label_accuracy"] for r in rounds if r["label_accuracy"] is not None]
    return ArmResult(model=history[-1]["model"], diagnostics={
        "rounds": rounds, "pseudo_pairs": sum(r["pairs"] for r in rounds),
        "label_accuracy": sum(acc) / len(acc) if acc else None})


def pair_label_accuracy(pairs_file: Path, gold: dict) -> float | None:
    """Fraction of labelled pairs whose chosen response has the higher gold score (gold ties left out)."""
    rows = read_jsonl(pairs_file) if pairs_file.exists() else []
    if not rows:
        return None
    fn = make_scorer(dict(gold))
    prompts = [text_of(r["prompt"]) for r in rows]
    chosen = fn(prompts, [response_text(r["chosen"]) for r in rows])
    rejected = fn(prompts, [response_text(r["rejected"]) for r in rows])
    decided = [(c, r) for c, r in zip(chosen, rejected) if c != r]
    return sum(c > r for c, r in decided) / len(decided) if decided else None


register(ArmKind("pseudo", PseudoOptions, run))
