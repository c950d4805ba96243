"""Config and data are validated before any model is loaded or any output written, for every command:
with every model loader made to fail if called, a bad data file stops the command with the file, line
and field, and the output directory does not exist afterwards."""

from pathlib import Path

import pytest
import yaml

import shiftalign
from shiftalign.cli import main as cli
from shiftalign.errors import ConfigError, DataError

from conftest import pref_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every way a command loads a model or tokenizer raises instead."""
    import transformers

    from shiftalign.models import features, load

    def loaded(*args, **kwargs):
        raise AssertionError(f"a model was loaded before the input was validated: {args[:1]}")

    for cls in ("AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoModel", "AutoTokenizer"):
        monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", loaded)
    for name in ("load_policy", "load_reward_model", "load_tokenizer"):
        monkeypatch.setattr(load, name, loaded)
    monkeypatch.setattr(features, "_encoder", loaded)


def bad_role_prefs(tmp_path, line=3):
    """Preference rows whose ``line``-th prompt is a conversation with an unknown role."""
    rows = pref_rows(6)
    rows[line - 1]["prompt"] = [{"role": "robot", "content": "beep?"}]
    return write_jsonl(tmp_path / "bad.jsonl", rows)


def samples_rows(n=4):
    return [{"prompt": f"q{i // 2}", "completion": f"answer {i}"} for i in range(n)]


def test_train_cli_reports_a_bad_role_before_loading_the_model(tmp_path, tiny_dir, capsys, no_model_loads):
    """The issue's case: `shiftalign train configs/dpo.yaml data.train=<bad role on line 3>`."""
    out = tmp_path / "run"
    code = cli(["train", str(ROOT / "configs" / "dpo.yaml"), f"data.train={bad_role_prefs(tmp_path)}",
                f"output_dir={out}", f"model.path={tiny_dir}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "bad.jsonl, line 3: field 'prompt[0].role'" in err and "robot" in err, err
    assert not out.exists()


@pytest.mark.parametrize("recipe,loss", [("preference", "dpo"), ("reward", "bradley_terry"), ("preference", "kto")])
def test_train_api_bad_data_and_unjoinable_weights(tmp_path, tiny_dir, no_model_loads, recipe, loss):
    out = tmp_path / "run"
    cfg = {"recipe": recipe, "model": {"path": tiny_dir}, "loss": {"name": loss}, "output_dir": str(out)}
    if loss != "kto":
        with pytest.raises(DataError, match=r"bad.jsonl, line 3: field 'prompt\[0\].role'"):
            shiftalign.train_model(cfg, data=bad_role_prefs(tmp_path))
        good = write_jsonl(tmp_path / "good.jsonl", pref_rows(6))
        with pytest.raises(DataError, match="'id'.*stranger"):
            shiftalign.train_model(cfg, data=good, weights={"stranger": 1.0})
    else:
        rows = [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "r", "completion": "b", "label": "yes"}]
        with pytest.raises(DataError, match="un.jsonl, line 2: field 'label'"):
            shiftalign.train_model(cfg, data=write_jsonl(tmp_path / "un.jsonl", rows))
    assert not out.exists()


def test_rl_bad_prompts_and_prompt_weights(tmp_path, tiny_dir, no_model_loads):
    out = tmp_path / "rl"
    cfg = {"recipe": "rl", "model": {"path": tiny_dir}, "output_dir": str(out), "scorer": {"name": "vader"}}
    bad = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": ""}])
    with pytest.raises(DataError, match="p.jsonl, line 2: field 'prompt'"):
        shiftalign.train_model(cfg, data=bad)
    good = [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b"}]
    with pytest.raises(DataError, match="'id'.*none for id 'b'"):
        shiftalign.train_model(cfg, data=good, weights={"a": 1.0})
    assert not out.exists()


def test_weights_fit_bad_source_target_and_settings(tmp_path, no_model_loads):
    out = tmp_path / "w"
    good = write_jsonl(tmp_path / "good.jsonl", pref_rows(6))
    target = write_jsonl(tmp_path / "t.jsonl", samples_rows()[:2] + [{"prompt": "q", "completion": 3}])
    cfg = {"output_dir": str(out), "features": {"kind": "hidden", "model": "unused"}}
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: field 'prompt\[0\].role'"):
        shiftalign.fit_weights(cfg, source=bad_role_prefs(tmp_path), target=target)
    with pytest.raises(DataError, match="t.jsonl, line 3: field 'completion'"):
        shiftalign.fit_weights(cfg, source=good, target=target)
    fine = write_jsonl(tmp_path / "t2.jsonl", samples_rows())
    for setting, message in [({"pair_mode": "pairs"}, "pair_mode"), ({"features": {"kind": "pixels"}}, "pixels"),
                             ({"stabilise": {"temper": 2.0}}, "temper"), ({"estimator": {"name": "ulsif", "folds": 2}},
                                                                          "folds")]:
        with pytest.raises(ConfigError, match=message):
            shiftalign.fit_weights(cfg, source=good, target=fine, **setting)
    assert not out.exists()


def test_heads_fit_bad_pairs_and_weights(tmp_path, no_model_loads):
    out = tmp_path / "h"
    cfg = {"output_dir": str(out), "features": {"kind": "hidden", "model": "unused"}}
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: field 'prompt\[0\].role'"):
        shiftalign.fit_heads(cfg, pairs=bad_role_prefs(tmp_path))
    with pytest.raises(DataError, match="'id'.*stranger"):
        shiftalign.fit_heads(cfg, pairs=pref_rows(6), weights={"stranger": 2.0})
    assert not out.exists()


@pytest.mark.parametrize("labeller", ["reward_model", "scorer"])
def test_label_bad_samples(tmp_path, tiny_dir, no_model_loads, labeller):
    out = tmp_path / "labels"
    rows = samples_rows()
    rows[2]["completion"] = ["not", "a", "message"]
    cfg = {"output_dir": str(out), "labeller": labeller, "progress": False,
           "reward_model": {"models": [tiny_dir]}, "scorer": {"scorer": {"name": "vader"}}}
    with pytest.raises(DataError, match="s.jsonl, line 3: field 'completion"):
        shiftalign.label(cfg, samples=write_jsonl(tmp_path / "s.jsonl", rows))
    assert not out.exists()


def test_experiment_bad_source_pairs(tmp_path, tiny_dir, no_model_loads, monkeypatch):
    monkeypatch.chdir(ROOT)  # the shipped config's data paths are relative to the repository
    out = tmp_path / "e"
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: field 'prompt\[0\].role'"):
        shiftalign.run_experiment("configs/experiment.yaml", output_dir=str(out), model={"path": tiny_dir},
                                  data={"source_pairs": bad_role_prefs(tmp_path)})
    with pytest.raises(ConfigError, match="learning_rate in 'arms.rm_warm.train'"):
        shiftalign.run_experiment("configs/experiment.yaml", output_dir=str(out),
                                  arms=[{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
                                        {"name": "rm_warm", "kind": "pseudo", "train": {"learning_rate": 1}}],
                                  oracle_arm=None)
    assert not out.exists()


def test_sample_evaluate_iterate_bad_prompts(tmp_path, tiny_dir, no_model_loads):
    bad = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": 7}])
    with pytest.raises(DataError, match="p.jsonl, line 3: field 'prompt'"):
        shiftalign.sample(prompts=bad, policy={"path": tiny_dir}, output=str(tmp_path / "s" / "samples.jsonl"))
    assert not (tmp_path / "s").exists()
    ev = {"policies": {"a": tiny_dir, "b": str(tmp_path / "no" / "model")}, "baseline": "a",
          "output_dir": str(tmp_path / "ev")}
    with pytest.raises(DataError, match="p.jsonl, line 3: field 'prompt'"):
        shiftalign.evaluate(ev, prompts=bad)
    with pytest.raises(ConfigError, match="policies.b: no model at"):
        shiftalign.evaluate(ev, prompts=[{"prompt": "a"}])
    with pytest.raises(DataError, match="p.jsonl, line 3: field 'prompt'"):
        shiftalign.iterate({"output_dir": str(tmp_path / "it"), "train": {"model": {"path": tiny_dir}}}, prompts=bad)
    assert not (tmp_path / "ev").exists() and not (tmp_path / "it").exists()


def test_cli_train_case_still_reads_the_yaml_file(tmp_path, tiny_dir, capsys, no_model_loads):
    """The same stop through a config file of one's own, with a weights file that does not join."""
    good = write_jsonl(tmp_path / "good.jsonl", pref_rows(6))
    w = write_jsonl(tmp_path / "w.jsonl", [{"id": "x", "weight": 1.0}])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": {"path": tiny_dir}, "output_dir": str(tmp_path / "r"),
                                                     "data": {"train": good, "weights": w}}))
    assert cli(["train", str(tmp_path / "c.yaml")]) == 2
    assert "'id'" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_iterate_checks_every_rounds_settings_before_round_one(tmp_path, tiny_dir, no_model_loads):
    """A wrong loss, labeller or sampling backend stops iterate before round 1 samples anything."""
    prompts = [{"prompt": "a"}, {"prompt": "b"}]
    base = {"output_dir": str(tmp_path / "it"), "train": {"model": {"path": tiny_dir}}}
    with pytest.raises(ConfigError, match="unknown loss 'dpoo'"):
        shiftalign.iterate({**base, "train": {**base["train"], "loss": {"name": "dpoo"}}}, prompts=prompts)
    with pytest.raises(ConfigError, match="unknown labeller 'crowd'"):
        shiftalign.iterate({**base, "label": {"labeller": "crowd"}}, prompts=prompts)
    with pytest.raises(ConfigError, match="unknown sampling backend 'magic'"):
        shiftalign.iterate({**base, "sample": {"backend": "magic"}}, prompts=prompts)
    assert not (tmp_path / "it").exists()
