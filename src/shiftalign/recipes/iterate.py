"""``shiftalign iterate CONFIG``: rounds of sample -> label -> train on the policy's own samples.

Round r (directory ``output_dir/round-r``):
1. sample n responses per target prompt from the current policy (``rollout.sample``, resumable);
2. label pairs of them (``recipes.label``: reward model or LLM judge; the judge's cache makes a
   restarted round free of repeated requests);
3. train the policy on the pseudo-pairs with any loss of the DPO family (``recipes.preference``),
   optionally weighted by the labeller's confidence (``confidence_temperature``) and mixed with the
   source pairs, themselves optionally density-ratio weighted;
4. write ``round-r/done.json``; the next round starts from this round's model.
With ``refit``, the reward model that labels is re-fitted every round before step 2: density-ratio
weights of the source pairs toward this round's samples (``shiftalign weights fit``), then
importance-weighted Bradley-Terry heads on those pairs (``shiftalign heads fit``): as the policy
moves, the reward model follows it (importance-weighted empirical risk, Sugiyama et al., 2007).
The reference of round r is the initial policy (``reference: initial``, the iterative DPO of Xiong
et al., 2024, "Iterative Preference Learning from Human Feedback") or the previous round's policy
(``reference: previous``, as in Yuan et al., 2024, "Self-Rewarding Language Models").
A rerun skips finished rounds and resumes the unfinished one inside each stage.

    shiftalign iterate configs/iterate.yaml
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import RunConfig, dump_config
from ..data.load import attach_weights, load_examples, load_weights
from ..errors import ConfigError
from ..io import atomic_path, read_jsonl, write_json_atomic, write_text_atomic
from ..log import log
from ..models.packaged import resolve_model_path
from ..rollout.backends import SAMPLERS
from ..rollout.sample import SampleConfig
from ..rollout.sample import main as sample_main
from ..rundir import claim
from . import RECIPES
from .common import resolve_loss
from .label import LABELLERS, LabelConfig
from .label import main as label_main
from .reward_heads import RewardHeadsConfig
from .weights import WeightsConfig


class NoPairsError(ConfigError):
    """A round has nothing to train on: every pair was left unlabelled (see its unlabelled.jsonl)."""


@dataclass
class IterateConfig:
    output_dir: str = "runs/iterate"
    rounds: int = 2
    prompts: str = ""  # target prompts
    reference: str = "initial"  # initial | previous
    sample: SampleConfig = field(default_factory=SampleConfig)  # prompts/output/policy are set per round
    label: LabelConfig = field(default_factory=LabelConfig)  # samples/output_dir are set per round
    train: RunConfig = field(default_factory=RunConfig)  # data.train/model.path/output_dir set per round
    mix_source: str | None = None  # source preference pairs to add to every round's training set
    mix_source_pairs: int | None = None  # that many of them per round, drawn at random (seeded by round); None: all
    round1_samples: str | None = None  # complete samples of the starting policy to use as round 1's, as they are
    # (e.g. shared between the seed replicates of an experiment)
    mix_weights: str | None = None  # density-ratio weights file for the source pairs (joined on id; ids it
    # lacks follow train.data.missing_weight: error by default)
    confidence_temperature: float | None = None  # set: pseudo-pairs weighted by 2 sigmoid(margin / T) - 1
    refit: RefitConfig | None = None  # set: the labelling reward heads are re-fitted every round


@dataclass
class RefitConfig:
    """A round's reward model: ``weights`` (its ``target`` and ``output_dir`` set per round) of the
    source pairs toward the round's samples, then ``heads`` (``weights`` and ``output_dir`` set per
    round) fitted on the same pairs with them."""

    weights: WeightsConfig = field(default_factory=WeightsConfig)
    heads: RewardHeadsConfig = field(default_factory=RewardHeadsConfig)


def confidence_weight(provenance: dict, temperature: float) -> float:
    """A pseudo-pair's training weight from its labeller's confidence, 0 for a tie and toward 1 for a
    sure label: 2 sigmoid(margin / T) - 1 = tanh(margin / 2T) with the score margin of a reward model or
    scorer (Bradley-Terry logits: T = 1 reads them as they are), else 2 p - 1 with a judge's probability p.
    The margin is a magnitude: a pair reversed by ``reward_model.orient`` keeps the reward model's margin and
    so its weight."""
    import math

    if provenance.get("margin") is not None:
        return math.tanh(float(provenance["margin"]) / (2 * temperature))
    if provenance.get("confidence") is not None:
        return 2 * float(provenance["confidence"]) - 1
    raise ConfigError("confidence_temperature: a pseudo-pair has neither a margin nor a confidence to weight it by")


def source_rows(cfg: IterateConfig) -> list[dict]:
    """The source pairs to mix in, read and validated by ``data.load`` (any format it reads; ids as it
    assigns them) with their density-ratio weights joined on id under ``train.data.missing_weight``."""
    examples = load_examples(cfg.mix_source, "paired")
    if cfg.mix_weights:
        examples = attach_weights(examples, load_weights(cfg.mix_weights), cfg.mix_weights,
                                  cfg.train.data.missing_weight)
    return [{"id": e.id, "prompt": e.prompt, "chosen": e.completions[0], "rejected": e.completions[1],
             **({"weight": e.weight} if e.weight is not None else {})} for e in examples]


def _training_set(pseudo: Path, cfg: IterateConfig, out: Path, round_: int = 1) -> Path:
    rows = read_jsonl(pseudo)
    if cfg.confidence_temperature is not None:
        if not cfg.confidence_temperature > 0:
            raise ConfigError(f"confidence_temperature must be > 0, got {cfg.confidence_temperature}")
        rows = [{**r, "weight": confidence_weight(r.get("provenance", {}), cfg.confidence_temperature)} for r in rows]
    if cfg.mix_source:
        source = source_rows(cfg)
        if cfg.mix_source_pairs is not None and cfg.mix_source_pairs < len(source):
            import random

            source = random.Random(f"{cfg.train.seed}:mix:{round_}").sample(source, cfg.mix_source_pairs)
        rows += source
    if not rows:
        raise NoPairsError(f"{pseudo}: the labeller produced no pairs and there is no mix_source to train on")
    write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def refit_reward(refit: RefitConfig, samples: str, rd: Path) -> str:
    """Fit this round's importance-weighted reward heads (toward ``samples``) into ``rd/reward``."""
    from .reward_heads import main as heads_main
    from .weights import main as weights_main

    fitted = weights_main(replace(refit.weights, target=samples, output_dir=str(rd / "reward_weights")))
    heads_main(replace(refit.heads, weights=fitted.file, output_dir=str(rd / "reward")))
    return str(rd / "reward")


