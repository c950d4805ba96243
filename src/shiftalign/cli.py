"""The command-line app.

    shiftalign train CONFIG.yaml [key=value ...]     train with a recipe (sft, reward, preference)
    shiftalign config CONFIG.yaml [key=value ...]    print the resolved config and exit
    shiftalign weights fit CONFIG.yaml [key=value]   density-ratio weights of source pairs toward target rows
    shiftalign sample CONFIG.yaml [key=value ...]    n responses per prompt from a policy (resumable JSONL)
    shiftalign label CONFIG.yaml [key=value ...]     preference labels for samples (reward model or LLM judge)
    shiftalign iterate CONFIG.yaml [key=value ...]   rounds of sample -> label -> train

Overrides use dotted keys (``train.lr=1e-6``, ``loss.beta=0.2``); values are parsed as YAML.
Unknown keys, bad values and bad data rows stop the run with a message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ShiftalignError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftalign", description="Alignment as domain adaptation: trainers, "
                                "density-ratio re-weighting and pseudo-labelling.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in [("train", "train with the recipe named in the config (sft, reward, preference)"),
                           ("config", "print the resolved config (defaults + file + overrides) and exit")]:
        sp = sub.add_parser(name, help=helptext, description=helptext + ". Overrides: dotted key=value, e.g. "
                            "train.lr=1e-6 loss.beta=0.2 model.path=PATH")
        sp.add_argument("config", help="YAML config file (see configs/)")
        sp.add_argument("overrides", nargs="*", help="key=value overrides")
    sp = sub.add_parser("sample", help="sample n responses per prompt from a policy (see configs/sample.yaml)")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. sampling.n=8 policy.path=PATH")
    lp = sub.add_parser("label", help="label pairs of samples with a reward model or an LLM judge "
                        "(see configs/label_rm.yaml, configs/label_judge.yaml)")
    lp.add_argument("config")
    lp.add_argument("overrides", nargs="*", help="key=value overrides, e.g. labeller=judge")
    it = sub.add_parser("iterate", help="rounds of sample -> label -> train (see configs/iterate.yaml)")
    it.add_argument("config")
    it.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=3 reference=previous")
    w = sub.add_parser("weights", help="density-ratio weights (shiftalign weights fit CONFIG)")
    wsub = w.add_subparsers(dest="action", required=True)
    wf = wsub.add_parser("fit", help="fit weights of source pairs toward target rows; writes weights.jsonl, "
                         "diagnostics.json, weights.png")
    wf.add_argument("config", help="YAML config (see configs/weights.yaml)")
    wf.add_argument("overrides", nargs="*", help="key=value overrides, e.g. estimator.name=ulsif")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .config import dump_config, load_config

        if args.command == "sample":
            from .rollout.sample import SampleConfig, main as sample

            sample(load_config(args.config, args.overrides, SampleConfig))
            return 0
        if args.command == "label":
            from .recipes.label import LabelConfig, main as label

            label(load_config(args.config, args.overrides, LabelConfig))
            return 0
        if args.command == "iterate":
            from .recipes.iterate import IterateConfig, main as iterate

            iterate(load_config(args.config, args.overrides, IterateConfig))
            return 0
        if args.command == "weights":
            from .recipes.weights import WeightsConfig, main as fit_weights

            fit_weights(load_config(args.config, args.overrides, WeightsConfig))
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            print(dump_config(cfg), end="")
            return 0
        from .recipes import RECIPES

        RECIPES.get(cfg.recipe)(cfg)
        return 0
    except ShiftalignError as e:
        print(f"shiftalign: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
