"""What the stages of an experiment see.

:class:`Setup` is what the shared stages (learning-rate calibration, the reward model) see: the
experiment's settings, its directory and its data files, with helpers that build training configs and
draw target samples from the shared settings. :class:`Context` is what an arm sees: the same, plus the
shared reward model and target samples, the arms already run, and the seed replicate being run. Both are
built whole by ``experiment.engine`` once what they hold exists; neither is filled in later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig, RunConfig, TrainConfig
from ..recipes import RECIPES
from ..recipes.common import TrainResult
from .arms import ArmResult
from .config import ExperimentConfig
from .seeds import replicate_name


@dataclass(frozen=True)
class DataFiles:
    """The data stage's outputs (paths)."""

    source_pairs: str
    target_prompts: str
    eval_prompts: str
    heldout_pairs: str | None = None  # held-out source pairs (in-domain reward-model accuracy)


@dataclass
class Setup:
    cfg: ExperimentConfig
    root: Path
    data: DataFiles

    def target_samples(self, model: str, output: Path, prompts: str | None = None) -> str:
        """Samples of ``model`` on the target prompts (or ``prompts``) as round 1 of ``recipes.iterate`` draws
        them (the experiment's policy_sampling, its seed + 1); resumable, and re-drawn if the model changed."""
        from ..rollout.sample import SampleConfig
        from ..rollout.sample import main as sample_main

        cfg = self.cfg
        sc = SampleConfig(prompts=prompts or self.data.target_prompts, output=str(output),
                          policy=dataclasses.replace(cfg.model, path=model, lora=None),
                          sampling=dataclasses.replace(cfg.policy_sampling, seed=cfg.policy_sampling.seed + 1),
                          wrap_text_as_chat=cfg.wrap_text_as_chat, replace_stale=True, progress=cfg.progress,
                          backend=cfg.backend, vllm=cfg.vllm)
        sample_main(sc)
        return sc.output

    def run_config(self, recipe: str, output_dir: Path | None, train_file: str | None, train: TrainConfig,
                   loss: dict, **extra) -> RunConfig:
        """A training run on the initial policy with the experiment's data settings (``extra``: data
        fields such as ``weights``, or run fields such as ``policy_ratio``). Runs of the same content share
        one training (``recipes.reuse``, indexed in ``<root>/trained``)."""
        cfg = self.cfg
        data_keys = {f.name for f in dataclasses.fields(DataConfig)}
        data = DataConfig(train=train_file or "", max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length,
                          wrap_text_as_chat=cfg.wrap_text_as_chat,
                          **{k: v for k, v in extra.items() if k in data_keys})
        return RunConfig(recipe=recipe, output_dir=str(output_dir or ""), seed=cfg.seed, reuse=str(self.root / "trained"),
                         model=dataclasses.replace(cfg.model), data=data,
                         train=dataclasses.replace(train, progress=cfg.progress), loss=dict(loss),
                         **{k: v for k, v in extra.items() if k not in data_keys})

    def train(self, rc: RunConfig) -> TrainResult:
        """Run a training config with its recipe."""
        return RECIPES.get(rc.recipe).main(rc)


@dataclass
class Context(Setup):
    reward_model: str = ""  # the shared reward model (trained on the source pairs)
    samples: str = ""  # the initial policy's samples on the target prompts
    arms: dict[str, ArmResult] = field(default_factory=dict)  # replicate name -> result, of the arms run so far
    replicate: int = 0  # seed offset of the arm being run (experiment.seeds)

    def for_replicate(self, k: int) -> Context:
        """The context of seed replicate k: seed and sampling seed offset by k; the same shared outputs."""
        cfg = dataclasses.replace(self.cfg, seed=self.cfg.seed + k,
                                  policy_sampling=dataclasses.replace(self.cfg.policy_sampling,
                                                                      seed=self.cfg.policy_sampling.seed + k))
        return dataclasses.replace(self, cfg=cfg, replicate=k)

    def arm_name(self, name: str) -> str:
        """The replicate of an earlier arm that this replicate builds on: the one of the same seed when
        it has one, else its first."""
        own = replicate_name(name, self.replicate)
        return own if own in self.arms else name

    def arm(self, name: str) -> ArmResult:
        """An earlier arm's result (the replicate ``arm_name`` picks)."""
        return self.arms[self.arm_name(name)]

    def samples_of(self, name: str) -> str:
        """Round 1's samples of an arm that starts from earlier arm ``name``'s policy: drawn once into
        ``policy_samples/<replicate>/`` and shared by every arm that starts there (the same samples they
        would each draw, so arms of one warm start differ only in their labels and what follows)."""
        replicate = self.arm_name(name)
        return self.target_samples(self.arms[replicate].model, self.root / "policy_samples" / replicate /
                                   "samples.jsonl")
