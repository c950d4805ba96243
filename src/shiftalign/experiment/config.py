"""The experiment config: shared data and training settings, then a list of arms.

An arm is ``{name, kind, ...}``; ``kind`` picks an entry of :data:`..arms.ARMS` and the remaining keys
are read into that kind's own options dataclass, so a wrong key names the arm and the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace

from ..config import ModelConfig, TrainConfig, coerce, from_dict, to_dict
from ..errors import ConfigError
from ..models.features import FeatureConfig
from ..recipes.evaluate import EvaluateConfig
from ..reweight.stabilize import StabiliserConfig
from ..rollout.behaviour import BehaviourConfig
from ..rollout.params import SamplingParams, VLLMConfig
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
    backend: str = "decode"  # the sampling backend of the policies' target samples (shared, every round, the
    # calibration): decode | hf | vllm; the evaluation's is evaluate.backend
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # with backend vllm: the engine's settings
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
    options: object  # the kind's options dataclass, typed and merged with the experiment's shared settings
    seeds: int = 1  # replicates trained with seed offsets 0..seeds-1 (experiment.seeds)
    oracle: str | None = None  # the arm of this arm's recipe with gold labels: its gap-recovery ratio is read
    # against that arm instead of the experiment's oracle_arm (e.g. a warm-started, iterated oracle)
    matched_baseline: str | None = None  # an arm trained as long as this one without information about the target
    # (e.g. dpo_source_long for an arm of 120 steps): its difference and gap recovery are also read against that arm,
    # so that a gain is not more training alone
    written: dict = field(default_factory=dict)  # the kind's options as the config writes them (the stage key)
    role: str = "method"  # method | control | oracle | reference (experiment.arms.arm_role)


REFS = ("oracle", "matched_baseline")  # an arm's own readings against other arms (not options of its kind)


def resolve_options(cls: type, written: dict, cfg: ExperimentConfig, where: str):
    """An arm kind's typed options from its keys as written, each field named in the kind's ``INHERITS``
    (option path -> experiment field) starting from the experiment's value: a sub-config's fields are
    overridden by the arm's mapping, a plain value is replaced when the arm sets it."""
    import copy

    spec = copy.deepcopy(written)
    for path, shared_field in getattr(cls, "INHERITS", {}).items():
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue  # the sub-config that would hold it is not used by this arm
        shared = getattr(cfg, shared_field)
        if dataclasses.is_dataclass(shared):
            own = node.get(leaf) or {}
            if not isinstance(own, dict):
                raise ConfigError(f"{where}.{path}: expected a mapping of overrides of {shared_field}, got {own!r}")
            node[leaf] = {**to_dict(shared), **own}
        elif node.get(leaf) is None:
            node[leaf] = shared
    return from_dict(cls, spec, where)


def written_form(cls: type, written: dict) -> dict:
    """Every option field of a kind, as written or else its default in written form (a sub-config that is
    not written: {}): what an arm's stage key fingerprints, so filling in defaults never changes a key."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in written:
            value = written[f.name]
            out[f.name] = value if isinstance(value, dict) else coerce(value, hints[f.name], f.name)
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            value = f.default_factory()
            out[f.name] = {} if dataclasses.is_dataclass(value) else value
    return cls.key_form(out) if hasattr(cls, "key_form") else out


def _arm(spec, i: int, cfg: ExperimentConfig, earlier: list[str]) -> Arm:
    from .arms import ARMS, arm_refs, arm_role

    if not isinstance(spec, dict) or not spec.get("name"):
        raise ConfigError(f"arms[{i}]: expected a mapping with a name and a kind, got {spec!r}")
    kind = spec.get("kind", "")
    if kind not in ARMS.names():
        raise ConfigError(f"arms[{i}].kind: expected one of {', '.join(ARMS.names())}, got {kind!r}")
    where = f"arms.{spec['name']}"
    written = {k: v for k, v in spec.items() if k not in ("name", "kind", "seeds", *REFS)}
    seeds = spec.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}.seeds: expected a whole number >= 1, got {seeds!r}")
    if "@" in spec["name"]:
        raise ConfigError(f"{where}: '@' is kept for seed replicates (name@k); choose another name")
    try:
        options = resolve_options(ARMS.get(kind).options, written, cfg, where)
    except ConfigError as e:
        raise ConfigError(str(e) if where in str(e) else f"{where}.{e}") from None
    for ref in arm_refs(options):  # options naming other arms name earlier ones
        if ref not in earlier:
            raise ConfigError(f"{where}: '{ref}' is not an arm listed before it")
    return Arm(spec["name"], kind, options, seeds, *(spec.get(r) for r in REFS), written=written,
               role=arm_role(options))


def parse_arms(cfg: ExperimentConfig) -> list[Arm]:
    """The config's arms, typed: each kind's options parsed once, merged with the experiment's shared
    settings (``resolve_options``), with its role; references between arms checked."""
    arms: list[Arm] = []
    for i, spec in enumerate(cfg.arms):
        arms.append(_arm(spec, i, cfg, [a.name for a in arms]))
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


def rebase(arms: list[Arm], cfg: ExperimentConfig) -> list[Arm]:
    """The same arms resolved against changed shared settings (e.g. the calibrated ``dpo_train.lr``): an
    arm's own setting still wins."""
    from .arms import ARMS

    return [replace(a, options=resolve_options(ARMS.get(a.kind).options, a.written, cfg, f"arms.{a.name}"))
            for a in arms]


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
