"""Recipe ``rl``: online RLHF (PPO, RLOO, GRPO) driven by a reward model or any scalar scorer.

Each iteration: sample k responses for a batch of prompts from the current policy (shiftalign's own
decode loop, ``rollout.decode``, which also returns each drawn token's log-prob under the tempered
policy), score them (``rl.scorers``), add penalties (missing EOS, length), compute the KL to the
reference per token (k1 or k3; fixed or adaptive coefficient), compute advantages with the configured
algorithm (``rl/``), and update the policy over ``epochs_per_rollout`` passes of minibatches. Optional
per-prompt importance weights (a weights file keyed by prompt id, e.g. from ``shiftalign weights fit``
with ``pair_mode: prompt``) weight each sample's loss. The optimiser settings are the offline recipes'
``train:`` section (learning rate, schedule and warm-up, clipping, resume, checkpoints; see
``train.rl_config``). Checkpoints every ``train.save_every`` iterations; a rerun resumes from the
latest (``train.resume: false`` starts over). The loop itself is ``train.online.RLTrainer``.

    shiftalign train configs/rl.yaml
"""

from __future__ import annotations

from pathlib import Path

from ..log import log
from ..train import checkpoint
from ..train.online import RLTrainer
from ..train.rl_config import RLConfig
from .common import TrainResult, make_accelerator, save_final, start_output
from .spec import RECIPES, Recipe


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
    if acc.is_main_process and not cfg.train.keep_optimizer_state:
        checkpoint.remove_all(Path(cfg.output_dir) / "checkpoints")
    log(f"model: {Path(cfg.output_dir) / 'model'}; metrics: {Path(cfg.output_dir) / 'metrics.jsonl'}")
    return result


RECIPES.register("rl", Recipe(main, RLConfig))
