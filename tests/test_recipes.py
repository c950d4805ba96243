"""Recipes end to end on tiny models through the CLI: outputs, bad input, LoRA, the reference cache."""

import json

import pytest
import yaml

from shiftalign.cli import main

from conftest import write_jsonl


def _config(tmp_path, tiny_dir, train_file, **sections):
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir},
           "data": {"train": train_file}, "loss": {"name": "dpo"},
           "train": {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "progress": False}}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_preference_writes_model_metrics_config(tiny_dir, tmp_path, prefs):
    from transformers import AutoModelForCausalLM

    assert main(["train", _config(tmp_path, tiny_dir, prefs, data={"eval": prefs})]) == 0
    run = tmp_path / "run"
    AutoModelForCausalLM.from_pretrained(run / "model")
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines[:-1]] == [1, 2, 3, 4] and all("loss" in l for l in lines[:-1])
    assert "eval/kl_to_reference" in lines[-1] and lines[-1]["eval/kl_to_reference"] > 0
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"] == {"name": "dpo"}


def test_reward_model_loads_as_sequence_classifier(tmp_path, prefs):
    from transformers import AutoModelForSequenceClassification

    from shiftalign.models.tiny import save_tiny

    base = save_tiny(tmp_path / "tiny_lm")
    assert main(["train", _config(tmp_path, base, prefs, recipe="reward", loss={"name": "bradley_terry"})]) == 0
    rm = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert rm.config.num_labels == 1
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "accuracy" in first


def test_sft_recipe(tiny_dir, tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"answer {i}"} for i in range(8)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    assert main(["train", _config(tmp_path, tiny_dir, data, recipe="sft", loss={"name": "sft"},
                                  train={"epochs": 3})]) == 0
    losses = [json.loads(l)["loss"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_lora_reference_is_base_model_and_cache_is_reused(tiny_dir, tmp_path, prefs, capsys):
    cfg = _config(tmp_path, tiny_dir, prefs, model={"lora": {"r": 4, "alpha": 8}})
    assert main(["train", cfg]) == 0
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert "computed for 16 examples" in capsys.readouterr().out
    # Same base weights and data -> the full-model run hits the cache written by the LoRA run.
    assert main(["train", _config(tmp_path, tiny_dir, prefs, output_dir=str(tmp_path / "run2"))]) == 0
    assert "all 16 examples read from the cache" in capsys.readouterr().out


def test_rerun_after_finish_does_no_more_steps(tiny_dir, tmp_path, prefs):
    cfg = _config(tmp_path, tiny_dir, prefs)
    assert main(["train", cfg]) == 0
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    assert main(["train", cfg]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("bad,expect", [
    ('{"prompt": "a", "chosen": "x"}', "line 1: field 'rejected'"),
    ('{"prompt": "a", "chosen": "x", "rejected": "x"}', "identical"),
    ('{"prompt": "a", "chosen": "x", "rejected": "y", "weight": -2}', "field 'weight'"),
    ('not json', "malformed JSON"),
])
def test_bad_data_exits_nonzero_with_message(tiny_dir, tmp_path, bad, expect, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(bad + "\n")
    assert main(["train", _config(tmp_path, tiny_dir, str(data))]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and expect in err
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize("override,expect", [
    ("train.lrr=1", "unknown key lrr in 'train'"),
    ("loss.betta=1", "unknown key betta in 'loss'"),
    ("loss.name=nope", "unknown loss 'nope'"),
    ("train.batch_size=3", "multiple of"),
    ("recipe=reward", "does not fit recipe 'reward'"),
    ("train.epochs=many", "expected an integer"),
])
def test_bad_config_exits_nonzero(tiny_dir, tmp_path, prefs, override, expect, capsys):
    assert main(["train", _config(tmp_path, tiny_dir, prefs), override]) == 2
    assert expect in capsys.readouterr().err


def test_cli_subprocess_exit_code(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "shiftalign.cli", "train", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_config_command_checks_method_sections(tmp_path, tiny_dir, prefs, capsys):
    assert main(["config", _config(tmp_path, tiny_dir, prefs), "loss.betta=1"]) == 2
    assert "unknown key betta in 'loss'" in capsys.readouterr().err
    assert main(["config", _config(tmp_path, tiny_dir, prefs)]) == 0


@pytest.mark.parametrize("kernel", ["flash_attention_2", "flex_attention", "sdpa_paged"])
def test_attention_kernels_without_the_tree_mask_are_refused(tiny_dir, kernel):
    from shiftalign.config import ModelConfig
    from shiftalign.errors import ConfigError
    from shiftalign.models.load import load_policy, load_reward_model

    for load in (load_policy, load_reward_model):
        with pytest.raises(ConfigError, match="4-D tree attention mask"):
            load(ModelConfig(path=tiny_dir, attn_implementation=kernel))
