"""``rl``: online RL (PPO / RLOO / GRPO, ``recipes.rl``) from the initial policy on the target prompts,
against the experiment's reward model (trained on the source pairs): the RLHF baseline of Ouyang
et al., 2022, whose reward model is used off its training domain; with ``reward_from``, against the
importance-weighted reward model of an earlier ``pseudo`` arm. Diagnostics: the reward model's mean
score in the last iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...config import from_dict
from ...errors import ConfigError
from ...recipes import RECIPES
from ...recipes.rl import RLConfig
from . import ArmKind, ArmResult, register

SET_BY_THE_EXPERIMENT = ("output_dir", "seed", "model", "prompts", "wrap_text_as_chat", "max_prompt_length", "scorer")


@dataclass
class RLOptions:
    rl: dict = field(default_factory=dict)  # fields of recipes.rl.RLConfig: algorithm, iterations, lr, sampling, ...
    reward_from: str | None = None  # an earlier pseudo arm whose importance-weighted reward model to optimise

    def arm_refs(self) -> list[str]:
        return [self.reward_from] if self.reward_from else []

    def __post_init__(self):
        fixed = sorted(set(self.rl) & set(SET_BY_THE_EXPERIMENT))
        if fixed:
            raise ConfigError(f"rl: {', '.join(fixed)} are set by the experiment, not per arm")
        from_dict(RLConfig, self.rl, "rl")


def run(ctx, name: str, opts: RLOptions) -> ArmResult:
    cfg = ctx.cfg
    reward_model = ctx.shared.reward_model
    if opts.reward_from:
        reward_model = ctx.arm(opts.reward_from).files.get("reward_model")
        if not reward_model:
            raise ConfigError(f"arms.{name}.reward_from: arm '{opts.reward_from}' trained no reward model of its own")
    rc = from_dict(RLConfig, {**opts.rl, "output_dir": str(ctx.root / name), "seed": cfg.seed,
                              "prompts": ctx.shared.target_prompts, "wrap_text_as_chat": cfg.wrap_text_as_chat,
                              "max_prompt_length": cfg.max_prompt_length, "progress": cfg.progress,
                              "scorer": {"name": "reward_model", "path": reward_model,
                                         "wrap_text_as_chat": cfg.wrap_text_as_chat}}, f"arms.{name}.rl")
    rc = replace(rc, model=replace(cfg.model))
    res = RECIPES.get("rl").main(rc)
    return ArmResult(model=res.model, diagnostics={"iterations": res.steps,
                                                   "final_reward_model_score": res.train.get("reward_mean")})


register(ArmKind("rl", RLOptions, run))
