"""The online RL loop's configuration (``recipe: rl``, read by ``train.online.RLTrainer``).

Optimisation settings are the offline loop's ``train:`` section (``config.TrainConfig``): learning
rate, AdamW betas and weight decay, schedule and warm-up, gradient clipping, resume, checkpoint
cadence and count, trackers, progress bar, with the same meaning and the same optimiser and schedule
builder (``train.optim``). What only RL has (iterations, rollouts, minibatches, KL, the algorithm,
sampling, penalties) is on ``RLConfig`` itself.

Units: ``train.save_every`` counts iterations (the last one is always saved); ``train.warmup_steps``
and the schedule count optimiser steps, as offline: one per minibatch, so a run takes
``iterations x epochs_per_rollout x ceil(prompts_per_iteration / (minibatch_size // sampling.n))``.

The offline fields that size an epoch over a fixed data set (``batch_size``, ``micro_batch_size``,
``epochs``, ``max_steps``, ``log_every``, ``eval_every``, ``reference_batch_size``) have no meaning
here; setting one is an error that names what to set instead.

    cfg = load_config("configs/rl.yaml", ["train.lr=1e-6", "train.warmup_steps=4"], RLConfig)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError
from ..rollout.params import SamplingParams

# Offline-only fields of TrainConfig -> what an RL config sets instead.
NOT_FOR_RL = {
    "batch_size": "prompts_per_iteration and sampling.n size a rollout, minibatch_size an optimiser step",
    "micro_batch_size": "minibatch_size sets the samples per optimiser step",
    "epochs": "epochs_per_rollout sets the passes over each rollout, iterations the length of the run",
    "max_steps": "iterations sets the length of the run",
    "log_every": "every iteration is logged",
    "eval_every": "the rl recipe has no evaluation set",
    "reference_batch_size": "the reference is run on each rollout, with its minibatches",
    "snapshots": "the rl recipe saves no frontier snapshots",
}


@dataclass
class KLConfig:
    coef: float = 0.05  # beta
    estimator: str = "k1"  # k1 | k3 (per-token estimator used in the reward / metrics)
    target: float | None = None  # set: adaptive coefficient (Ziegler et al., 2019) toward this sequence KL
    horizon: int = 10000


@dataclass
class RLTrainConfig(TrainConfig):
    """``TrainConfig`` with the rl recipe's defaults, those it had before the schema was shared: a
    constant learning rate of 1e-6 and a checkpoint every 10 iterations."""

    lr: float = 1e-6
    schedule: str = "constant"  # cosine | linear | constant (all after warm-up), over optimiser steps
    save_every: int = 10  # in iterations; 0: checkpoint only at the end

    def __post_init__(self):
        defaults = TrainConfig()
        for name, instead in NOT_FOR_RL.items():
            if getattr(self, name) != getattr(defaults, name):
                raise ConfigError(f"train.{name} is not used by the rl recipe ({instead}); remove it")


@dataclass
class RLConfig:
    recipe: str = "rl"
    output_dir: str = "runs/rl"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    reference: str | None = None  # default: the policy's starting weights (LoRA: adapter disabled)
    prompts: str = ""
    wrap_text_as_chat: bool = False
    max_prompt_length: int = 256
    algorithm: dict = field(default_factory=lambda: {"name": "rloo"})  # name + that algorithm's parameters
    scorer: dict = field(default_factory=lambda: {"name": "reward_model", "path": ""})
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=4, max_new_tokens=64))
    prompts_per_iteration: int = 8
    iterations: int = 20
    epochs_per_rollout: int = 1  # passes of minibatch updates over each rollout's samples
    minibatch_size: int = 16  # samples per optimiser step
    kl: KLConfig = field(default_factory=KLConfig)
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = None  # subtracted from the score of a response without EOS
    length_penalty: float = 0.0  # subtracted per response token
    prompt_weights: str | None = None  # weights file keyed by prompt id
    # Optimiser, schedule, clipping, resume, checkpoints, trackers, progress: the offline loop's train: section
    train: RLTrainConfig = field(default_factory=RLTrainConfig)

    # Keys of the flat schema before train: was shared -> where they are now (named in the unknown-key error).
    MOVED = {"lr": "train.lr", "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
             "save_every": "train.save_every", "keep_checkpoints": "train.keep_checkpoints",
             "keep_optimizer_state": "train.keep_optimizer_state", "report_to": "train.report_to",
             "progress": "train.progress", "epochs": "epochs_per_rollout"}

    def __post_init__(self):
        for name in ("prompts_per_iteration", "epochs_per_rollout", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def updates_per_iteration(self) -> int:
        """Optimiser steps per iteration: ``epochs_per_rollout`` passes over the rollout's prompts, a
        minibatch being ``minibatch_size // sampling.n`` whole prompts (at least one)."""
        rows = max(1, self.minibatch_size // self.sampling.n)
        return self.epochs_per_rollout * -(-self.prompts_per_iteration // rows)
