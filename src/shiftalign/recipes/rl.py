"""Recipe ``rl``: online RLHF (PPO, RLOO, GRPO) driven by a reward model or any scalar scorer.

Each iteration: sample k responses for a batch of prompts from the current policy (the shared
sampling code of ``rollout.sample``), score them (``rl.scorers``), add penalties (missing EOS,
length), compute the KL to the reference per token (k1 or k3; fixed or adaptive coefficient),
compute advantages with the configured algorithm (``rl/``), and update the policy over several
epochs of minibatches. Optional per-prompt importance weights (a weights file keyed by prompt id,
e.g. from ``shiftalign weights fit`` with ``pair_mode: prompt``) weight each sample's loss.
Checkpoints every ``save_every`` iterations; a rerun resumes from the latest. The loop itself is
``train.online.RLTrainer``.

    shiftalign train configs/rl.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig
from ..log import log
from ..rollout.sample import SamplingParams
from ..train import checkpoint
from ..train.online import RLTrainer
from . import RECIPES, Recipe
from .common import TrainResult, make_accelerator, save_final, start_output


@dataclass
class KLConfig:
    coef: float = 0.05  # beta
    estimator: str = "k1"  # k1 | k3 (per-token estimator used in the reward / metrics)
    target: float | None = None  # set: adaptive coefficient (Ziegler et al., 2019) toward this sequence KL
    horizon: int = 10000


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
    epochs: int = 1  # passes over each rollout
    minibatch_size: int = 16  # samples per gradient step
    lr: float = 1e-6
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    kl: KLConfig = field(default_factory=KLConfig)
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = None  # subtracted from the score of a response without EOS
    length_penalty: float = 0.0  # subtracted per response token
    prompt_weights: str | None = None  # weights file keyed by prompt id
    save_every: int = 10
    keep_checkpoints: int = 2
    keep_optimizer_state: bool = False  # keep the last checkpoint (optimiser state) of a finished run
    report_to: list[str] = field(default_factory=list)  # trackers, as train.report_to: tensorboard, wandb
    progress: bool = True


def main(cfg: RLConfig) -> TrainResult:

    acc = make_accelerator(cfg)
    trainer = RLTrainer(cfg, acc)  # validates the config, the prompts and the scorer
    finished = start_output(cfg, acc)  # claims output_dir only now; a finished run of this config is returned
    if finished is not None:
        log(f"{cfg.output_dir}: finished earlier under this configuration; nothing to do")
        return finished
    last = trainer.fit()
    result = TrainResult(model=str(Path(cfg.output_dir) / "model"), steps=trainer.iteration, train=last)
    save_final(cfg, acc, acc.unwrap_model(trainer.policy).model, trainer.tok, result)
    if acc.is_main_process and not cfg.keep_optimizer_state:
        checkpoint.remove_all(Path(cfg.output_dir) / "checkpoints")
    log(f"model: {Path(cfg.output_dir) / 'model'}; metrics: {Path(cfg.output_dir) / 'metrics.jsonl'}")
    return result


RECIPES.register("rl", Recipe(main, RLConfig))
