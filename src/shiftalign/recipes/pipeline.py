"""``shiftalign pipeline CONFIG``: the domain-adaptation pipeline end to end, every stage cached.

Stages (each writes ``<output_dir>/stages/<name>.json`` when done; a rerun skips finished stages
and resumes an interrupted one where it stopped — sampling skips finished prompts, training
resumes from its latest checkpoint):
1. ``reward``          Bradley-Terry reward model on the source pairs;
2. ``target_samples``  samples of the initial policy on the target prompts (the target domain);
3. ``weights``         density-ratio weights of the source pairs toward those samples, with diagnostics;
4. ``dpo_source``      DPO on the source pairs alone (the baseline every method must beat);
5. ``dpo_weighted``    importance-weighted DPO on the source pairs;
6. ``pseudo_samples``  fresh policy samples on the target prompts;
7. ``pseudo_labels``   reward-model pseudo-labels on them (best vs worst);
8. ``dpo_pseudo``      a DPO round on the pseudo-pairs;
9. ``evaluate``        gold reward (with 95 % intervals against source-only DPO), win rate and KL
                       against the initial policy on held-out target prompts, and the reward model's
                       accuracy against gold on on-policy pairs;
10. ``report.html``    what ran, each stage's numbers and plots.

    shiftalign pipeline configs/quickstart.yaml
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, dump_config
from ..io import write_text_atomic
from ..report.html import gold_bars, png_file, reward_vs_kl, training_curves, write_report
from ..rollout.sample import SampleConfig, SamplingParams
from ..rollout.sample import main as sample_main
from . import RECIPES
from .evaluate import EvaluateConfig
from .evaluate import main as evaluate_main
from .label import LabelConfig
from .label import main as label_main
from .stages import Stages
from .weights import WeightsConfig
from .weights import main as weights_main


@dataclass
class PipelineConfig:
    output_dir: str = "runs/pipeline"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)  # the initial policy
    source: str = "data/shift/source_pairs.jsonl"
    target_prompts: str = "data/shift/target_prompts.jsonl"
    eval_prompts: str = "data/shift/target_eval_prompts.jsonl"
    wrap_text_as_chat: bool = True
    max_length: int = 256
    max_prompt_length: int = 128
    reward_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-5, epochs=2, save_every=4))
    dpo_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-6, epochs=1, save_every=4))
    dpo_loss: dict = field(default_factory=lambda: {"name": "dpo", "beta": 0.1})
    target_sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=2, max_new_tokens=48, temperature=0.8))
    pseudo_sampling: SamplingParams = field(default_factory=lambda: SamplingParams(n=4, max_new_tokens=48, temperature=0.8, seed=1))
    weights: WeightsConfig = field(default_factory=WeightsConfig)  # source/target/output_dir set by the pipeline
    evaluate: EvaluateConfig = field(default_factory=lambda: EvaluateConfig(
        sampling=SamplingParams(n=2, max_new_tokens=48, temperature=0.7), bootstrap=2000))
    progress: bool = True


def _train_cfg(cfg: PipelineConfig, out: Path, recipe: str, train_file: str, train: TrainConfig, loss: dict,
               weights: str | None = None) -> RunConfig:
    return RunConfig(recipe=recipe, output_dir=str(out), seed=cfg.seed, model=copy.deepcopy(cfg.model),
                     data=DataConfig(train=train_file, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length,
                                     wrap_text_as_chat=cfg.wrap_text_as_chat, weights=weights),
                     train=copy.deepcopy(train), loss=dict(loss))


def main(cfg: PipelineConfig, log=print) -> dict:
    root = Path(cfg.output_dir)
    stage = Stages(root, 9, log, config=cfg)
    write_text_atomic(root / "config.yaml", dump_config(cfg))

    def train(name, recipe, train_file, tcfg, loss, weights=None):
        rc = _train_cfg(cfg, root / name, recipe, train_file, tcfg, loss, weights)
        rc.train.progress = cfg.progress
        res = RECIPES.get(recipe).main(rc)
        return {"model": str(root / name / "model"), "steps": res["steps"], "final_loss": res["train"].get("loss"),
                "examples": res["data"]["train_examples"]}

    def sample(name, sampling):
        sc = SampleConfig(prompts=cfg.target_prompts, output=str(root / name / "samples.jsonl"),
                          policy=copy.deepcopy(cfg.model), sampling=sampling, wrap_text_as_chat=cfg.wrap_text_as_chat,
                          progress=cfg.progress)
        sample_main(sc, log)
        rows = [json.loads(l) for l in Path(sc.output).read_text().splitlines()]
        return {"samples": str(sc.output), "rows": len(rows),
                "mean_tokens": sum(r["n_tokens"] for r in rows) / len(rows),
                "eos_fraction": sum(r["finished"] for r in rows) / len(rows)}

    rm = stage("reward", lambda: train("reward", "reward", cfg.source, cfg.reward_train, {"name": "bradley_terry"}))
    tgt = stage("target_samples", lambda: sample("target_samples", cfg.target_sampling))

    def weights():
        wc = copy.deepcopy(cfg.weights)
        wc.source, wc.target, wc.output_dir = cfg.source, tgt["samples"], str(root / "weights")
        d = weights_main(wc, log)
        return {"file": str(root / "weights" / "weights.jsonl"), "ess_fraction": d["ess_fraction"],
                "ess_fraction_raw": d["ess_fraction_raw"], "largest_share": d["largest_share"],
                "domain_auc_before": d.get("domain_auc_before"), "domain_auc_after": d.get("domain_auc_after")}

    w = stage("weights", weights)
    src = stage("dpo_source", lambda: train("dpo_source", "preference", cfg.source, cfg.dpo_train, cfg.dpo_loss))
    wtd = stage("dpo_weighted", lambda: train("dpo_weighted", "preference", cfg.source, cfg.dpo_train, cfg.dpo_loss,
                                              w["file"]))
    ps = stage("pseudo_samples", lambda: sample("pseudo_samples", cfg.pseudo_sampling))

    def labels():
        lc = LabelConfig(samples=ps["samples"], output_dir=str(root / "pseudo_labels"), labeller="reward_model",
                         seed=cfg.seed, progress=cfg.progress)
        lc.reward_model.models = [rm["model"]]
        lc.reward_model.wrap_text_as_chat = cfg.wrap_text_as_chat
        s = label_main(lc, log)
        return {"pairs_file": str(root / "pseudo_labels" / "pseudo_pairs.jsonl"), "pairs": s["pairs"],
                "unlabelled": s["unlabelled"]}

    lab = stage("pseudo_labels", labels)
    pse = stage("dpo_pseudo", lambda: train("dpo_pseudo", "preference", lab["pairs_file"], cfg.dpo_train, cfg.dpo_loss))

    def evaluate():
        ec = copy.deepcopy(cfg.evaluate)
        ec.prompts, ec.output_dir, ec.progress = cfg.eval_prompts, str(root / "evaluate"), cfg.progress
        ec.policies = {"initial": cfg.model.path, "dpo_source": src["model"], "dpo_weighted": wtd["model"],
                       "dpo_pseudo": pse["model"]}
        ec.baseline, ec.compare_to, ec.reward_model = "initial", "dpo_source", rm["model"]
        ec.wrap_text_as_chat = cfg.wrap_text_as_chat
        evaluate_main(ec, log)
        return {"file": str(root / "evaluate" / "evaluation.json")}

    ev = stage("evaluate", evaluate)
    evaluation = json.loads(Path(ev["file"]).read_text())
    report = make_report(root, cfg, stage.records, w, evaluation)
    log(f"[shiftalign] report: {report}")
    return {"stages": stage.records, "evaluation": evaluation, "report": str(report)}


def make_report(root: Path, cfg: PipelineConfig, stages: list[dict], w: dict, evaluation: dict) -> Path:

    hist = png_file(root / "weights" / "weights.png")
    curves = training_curves({n: root / n / "metrics.jsonl" for n in ("reward", "dpo_source", "dpo_weighted", "dpo_pseudo")})
    rows = [{"policy": n, **{k: v for k, v in e.items() if k != "model"}} for n, e in evaluation["policies"].items()]
    notes = [f"Gold reward: {evaluation['gold']}; {evaluation['prompts']} held-out target prompts, "
             f"{evaluation['samples_per_prompt']} samples each. Intervals: paired bootstrap over prompts.",
             "Density-ratio weights: " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()
                                                  if isinstance(v, float))]
    return write_report(root / "report.html", "shiftalign pipeline report", stages,
                        [("Density-ratio weights (source pairs toward policy samples)", hist),
                         ("Training curves", curves), ("Gold reward per policy", gold_bars(evaluation, "dpo_source")),
                         ("Gold reward against KL to the initial policy", reward_vs_kl(evaluation))],
                        [("Evaluation on held-out target prompts", rows)], notes)
