"""The controlled domain-shift benchmark: which alignment method moves the policy furthest toward
the gold objective when the preference data come from another domain?

Setting (config-driven, see ``default.yaml`` / ``small.yaml``): source prompts from one topic mix,
source responses from a behaviour policy (the same model under another system prompt and
temperature), labels from a gold scorer with Bradley-Terry noise (``shiftalign.rollout.behaviour``);
target prompts from another mix; the policy is evaluated on held-out target prompts by the gold
scorer. Stages, each cached under ``<output_dir>/stages`` (a rerun continues where it stopped):
1. ``data``            prompt subsets and the gold-labelled source pairs;
2. ``reward``          a Bradley-Terry reward model on the source pairs;
3. ``policy_samples``  the initial policy's samples on the target prompts: the target domain of every
                       density-ratio estimator, and round 1 of every pseudo-label arm (shared);
4. one stage per arm   ``initial``; ``dpo`` (optionally weighted by a density-ratio estimator or by the
                       policy-likelihood ratio); ``pseudo`` (iterative DPO on policy samples labelled
                       by the reward model, an LLM judge, or — the oracle — the gold scorer); ``rl``
                       (PPO / RLOO / GRPO against the reward model);
5. ``evaluate``        gold reward with paired-bootstrap 95 % intervals against source-only DPO, win
                       rate and KL against the initial policy, reward-model accuracy on on-policy pairs;
then ``results.json``, ``results.md`` and ``report.html`` (``summary.py``), with the gap-recovery
ratio (arm - source-only) / (oracle - source-only).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shiftalign.config import DataConfig, ModelConfig, RunConfig, TrainConfig, dump_config, from_dict
from shiftalign.errors import ConfigError
from shiftalign.io import write_text_atomic
from shiftalign.recipes import RECIPES
from shiftalign.recipes.evaluate import EvaluateConfig
from shiftalign.recipes.evaluate import main as evaluate_main
from shiftalign.recipes.iterate import IterateConfig, NoPairsError
from shiftalign.recipes.iterate import main as iterate_main
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.rl import RLConfig
from shiftalign.recipes.stages import Stages
from shiftalign.recipes.weights import WeightsConfig
from shiftalign.recipes.weights import main as weights_main
from shiftalign.reweight.features import FeatureConfig
from shiftalign.reweight.policy_ratio import PolicyRatioConfig
from shiftalign.reweight.stabilize import StabiliserConfig
from shiftalign.rollout.behaviour import BehaviourConfig, gold_labelled_pairs, label_agreement
from shiftalign.rollout.sample import SampleConfig, SamplingParams
from shiftalign.rollout.sample import main as sample_main

KINDS = ("initial", "dpo", "pseudo", "rl")


@dataclass
class DataSpec:
    source_prompts: str = "data/shift/source_prompts.jsonl"
    target_prompts: str = "data/shift/target_prompts.jsonl"
    eval_prompts: str = "data/shift/target_eval_prompts.jsonl"
    n_source: int | None = None  # first n prompts of each file (null: all)
    n_target: int | None = None
    n_eval: int | None = None
    source_pairs: str | None = None  # a ready pairs file instead of building them with the behaviour policy
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)


@dataclass
class ArmSpec:
    name: str = ""
    kind: str = "dpo"  # initial | dpo | pseudo | rl
    estimator: dict | None = None  # dpo: density-ratio weights from this estimator (reweight.ESTIMATORS)
    stabilise: dict = field(default_factory=dict)  # dpo with an estimator: overrides of the benchmark's stabilise
    policy_ratio: dict | None = None  # dpo: policy-likelihood-ratio weights in the loop
    labeller: str = "reward_model"  # pseudo: reward_model | judge | gold
    judge: dict = field(default_factory=dict)  # pseudo with judge: labeling.judge_labeller.JudgeLabelConfig
    rounds: int = 1  # pseudo: rounds of sample -> label -> DPO
    pairs: str = "best_vs_worst"  # pseudo with reward_model / gold: best_vs_worst | random | all
    margin: float = 0.0  # pseudo with reward_model / gold: keep pairs whose score difference is above this
    reference: str = "initial"  # pseudo: initial | previous
    mix_source: bool = False  # pseudo: add the source pairs to every round
    rl: dict = field(default_factory=dict)  # rl: fields of recipes.rl.RLConfig (algorithm, iterations, lr, ...)
    train: dict = field(default_factory=dict)  # overrides of the benchmark's dpo_train for this arm


@dataclass
class ShiftBenchConfig:
    output_dir: str = "runs/shift_bench"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    gold: dict = field(default_factory=lambda: {"name": "vader"})
    data: DataSpec = field(default_factory=DataSpec)
    wrap_text_as_chat: bool = True
    max_length: int = 256
    max_prompt_length: int = 128
    reward_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=2, save_every=8))
    dpo_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=2, save_every=8))
    dpo_loss: dict = field(default_factory=lambda: {"name": "dpo", "beta": 0.1})
    policy_sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=4, max_new_tokens=48,
                                                                                  temperature=0.8))
    pair_mode: str = "both"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stabilise: StabiliserConfig = field(default_factory=lambda: StabiliserConfig(clip_quantile=0.99))
    arms: list = field(default_factory=list)  # of ArmSpec mappings
    baseline_arm: str = "dpo_source"  # differences and the gap-recovery ratio are against this arm
    oracle_arm: str = "oracle"
    evaluate: EvaluateConfig = field(default_factory=lambda: EvaluateConfig(
        sampling=SamplingParams(n=4, max_new_tokens=48, temperature=0.7), bootstrap=2000))
    progress: bool = True


def parse_arms(cfg: ShiftBenchConfig) -> list[ArmSpec]:
    arms = [from_dict(ArmSpec, a, f"arms[{i}].") for i, a in enumerate(cfg.arms)]
    names = [a.name for a in arms]
    for i, a in enumerate(arms):
        if not a.name:
            raise ConfigError(f"arms[{i}].name: every arm needs a name")
        if a.kind not in KINDS:
            raise ConfigError(f"arms[{i}].kind: expected one of {', '.join(KINDS)}, got {a.kind!r}")
        if a.kind == "pseudo" and a.labeller not in ("reward_model", "judge", "gold"):
            raise ConfigError(f"arms[{i}].labeller: expected reward_model, judge or gold, got {a.labeller!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"arms: names must be unique, got {names}")
    if "initial" not in names:
        raise ConfigError("arms: an arm named 'initial' (kind initial) is required: win rate and KL are against it")
    for key in ("baseline_arm", "oracle_arm"):
        if getattr(cfg, key) not in names:
            raise ConfigError(f"{key}: '{getattr(cfg, key)}' is not one of the arms ({', '.join(names)})")
    return arms


def _jsonl(path: Path, rows: list[dict]) -> str:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def _read(path: str, n: int | None) -> list[dict]:
    rows = [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]
    return rows[:n] if n else rows


class ShiftBench:
    def __init__(self, cfg: ShiftBenchConfig, log=print):
        self.cfg, self.log = cfg, log
        self.arms = parse_arms(cfg)
        self.root = Path(cfg.output_dir)
        self.stage = Stages(self.root, 4 + len(self.arms), log, config=cfg)

    # ---- shared stages ------------------------------------------------------------------------
    def data(self) -> dict:
        cfg, d = self.cfg, self.cfg.data
        out = self.root / "data"
        files = {"target_prompts": _jsonl(out / "target_prompts.jsonl", _read(d.target_prompts, d.n_target)),
                 "eval_prompts": _jsonl(out / "eval_prompts.jsonl", _read(d.eval_prompts, d.n_eval))}
        if d.source_pairs:
            pairs = _read(d.source_pairs, d.n_source)
        else:
            from shiftalign.models.load import load_policy
            from shiftalign.rl.scorers import make_scorer

            model, tok = load_policy(copy.deepcopy(cfg.model))
            model.eval()
            prompts = [r["prompt"] for r in _read(d.source_prompts, d.n_source)]
            pairs = gold_labelled_pairs(model, tok, prompts, d.behaviour, make_scorer(cfg.gold),
                                        random.Random(d.behaviour.seed), log=self.log)
        files["source_pairs"] = _jsonl(out / "source_pairs.jsonl", pairs)
        info = {**files, "source_pairs_n": len(pairs), "target_prompts_n": len(_read(files["target_prompts"], None)),
                "eval_prompts_n": len(_read(files["eval_prompts"], None))}
        if pairs and "gold_chosen" in pairs[0]:
            info["source_label_agreement"] = label_agreement(pairs)
        return info

    def train(self, name: str, recipe: str, train_file: str, tcfg: TrainConfig, loss: dict, **extra) -> dict:
        cfg = self.cfg
        rc = RunConfig(recipe=recipe, output_dir=str(self.root / name), seed=cfg.seed, model=copy.deepcopy(cfg.model),
                       data=DataConfig(train=train_file, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length,
                                       wrap_text_as_chat=cfg.wrap_text_as_chat, weights=extra.pop("weights", None)),
                       train=copy.deepcopy(tcfg), loss=dict(loss), **extra)
        rc.train.progress = cfg.progress
        res = RECIPES.get(recipe).main(rc)
        return {"model": str(self.root / name / "model"), "steps": res["steps"], "final_loss": res["train"].get("loss")}

    def policy_samples(self, prompts: str) -> dict:
        cfg = self.cfg
        sampling = copy.deepcopy(cfg.policy_sampling)
        sampling.seed += 1  # the seed of round 1 of a pseudo-label arm: the samples are shared with it
        sc = SampleConfig(prompts=prompts, output=str(self.root / "policy_samples" / "samples.jsonl"),
                          policy=copy.deepcopy(cfg.model), sampling=sampling, wrap_text_as_chat=cfg.wrap_text_as_chat,
                          progress=cfg.progress)
        sample_main(sc, self.log)
        return {"samples": sc.output}

    # ---- arms ---------------------------------------------------------------------------------
    def arm(self, a: ArmSpec, ctx: dict) -> dict:
        info = {"initial": self.arm_initial, "dpo": self.arm_dpo, "pseudo": self.arm_pseudo,
                "rl": self.arm_rl}[a.kind](a, ctx)
        drop_checkpoints(self.root / a.name)
        return info

    def _dpo_train(self, a: ArmSpec) -> TrainConfig:
        t = copy.deepcopy(self.cfg.dpo_train)
        return from_dict(TrainConfig, {**json.loads(json.dumps(t.__dict__)), **a.train}, f"arms.{a.name}.train.")

    def arm_initial(self, a: ArmSpec, ctx: dict) -> dict:
        return {"model": self.cfg.model.path}  # as configured ("default" stays "default": no machine path)

    def arm_dpo(self, a: ArmSpec, ctx: dict) -> dict:
        cfg, info, extra = self.cfg, {}, {}
        if a.estimator:
            wc = WeightsConfig(source=ctx["source_pairs"], target=ctx["samples"], output_dir=str(self.root / "weights" / a.name),
                               pair_mode=cfg.pair_mode, features=copy.deepcopy(cfg.features), estimator=dict(a.estimator),
                               stabilise=from_dict(StabiliserConfig, {**cfg.stabilise.__dict__, **a.stabilise},
                                                   f"arms.{a.name}.stabilise."))
            d = weights_main(wc, self.log)
            extra["weights"] = str(Path(wc.output_dir) / "weights.jsonl")
            info.update({k: d.get(k) for k in ("ess_fraction", "ess_fraction_raw", "largest_share",
                                                "domain_auc_before", "domain_auc_after")})
        if a.policy_ratio is not None:
            extra["policy_ratio"] = from_dict(PolicyRatioConfig, a.policy_ratio, f"arms.{a.name}.policy_ratio.")
        res = self.train(a.name, "preference", ctx["source_pairs"], self._dpo_train(a), cfg.dpo_loss, **extra)
        if a.policy_ratio is not None:
            ess = [m["weight_ess_fraction"] for m in _metrics(self.root / a.name) if "weight_ess_fraction" in m]
            info["ess_fraction"] = sum(ess) / len(ess) if ess else None
        return {**res, **info}

    def arm_pseudo(self, a: ArmSpec, ctx: dict) -> dict:
        cfg = self.cfg
        out = self.root / a.name
        labeller = {"reward_model": "reward_model", "judge": "judge", "gold": "scorer"}[a.labeller]
        label = {"labeller": labeller, "seed": cfg.seed, "progress": cfg.progress}
        if labeller == "reward_model":
            label["reward_model"] = {"models": [ctx["reward_model"]], "pairs": a.pairs, "margin": a.margin,
                                     "wrap_text_as_chat": cfg.wrap_text_as_chat}
        elif labeller == "scorer":
            label["scorer"] = {"scorer": dict(cfg.gold), "pairs": a.pairs, "margin": a.margin}
        else:
            label["judge"] = {"pairs": "random", **a.judge}
        train = RunConfig(recipe="preference", seed=cfg.seed, model=copy.deepcopy(cfg.model), loss=dict(cfg.dpo_loss),
                          data=DataConfig(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length,
                                          wrap_text_as_chat=cfg.wrap_text_as_chat),
                          train=self._dpo_train(a))
        train.train.progress = cfg.progress
        it = IterateConfig(output_dir=str(out), rounds=a.rounds, prompts=ctx["target_prompts"], reference=a.reference,
                           sample=SampleConfig(sampling=copy.deepcopy(cfg.policy_sampling),
                                               wrap_text_as_chat=cfg.wrap_text_as_chat, progress=cfg.progress),
                           label=from_dict(LabelConfig, label, f"arms.{a.name}."), train=train,
                           mix_source=ctx["source_pairs"] if a.mix_source else None,
                           round1_samples=ctx["samples"])  # round 1 samples the initial policy with the shared seed
        try:
            history = iterate_main(it, self.log)
        except NoPairsError as e:  # recorded, shown in the results, and left out of the evaluation
            self.log(f"[shiftalign] arm {a.name}: {e}")
            return {"model": None, "failed": str(e)}
        rounds = [{"round": h["round"], "pairs": h["labels"]["pairs"], "unlabelled": h["labels"]["unlabelled"],
                   "label_accuracy": pair_label_accuracy(Path(h["samples"]).parent / "labels" / "pseudo_pairs.jsonl",
                                                         cfg.gold)} for h in history]
        return {"model": history[-1]["model"], "rounds": rounds, "pseudo_pairs": sum(r["pairs"] for r in rounds),
                "label_accuracy": _mean([r["label_accuracy"] for r in rounds])}

    def arm_rl(self, a: ArmSpec, ctx: dict) -> dict:
        cfg = self.cfg
        base = {"output_dir": str(self.root / a.name), "seed": cfg.seed, "prompts": ctx["target_prompts"],
                "wrap_text_as_chat": cfg.wrap_text_as_chat, "max_prompt_length": cfg.max_prompt_length,
                "progress": cfg.progress,
                "scorer": {"name": "reward_model", "path": ctx["reward_model"], "wrap_text_as_chat": cfg.wrap_text_as_chat}}
        rc = from_dict(RLConfig, {**base, **a.rl}, f"arms.{a.name}.rl.")
        rc.model = copy.deepcopy(cfg.model)
        last = RECIPES.get("rl").main(rc)
        return {"model": str(self.root / a.name / "model"), "iterations": rc.iterations,
                "final_reward_model_score": last.get("reward_mean") if isinstance(last, dict) else None}

    # ---- the whole benchmark --------------------------------------------------------------------
    def run(self) -> dict:
        from summary import write_summary

        cfg = self.cfg
        write_text_atomic(self.root / "config.yaml", dump_config(cfg))
        data = self.stage("data", self.data)
        rm = self.stage("reward", lambda: drop_checkpoints(self.root / "reward", self.train(
            "reward", "reward", data["source_pairs"], cfg.reward_train, {"name": "bradley_terry"})))
        smp = self.stage("policy_samples", lambda: self.policy_samples(data["target_prompts"]))
        ctx = {**data, "reward_model": rm["model"], "samples": smp["samples"]}
        arms = {a.name: self.stage(f"arm_{a.name}", lambda a=a: self.arm(a, ctx)) for a in self.arms}

        def evaluate():
            ec = copy.deepcopy(cfg.evaluate)
            ec.prompts, ec.output_dir, ec.progress = data["eval_prompts"], str(self.root / "evaluate"), cfg.progress
            ec.policies = {n: r["model"] for n, r in arms.items() if r.get("model")}
            ec.baseline, ec.compare_to, ec.reward_model, ec.gold = "initial", cfg.baseline_arm, rm["model"], dict(cfg.gold)
            ec.wrap_text_as_chat = cfg.wrap_text_as_chat
            evaluate_main(ec, self.log)
            return {"file": str(self.root / "evaluate" / "evaluation.json")}

        ev = self.stage("evaluate", evaluate)
        evaluation = json.loads(Path(ev["file"]).read_text())
        return write_summary(self.root, cfg, self.stage.records, data, arms, evaluation, self.log)


def drop_checkpoints(run_dir: Path, result=None):
    """Remove the checkpoints of a finished stage (they serve resumption inside it; ~1.6 GB each for a
    135M model with its optimiser state); the final model stays. Returns ``result`` unchanged."""
    for d in sorted(run_dir.rglob("checkpoints")) if run_dir.exists() else []:
        shutil.rmtree(d, ignore_errors=True)
    return result


def _metrics(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.exists() else []


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def pair_label_accuracy(pairs_file: Path, gold: dict) -> float | None:
    """Fraction of labelled pairs whose chosen response has the higher gold score (gold ties excluded)."""
    from shiftalign.data.tokenize import _response_text
    from shiftalign.reweight.pairs import text_of
    from shiftalign.rl.scorers import make_scorer

    rows = [json.loads(l) for l in pairs_file.read_text().splitlines() if l.strip()] if pairs_file.exists() else []
    if not rows:
        return None
    fn = make_scorer(dict(gold))
    prompts = [text_of(r["prompt"]) for r in rows]
    c = fn(prompts, [_response_text(r["chosen"]) for r in rows])
    r_ = fn(prompts, [_response_text(r["rejected"]) for r in rows])
    decided = [(x, y) for x, y in zip(c, r_) if x != y]
    return sum(x > y for x, y in decided) / len(decided) if decided else None
