"""``extends:`` in YAML configs: a file starts from another and writes only what differs. Mappings merge deeply,
lists are replaced whole, the top-level ``arms`` merge by name; the merged mapping goes through the same typed
parse, so an unknown key is still an error, and the error names the file."""

import textwrap

import pytest

from shiftalign.cli import main
from shiftalign.config import RunConfig, dump_config, load_config, read_tree
from shiftalign.errors import ConfigError

BASE_EXPERIMENT = """\
    output_dir: runs/base
    gold: {name: vader}
    data: {source_prompts: s.jsonl, source_pairs: pairs_vader.jsonl}
    dpo_train: {lr: 3.0e-5, max_steps: 40}
    arms:
      - {name: initial, kind: initial}
      - {name: dpo_source, kind: dpo, seeds: 3}
      - {name: dpo_ulsif, kind: dpo, estimator: {name: ulsif}}
      - {name: oracle, kind: pseudo, labeller: gold, train: {epochs: 2}}
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def experiment_config(path, overrides=()):
    from shiftalign.experiment.config import ExperimentConfig

    return load_config(path, list(overrides), ExperimentConfig)


def test_mappings_merge_deeply_and_lists_are_replaced(tmp_path):
    write(tmp_path / "base.yaml", """\
        recipe: preference
        output_dir: runs/base
        train: {lr: 1.0e-5, epochs: 2, adam_betas: [0.8, 0.9], report_to: [tensorboard]}
        loss: {name: dpo, beta: 0.1}
        model: {path: default, lora: {r: 8, alpha: 16}}
    """)
    child = write(tmp_path / "child.yaml", """\
        extends: base.yaml
        output_dir: runs/child
        train: {lr: 2.0e-5, adam_betas: [0.5, 0.6]}
        loss: {beta: 0.3}
        model: {lora: {r: 4}}
    """)
    cfg = load_config(child, [], RunConfig)
    assert cfg.output_dir == "runs/child"
    assert (cfg.train.lr, cfg.train.epochs) == (2e-5, 2)  # a key of a mapping overrides, its siblings stay
    assert cfg.train.adam_betas == [0.5, 0.6] and cfg.train.report_to == ["tensorboard"]  # a list is replaced whole
    assert cfg.loss == {"name": "dpo", "beta": 0.3}
    assert (cfg.model.lora.r, cfg.model.lora.alpha) == (4, 16)
    assert "extends" not in read_tree(child) and "extends" not in dump_config(cfg)
    # Overrides apply to the merged result.
    assert load_config(child, ["train.epochs=5", "loss.beta=0.5"], RunConfig).train.epochs == 5
    # A null in the child replaces the base's mapping.
    write(tmp_path / "nolora.yaml", "extends: child.yaml\nmodel: {lora: null}\n")
    assert load_config(str(tmp_path / "nolora.yaml"), [], RunConfig).model.lora is None


def test_arms_merge_by_name_keeping_the_base_order(tmp_path):
    write(tmp_path / "base.yaml", BASE_EXPERIMENT)
    child = write(tmp_path / "child.yaml", """\
        extends: base.yaml
        output_dir: runs/child
        arms:
          - {name: oracle, train: {max_steps: 5}}
          - {name: dpo_kliep, kind: dpo, estimator: {name: kliep}}
          - {name: dpo_source, seeds: 1}
    """)
    cfg = experiment_config(child)
    assert [a["name"] for a in cfg.arms] == ["initial", "dpo_source", "dpo_ulsif", "oracle", "dpo_kliep"]
    arms = {a["name"]: a for a in cfg.arms}
    assert arms["oracle"] == {"name": "oracle", "kind": "pseudo", "labeller": "gold",
                              "train": {"epochs": 2, "max_steps": 5}}  # deep-merged into the base's arm
    assert arms["dpo_source"] == {"name": "dpo_source", "kind": "dpo", "seeds": 1}
    assert arms["dpo_kliep"] == {"name": "dpo_kliep", "kind": "dpo", "estimator": {"name": "kliep"}}
    assert (cfg.gold, cfg.data.source_pairs, cfg.dpo_train.lr) == ({"name": "vader"}, "pairs_vader.jsonl", 3e-5)


def test_an_arm_is_dropped_by_name(tmp_path):
    write(tmp_path / "base.yaml", BASE_EXPERIMENT)
    child = write(tmp_path / "child.yaml", """\
        extends: base.yaml
        arms:
          - {name: dpo_ulsif, drop: true}
    """)
    assert [a["name"] for a in experiment_config(child).arms] == ["initial", "dpo_source", "oracle"]
    for arm, message in [("{name: dpo_kliep, drop: true}", "base.yaml has no arm named dpo_kliep"),
                         ("{name: dpo_ulsif, drop: true, seeds: 2}", "drop: true} and nothing else"),
                         ("{name: dpo_ulsif, drop: false}", "drop: true} and nothing else"),
                         ("{kind: dpo}", "arms[0]: expected a mapping with a name"),
                         ]:
        write(tmp_path / "bad.yaml", f"extends: base.yaml\narms:\n  - {arm}\n")
        with pytest.raises(ConfigError, match="bad.yaml") as e:
            experiment_config(str(tmp_path / "bad.yaml"))
        assert message in str(e.value)
    # Only a file that extends another can drop an arm.
    write(tmp_path / "alone.yaml", "arms:\n  - {name: initial, kind: initial}\n  - {name: x, drop: true}\n")
    with pytest.raises(ConfigError, match=r"alone.yaml: arms.x.drop: only a config that extends another"):
        experiment_config(str(tmp_path / "alone.yaml"))


def test_a_chain_of_two_resolves_paths_relative_to_each_file(tmp_path):
    write(tmp_path / "base.yaml", BASE_EXPERIMENT)
    write(tmp_path / "profiles" / "gold.yaml", """\
        extends: ../base.yaml
        gold: {name: plain_language}
        data: {source_pairs: pairs_plain.jsonl}
        arms:
          - {name: dpo_source, seeds: 2}
    """)
    leaf = write(tmp_path / "profiles" / "quick" / "leaf.yaml", """\
        extends: ../gold.yaml
        output_dir: runs/leaf
        dpo_train: {max_steps: 4}
        arms:
          - {name: oracle, drop: true}
    """)
    cfg = experiment_config(leaf, ["oracle_arm=null"])
    assert cfg.output_dir == "runs/leaf" and cfg.gold == {"name": "plain_language"}
    assert (cfg.data.source_prompts, cfg.data.source_pairs) == ("s.jsonl", "pairs_plain.jsonl")
    assert (cfg.dpo_train.lr, cfg.dpo_train.max_steps) == (3e-5, 4)
    assert [(a["name"], a.get("seeds")) for a in cfg.arms] == [("initial", None), ("dpo_source", 2), ("dpo_ulsif", None)]


def test_a_cycle_is_an_error_naming_the_files(tmp_path):
    a = write(tmp_path / "a.yaml", "extends: b.yaml\noutput_dir: runs/a\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\noutput_dir: runs/b\n")
    with pytest.raises(ConfigError, match="cycle") as e:
        load_config(a, [], RunConfig)
    assert f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}" in str(e.value)
    itself = write(tmp_path / "self.yaml", "extends: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(itself, [], RunConfig)
    missing = write(tmp_path / "orphan.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"orphan.yaml: extends nowhere.yaml: .*nowhere.yaml not found"):
        load_config(missing, [], RunConfig)
    for bad in ("[a.yaml]", "''", "null"):
        write(tmp_path / "badext.yaml", f"extends: {bad}\n")
        if bad == "null":  # no base: the file alone
            assert load_config(str(tmp_path / "badext.yaml"), [], RunConfig) == RunConfig()
            continue
        with pytest.raises(ConfigError, match="badext.yaml: extends: expected the name of a YAML file"):
            load_config(str(tmp_path / "badext.yaml"), [], RunConfig)


def test_an_unknown_key_in_the_child_is_an_error_naming_the_key_and_the_file(tmp_path, capsys):
    write(tmp_path / "base.yaml", "recipe: preference\ntrain: {lr: 1.0e-5}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntrain: {lrr: 2.0e-5}\n")
    with pytest.raises(ConfigError, match=r"child.yaml: unknown key lrr in 'train'"):
        load_config(child, [], RunConfig)
    write(tmp_path / "top.yaml", "extends: base.yaml\nseeed: 1\n")
    with pytest.raises(ConfigError, match=r"top.yaml: unknown key seeed"):
        load_config(str(tmp_path / "top.yaml"), [], RunConfig)
    # An override's unknown key is the override's, not the file's.
    with pytest.raises(ConfigError, match=r"^override: unknown key lrr in 'train'"):
        load_config(str(tmp_path / "base.yaml"), ["train.lrr=1"], RunConfig)
    # An arm's unknown option, merged from a child, stops `shiftalign config` naming the file, arm and key.
    write(tmp_path / "exp.yaml", BASE_EXPERIMENT)
    write(tmp_path / "exp_child.yaml", "extends: exp.yaml\narms:\n  - {name: dpo_ulsif, estimatorr: {name: kliep}}\n")
    assert main(["config", str(tmp_path / "exp_child.yaml")]) == 2
    err = capsys.readouterr().err
    assert "exp_child.yaml" in err and "arms.dpo_ulsif" in err and "estimatorr" in err


def test_shiftalign_config_prints_the_merged_config(tmp_path, capsys):
    from shiftalign.experiment.config import ExperimentConfig

    write(tmp_path / "base.yaml", BASE_EXPERIMENT)
    child = write(tmp_path / "child.yaml", """\
        extends: base.yaml
        output_dir: runs/child
        gold: {name: plain_language}
        arms:
          - {name: oracle, train: {max_steps: 5}}
    """)
    assert main(["config", child, "seed=3"]) == 0
    out = capsys.readouterr().out
    assert out == dump_config(load_config(child, ["seed=3"], ExperimentConfig))
    assert "extends" not in out and "output_dir: runs/child" in out and "name: plain_language" in out
    assert "seed: 3" in out and "max_steps: 5" in out and "labeller: gold" in out
    # A training config whose recipe is named in the file it extends is printed as that recipe's config.
    write(tmp_path / "sft_base.yaml", "recipe: sft\nloss: {name: sft}\ntrain: {lr: 1.0e-5}\n")
    write(tmp_path / "sft.yaml", "extends: sft_base.yaml\ntrain: {epochs: 3}\n")
    assert main(["config", str(tmp_path / "sft.yaml")]) == 0
    out = capsys.readouterr().out
    assert "recipe: sft" in out and "epochs: 3" in out and "lr: 1.0e-05" in out
