"""``rl``: online RL (PPO / RLOO / GRPO, ``recipes.rl``) from the initial policy on the target prompts,
against the experiment's reward model (trained on the source pairs): the RLHF baseline of Ouyang
et al., 2022, whose reward model is used off its training domain; with ``reward_from``, against the
importance-weighted reward model of an earlier ``pseudo`` arm. Diagnostics: the reward model's mean
score in the last iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...errors import ConfigError
from ...recipes import RECIPES
from ...train.rl_config import RLConfig
from .spec import ArmKind, ArmResult, register

SET_BY_THE_EXPERIMENT = ("output_dir", "seed", "model", "prompts", "wrap_text_as_chat", "max_prompt_length", "scorer")


@dataclass
class RLOptions:
    rl: RLConfig = field(default_factory=RLConfig)  # the rl recipe's settings but those the experiment sets
    reward_from: str | None = None  # an earlier pseudo arm whose importance-weighted reward model to optimise

    def arm_refs(self) -> list[str]:
        return [self.reward_from] if self.reward_from else []

    def __post_init__(self):
        fixed = [f for f in SET_BY_THE_EXPERIMENT if getattr(self.rl, f) != getattr(RLConfig(), f)]
        if fixed:
            raise ConfigError(f"rl: {', '.join(fixed)} are set by the experiment, not per arm")

    @staticmethod
    def key_form(written: dict) -> dict:
        """The stage key reads ``rl`` in the flat form it was written in before the rl recipe shared the
        offline ``train:`` section (``RLConfig.MOVED``), so runs made before keep their keys."""
        rl = dict(written["rl"])
        flat = {**{k: v for k, v in rl.items() if k != "train"}, **rl.get("train", {})}
        old_name = {new.split(".")[-1]: old for old, new in RLConfig.MOVED.items()}
        return {**written, "rl": {old_name.get(k, k): v for k, v in flat.items()}}


def run(ctx, name: str, opts: RLOptions) -> ArmResult:
    cfg = ctx.cfg
    reward_model = ctx.reward_model
    if opts.reward_from:
        reward_model = ctx.arm(opts.reward_from).files.get("reward_model")
        if not reward_model:
            raise ConfigError(f"arms.{name}.reward_from: arm '{opts.reward_from}' trained no reward model of its own")
    rc = replace(opts.rl, output_dir=str(ctx.root / name), seed=cfg.seed, model=replace(cfg.model),
                 prompts=ctx.data.target_prompts, wrap_text_as_chat=cfg.wrap_text_as_chat,
                 max_prompt_length=cfg.max_prompt_length,
                 scorer={"name": "reward_model", "path": reward_model, "wrap_text_as_chat": cfg.wrap_text_as_chat},
                 train=replace(opts.rl.train, progress=cfg.progress))
    res = RECIPES.get("rl").main(rc)
    return ArmResult(model=res.model, diagnostics={"iterations": res.steps,
                                                   "final_reward_model_score": res.train.get("reward_mean")})


register(ArmKind("rl", RLOptions, run))
