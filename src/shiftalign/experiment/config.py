"""The experiment config: shared data and training settings, then a list of arms.

An arm is ``{name, kind, ...}``; ``kind`` picks an entry of :data:`..arms.ARMS` and the remaining keys
are read into that kind's own options dataclass, so a wrong key names the arm and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..config import ModelConfig, TrainConfig, from_dict, to_dict
from ..errors import ConfigError
from ..recipes.evaluate import EvaluateConfig
from ..reweight.features import FeatureConfig
from ..reweight.stabilize import StabiliserConfig
from ..rollout.behaviour import BehaviourConfig
from ..rollout.sample import SamplingParams
from .calibrate import LRCalibration
from .rewards import RewardSpec


@dataclass
class DataSpec:
    source_prompts: str = "data/shift/source_prompts.jsonl"
    target_prompts: str = "data/shift/target_prompts.jsonl"
    eval_prompts: str = "data/shift/target_eval_prompts.jsonl"
    n_source: int | None = None  # first n rows of each file (null: all)
    n_target: int | None = None
    n_eval: int | None = None
    source_pairs: str | None = None  # a ready pairs file instead of building them with the behaviour policy
    heldout_pairs: str | None = None  # held-out source pairs (gold_chosen / gold_rejected, else gold-scored):
    # each reward model's in-domain accuracy, against which its on-policy accuracy gives the shift cost
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)


@dataclass
class ExperimentConfig:
    output_dir: str = "runs/experiment"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)  # the initial policy
    gold: dict = field(default_factory=lambda: {"name": "vader"})  # a registered scorer or {name: python, function}
    data: DataSpec = field(default_factory=DataSpec)
    wrap_text_as_chat: bool = True
    max_length: int = 256
    max_prompt_length: int = 128
    reward_model: RewardSpec = field(default_factory=RewardSpec)  # finetune (with reward_train) | heads
    reward_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=2, save_every=8))
    dpo_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=2, save_every=8))
    dpo_loss: dict = field(default_factory=lambda: {"name": "dpo", "beta": 0.1})
    lr_calibration: LRCalibration | None = None  # set: dpo_train.lr is the largest candidate at which source-only
    # DPO stays within a KL budget of the initial policy (experiment.calibrate); null: dpo_train.lr as written
    policy_sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=4, max_new_tokens=48,
                                                                                  temperature=0.8))
    pair_mode: str = "both"  # how a source pair is embedded for density-ratio estimation
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stabilise: StabiliserConfig = field(default_factory=lambda: StabiliserConfig(clip_quantile=0.99))
    arms: list = field(default_factory=list)  # of {name, kind, <options of the kind>} mappings
    only_arms: list | None = None  # run just these arms (with the initial, baseline and oracle arms and the arms
    # they build on); the others wait for a later run in the same directory, which reuses what is done
    max_seeds: int | None = None  # run at most this many seed replicates of each arm now; a later run in the same
    # directory without it adds the others
    baseline_arm: str = "dpo_source"  # differences and the gap-recovery ratio are against this arm
    oracle_arm: str | None = "oracle"  # the arm trained on gold labels of the target (null: none)
    evaluate: EvaluateConfig = field(default_factory=lambda: EvaluateConfig(
        sampling=SamplingParams(n=4, max_new_tokens=48, temperature=0.7), bootstrap=2000))
    progress: bool = True


@dataclass
class Arm:
    name: str
    kind: str
    options: object  # the kind's options dataclass
    seeds: int = 1  # replicates trained with seed offsets 0..seeds-1 (experiment.seeds)
    oracle: str | None = None  # the arm of this arm's recipe with gold labels: its gap-recovery ratio is read
    # against that arm instead of the experiment's oracle_arm (e.g. a warm-started, iterated oracle)
    matched_baseline: str | None = None  # an arm trained as long as this one without information about the target
    # (e.g. dpo_source_long for an arm of 120 steps): its difference and gap recovery are also read against that arm,
    # so that a gain is not more training alone


REFS = ("oracle", "matched_baseline")  # an arm's own readings against other arms (not options of its kind)


def parse_arms(cfg: ExperimentConfig) -> list[Arm]:
    from .arms import ARMS, arm_refs

    arms = []
    for i, spec in enumerate(cfg.arms):
        if not isinstance(spec, dict) or not spec.get("name"):
            raise ConfigError(f"arms[{i}]: expected a mapping with a name and a kind, got {spec!r}")
        kind = spec.get("kind", "")
        if kind not in ARMS.names():
            raise ConfigError(f"arms[{i}].kind: expected one of {', '.join(ARMS.names())}, got {kind!r}")
        where = f"arms.{spec['name']}"
        rest = {k: v for k, v in spec.items() if k not in ("name", "kind", "seeds", *REFS)}
        seeds = spec.get("seeds", 1)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"{where}.seeds: expected a whole number >= 1, got {seeds!r}")
        if "@" in spec["name"]:
            raise ConfigError(f"{where}: '@' is kept for seed replicates (name@k); choose another name")
        try:
            options = from_dict(ARMS.get(kind).options, rest, where)
            if isinstance(getattr(options, "train", None), dict):  # checked now, not when the arm's turn comes
                from_dict(TrainConfig, {**to_dict(cfg.dpo_train), **options.train}, f"{where}.train")
        except ConfigError as e:
            raise ConfigError(str(e) if where in str(e) else f"{where}.{e}") from None
        for ref in arm_refs(options):  # options naming other arms name earlier ones
            if ref not in [a.name for a in arms]:
                raise ConfigError(f"{where}: '{ref}' is not an arm listed before it")
        arms.append(Arm(spec["name"], kind, options, seeds, *(spec.get(r) for r in REFS)))
    names = [a.name for a in arms]
    for a in arms:
        for ref in REFS:
            value = getattr(a, ref)
            if value is not None and value not in names:
                raise ConfigError(f"arms.{a.name}.{ref}: '{value}' is not one of the arms ({', '.join(names)})")
    unknown = [n for n in cfg.only_arms or [] if n not in names]
    if unknown:
        raise ConfigError(f"only_arms: {', '.join(map(str, unknown))} not among the arms ({', '.join(names)})")
    if cfg.max_seeds is not None and (isinstance(cfg.max_seeds, bool) or not isinstance(cfg.max_seeds, int)
                                      or cfg.max_seeds < 1):
        raise ConfigError(f"max_seeds: expected a whole number >= 1, got {cfg.max_seeds!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"arms: names must be unique, got {names}")
    if not any(a.kind == "initial" for a in arms):
        raise ConfigError("arms: an arm of kind 'initial' is required: win rate and KL are measured against it")
    for key in ("baseline_arm", "oracle_arm"):
        value = getattr(cfg, key)
        if value is not None and value not in names:
            raise ConfigError(f"{key}: '{value}' is not one of the arms ({', '.join(names)})")
    return arms


def selected_arms(arms: list[Arm], cfg: ExperimentConfig) -> list[Arm]:
    """The arms to run now, in config order, each with at most ``max_seeds`` replicates: ``only_arms`` (all
    when unset) with the initial, baseline and oracle arms (the experiment's and each selected arm's own oracle
    and matched baseline) and, transitively, the arms they build on (``arm_refs``)."""
    from .arms import arm_refs

    if cfg.max_seeds is not None:
        arms = [replace(a, seeds=min(a.seeds, cfg.max_seeds)) for a in arms]
    if cfg.only_arms is None:
        return arms
    by_name = {a.name: a for a in arms}
    want = set(cfg.only_arms) | {a.name for a in arms if a.kind == "initial"} | {cfg.baseline_arm, cfg.oracle_arm}
    want |= {getattr(by_name[n], r) for n in list(want) if n in by_name for r in REFS if getattr(by_name[n], r)}
    todo = [n for n in want if n in by_name]
    while todo:
        for ref in arm_refs(by_name[todo.pop()].options):
            if ref not in want:
                want.add(ref)
                todo.append(ref)
    return [a for a in arms if a.name in want]
