"""The command-line app.

    shiftalign train CONFIG.yaml [key=value ...]     train with a recipe (sft, reward, preference, rl)
    shiftalign config CONFIG.yaml [key=value ...]    print the resolved config and exit
    shiftalign sample CONFIG.yaml [key=value ...]    n responses per prompt from a policy (resumable JSONL)
    shiftalign weights fit CONFIG.yaml [key=value]   density-ratio weights of source pairs toward target rows
    shiftalign heads fit CONFIG.yaml [key=value]     Bradley-Terry reward heads on frozen features (ensemble,
                                                     optionally importance-weighted)
    shiftalign label CONFIG.yaml [key=value ...]     preference labels for samples (reward model or LLM judge)
    shiftalign iterate CONFIG.yaml [key=value ...]   rounds of sample -> label -> train
    shiftalign evaluate CONFIG.yaml [key=value ...]  gold reward, win rate and KL of policies on held-out prompts
    shiftalign experiment CONFIG.yaml [key=value]    compare arms (methods) on a target domain: cached stages,
                                                     results.json, results.md, report.html

Overrides use dotted keys (``train.lr=1e-6``, ``loss.beta=0.2``); values are parsed as YAML.
Unknown keys, bad values and bad data rows stop the run with a message and a non-zero exit.
An output directory made under another configuration is refused; ``--restart`` removes its
contents and starts over (see ``rundir``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ShiftalignError
from .rundir import restart_allowed
from .runtime import reuse_freed_memory

# command -> (module, config class, entry point, help, example override). The module is imported
# only when its command runs, so `shiftalign --help` stays fast.
COMMANDS = {
    "train": (None, None, None, "train with the recipe named in the config (sft, reward, preference, rl)",
              "train.lr=1e-6 loss.beta=0.2"),
    "config": (None, None, None, "print the resolved config of any command (defaults + the file and the "
               "files it extends + overrides) and exit", "model.path=PATH"),
    "sample": ("shiftalign.rollout.sample", "SampleConfig", "main", "sample n responses per prompt from a policy "
               "(configs/sample.yaml)", "sampling.n=8 policy.path=PATH"),
    "weights fit": ("shiftalign.recipes.weights", "WeightsConfig", "main", "fit density-ratio weights of source "
                    "pairs toward target rows; writes weights.jsonl, diagnostics.json, weights.png "
                    "(configs/weights.yaml)", "estimator.name=ulsif"),
    "heads fit": ("shiftalign.recipes.reward_heads", "RewardHeadsConfig", "main", "fit an ensemble of "
                  "Bradley-Terry reward heads on frozen features of preference pairs, optionally "
                  "importance-weighted (configs/reward_heads.yaml)", "heads=16 weights=runs/weights/weights.jsonl"),
    "label": ("shiftalign.recipes.label", "LabelConfig", "main", "label pairs of samples with a reward model or an "
              "LLM judge (configs/label_rm.yaml, configs/label_judge.yaml)", "labeller=judge"),
    "iterate": ("shiftalign.recipes.iterate", "IterateConfig", "main", "rounds of sample -> label -> train "
                "(configs/iterate.yaml)", "rounds=3 reference=previous"),
    "experiment": ("shiftalign.experiment.engine", "ExperimentConfig", "main", "compare arms (source-only, weighted, "
                   "pseudo-labelled, RL, oracle) on a target domain with cached stages; writes results.json, "
                   "results.md and report.html (configs/experiment.yaml)", "output_dir=runs/e2 seed=1"),
    "evaluate": ("shiftalign.recipes.evaluate", "EvaluateConfig", "main", "compare policies on held-out prompts "
                 "with a gold scorer: gold reward with bootstrap CI, win rate, KL (configs/evaluate.yaml)",
                 "bootstrap=5000"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftalign", description="Alignment as domain adaptation: trainers, "
                                "density-ratio re-weighting and pseudo-labelling.")
    sub = p.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (_, _, _, helptext, example) in COMMANDS.items():
        parent, _, action = name.partition(" ")
        if action:
            if parent not in groups:
                groups[parent] = sub.add_parser(parent, help=f"{parent} {action} ...").add_subparsers(
                    dest="action", required=True)
            sp = groups[parent].add_parser(action, help=helptext, description=helptext)
        else:
            sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("config", help="YAML config file (see configs/)")
        sp.add_argument("--restart", action="store_true", help="an output directory made under another "
                        "configuration is emptied and the run starts over (default: refuse it)")
        sp.add_argument("overrides", nargs="*", help=f"dotted key=value overrides, e.g. {example}")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides after an option (`CONFIG --restart a=1`): argparse leaves them over
        if any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    reuse_freed_memory()
    finished = False
    try:
        with restart_allowed(args.restart):
            _run(name, args)
        finished = True
        return 0
    except ShiftalignError as e:
        print(f"shiftalign: error: {e}", file=sys.stderr)
        return 2
    finally:
        _leave_process_group(finished)


def _leave_process_group(finished: bool) -> None:
    """Under torchrun: the process group is torn down before the interpreter exits (left to exit, a process's
    communication threads can still be running: it aborts with "terminate called without an active
    exception"); after a finished command every process first waits for the others (after a failure it does not:
    the others may never arrive)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def load_for_command(name: str, config: str, overrides: list[str]):
    """The config a command runs on (defaults + file + overrides, method sections checked) and the function
    that runs it."""
    from .config import load_config

    if name == "config":
        name = config_command(config, overrides)
    module, config_cls, entry, _, _ = COMMANDS[name]
    if name == "train":  # the recipe named in the file picks the config class
        from .recipes import RECIPES, check_method_sections, recipe_name

        recipe = RECIPES.get(recipe_name(config, overrides))
        cfg = load_config(config, overrides, recipe.config)
        check_method_sections(cfg)
        return cfg, recipe.main
    mod = importlib.import_module(module)
    cfg = load_config(config, overrides, getattr(mod, config_cls))
    if name == "experiment":  # the arms' own options, checked as the run checks them
        from .errors import ConfigError
        from .experiment.config import parse_arms

        try:
            parse_arms(cfg)
        except ConfigError as e:
            raise ConfigError(f"{config}: {e}") from None
    return cfg, getattr(mod, entry)


def config_command(config: str, overrides: list[str]) -> str:
    """The command a config file is written for, which `shiftalign config` resolves it as: ``train`` (the file's
    recipe picks the class) when that class knows every top-level key of the file (after ``extends``) and the
    overrides, else the first other command whose class does, else ``train`` (whose error names the keys)."""
    import dataclasses

    from .config import read_tree
    from .recipes import RECIPES, recipe_name

    keys = set(read_tree(config)) | {ov.split("=", 1)[0].split(".")[0].strip() for ov in overrides}

    def knows(cls) -> bool:
        return keys <= {f.name for f in dataclasses.fields(cls)}

    if knows(RECIPES.get(recipe_name(config, overrides)).config):
        return "train"
    for name, (module, config_cls, *_) in COMMANDS.items():
        if module and knows(getattr(importlib.import_module(module), config_cls)):
            return name
    return "train"


def _run(name: str, args) -> None:
    cfg, run = load_for_command(name, args.config, args.overrides)
    if name == "config":
        from .config import dump_config

        print(dump_config(cfg), end="")
    else:
        run(cfg)


if __name__ == "__main__":
    sys.exit(main())