def main(cfg: IterateConfig) -> list[dict]:
    if cfg.reference not in ("initial", "previous"):
        raise ConfigError(f"reference must be initial or previous, got {cfg.reference!r}")
    if cfg.refit and cfg.label.labeller != "reward_model":
        raise ConfigError(f"refit: a re-fitted reward model needs label.labeller: reward_model, got "
                          f"{cfg.label.labeller!r}")
    root = Path(cfg.output_dir)
    load_examples(cfg.prompts, "prompt")  # validated before anything is written
    if cfg.mix_source:
        source_rows(cfg)
    # Every round's settings, before round 1 samples and labels (a wrong loss would otherwise stop it later).
    resolve_loss(replace(cfg.train, recipe="preference"), ("paired", "unpaired"))
    LABELLERS.get(cfg.label.labeller)
    SAMPLERS.get(cfg.sample.backend)
    if cfg.round1_samples:
        load_examples(cfg.round1_samples, "sample")
    claim(root, cfg)
    write_text_atomic(root / "config.yaml", dump_config(cfg))
    initial = resolve_model_path(cfg.train.model.path)
    policy, history = initial, []
    for r in range(1, cfg.rounds + 1):
        rd = root / f"round-{r}"
        done = rd / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
            policy = info["model"]
            history.append(info)
            log(f"round {r}: already done ({policy})")
            continue
        log(f"round {r}/{cfg.rounds}: policy {policy}")
        s = replace(cfg.sample, prompts=cfg.prompts, output=str(rd / "samples.jsonl"),
                    policy=replace(cfg.train.model, path=policy, lora=None),
                    sampling=replace(cfg.sample.sampling, seed=cfg.sample.sampling.seed + r))
        if r == 1 and cfg.round1_samples:
            # Given samples of the starting policy are round 1's as they are, whatever seed this run's own
            # sampling would use (seed replicates of an experiment share them; later rounds sample anew).
            if not Path(s.output).exists():
                rd.mkdir(parents=True, exist_ok=True)
                with atomic_path(s.output) as tmp:
                    shutil.copyfile(cfg.round1_samples, tmp)
        else:
            sample_main(s)

        lab = replace(cfg.label, samples=s.output, output_dir=str(rd / "labels"), seed=cfg.label.seed + r)
        summary_file = rd / "labels" / "label_summary.json"
        if summary_file.exists():
            label_summary = json.loads(summary_file.read_text())
        else:
            if cfg.refit:
                lab = replace(lab, reward_model=replace(lab.reward_model, models=[refit_reward(cfg.refit, s.output, rd)]))
            label_summary = label_main(lab)

        pairs = _training_set(rd / "labels" / "pseudo_pairs.jsonl", cfg, rd / "train_pairs.jsonl", r)
        t = replace(cfg.train, recipe="preference", output_dir=str(rd / "train"),
                    model=replace(cfg.train.model, path=policy),
                    reference=initial if cfg.reference == "initial" else policy,
                    data=replace(cfg.train.data, train=str(pairs)))
        result = RECIPES.get("preference").main(t)
        policy = result.model
        info = {"round": r, "model": policy, "samples": s.output, "labels": label_summary,
                "train_examples": result.data["train_examples"], "train": result.train, "eval": result.eval}
        if cfg.refit:  # the re-fitted reward model's weights: ESS, domain AUC before and after
            info["refit"] = json.loads((rd / "reward_weights" / "diagnostics.json").read_text())
        write_json_atomic(done, info)
        with open(root / "rounds.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
        history.append(info)
    log(f"iterate: {len(history)} rounds; final policy {policy}")
    return history
