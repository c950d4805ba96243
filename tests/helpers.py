"""Building a Trainer on a tiny model in-process, for loop-level tests."""

from shiftalign.config import RunConfig, from_dict
from shiftalign.recipes.common import make_accelerator, prepare_items, reference_for, resolve_loss
from shiftalign.train.loop import Task, Trainer


def make_trainer(tiny_dir, train_file, out_dir, loss="dpo", **train):
    from shiftalign.models.load import load_policy
    from shiftalign.ops.logprobs import CompletionLogProbs

    t = {"batch_size": 8, "micro_batch_size": 2, "lr": 1e-3, "epochs": 1, "progress": False, "max_grad_norm": 0.0}
    t.update(train)
    cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(out_dir), "model": {"path": tiny_dir},
                                "data": {"train": train_file}, "train": t, "loss": {"name": loss}})
    acc = make_accelerator(cfg)
    spec, params = resolve_loss(cfg, ("paired", "unpaired"))
    model, tok = load_policy(cfg.model)
    items, _ = prepare_items(cfg, spec, tok, train_file, "train")
    ref = reference_for(cfg, spec, model, items, tok.pad_token_id, acc)
    task = Task(CompletionLogProbs(model), spec, params, items, tok.pad_token_id, ref_train=ref)
    return Trainer(cfg, task, acc)


def params_of(trainer):
    return {n: p.detach().clone() for n, p in trainer.acc.unwrap_model(trainer.model).named_parameters()}


def grads_after_step(trainer, step_indices):
    """Run one step but capture the gradients the optimiser sees."""
    captured = {}
    orig = trainer.optimizer.step

    def step(*a, **k):
        for n, p in trainer.acc.unwrap_model(trainer.model).named_parameters():
            if p.grad is not None:
                captured[n] = p.grad.detach().clone()
        return orig(*a, **k)

    trainer.optimizer.step = step
    record = trainer.train_step(step_indices)
    trainer.optimizer.step = orig
    return record, captured


def rows_of(baseline, oracle, results, evaluation, seconds, replicates=None, roles=None, oracles=None, matched=None):
    """The rows ``experiment.results.arm_rows`` builds for a run made of these parts: ``results`` (replicate
    name -> ArmResult), ``replicates`` (arm -> its replicate names; default one per result), ``roles``,
    ``oracles`` and ``matched`` (arm -> its own oracle / matched baseline), ``seconds`` (stage -> seconds)."""
    from shiftalign.experiment.config import Arm, ExperimentConfig
    from shiftalign.experiment.results import arm_rows
    from shiftalign.experiment.run import ExperimentRun

    replicates = replicates or {n: [n] for n in results}
    arms = [Arm(a, "dpo", None, len(names), (oracles or {}).get(a), (matched or {}).get(a), role=(roles or {}).get(a))
            for a, names in replicates.items()]
    run = ExperimentRun(ExperimentConfig(baseline_arm=baseline, oracle_arm=oracle), arms, results, evaluation,
                        stages=[{"stage": k, "seconds": v} for k, v in seconds.items()])
    return arm_rows(run)



def run_experiment_config(cfg: dict, tmp_path, monkeypatch, server, *extra):
    """Run an experiment config (a mapping) through the CLI; the judge arm pointed at ``server``."""
    import yaml

    from shiftalign.cli import main

    cfg = {**cfg, "arms": [dict(a) for a in cfg["arms"]]}
    for judge in (a for a in cfg["arms"] if a["name"] == "judge"):
        judge["judge"] = {"backend": {"kind": "openai", "model": "fake", "base_url": server.openai_url,
                                      "api_key_env": "FAKE_JUDGE_KEY"}, "judge": {"max_tokens": 32}}
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return main(["experiment", str(path), *extra])
