"""`shiftalign pipeline` end to end on tiny models: every stage runs, is cached, and the report renders
with every image embedded."""

import json
import re

import pytest
import yaml

from conftest import pref_rows, write_jsonl
from shiftalign.cli import main


@pytest.fixture
def setup(tmp_path, tiny_dir):
    from shiftalign.models.tiny import save_tiny_encoder

    enc = save_tiny_encoder(tmp_path / "enc")
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [r.count('o') / max(len(r), 1) "
                                      "for r in responses]\n")
    source = write_jsonl(tmp_path / "src.jsonl", [{**r, "id": f"s{i}"} for i, r in enumerate(pref_rows(16))])
    target = write_jsonl(tmp_path / "tgt.jsonl", [{"id": f"t{i}", "prompt": f"how do I {i}?"} for i in range(8)])
    ev = write_jsonl(tmp_path / "ev.jsonl", [{"id": f"e{i}", "prompt": f"why is {i}?"} for i in range(6)])
    train = {"batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "epochs": 1, "save_every": 2}
    cfg = {"output_dir": str(tmp_path / "pipe"), "model": {"path": tiny_dir}, "source": source,
           "target_prompts": target, "eval_prompts": ev, "wrap_text_as_chat": False, "progress": False,
           "reward_train": train, "dpo_train": train,
           "target_sampling": {"n": 2, "max_new_tokens": 6}, "pseudo_sampling": {"n": 3, "max_new_tokens": 6},
           "weights": {"features": {"kind": "embedding", "model": enc}, "estimator": {"name": "classifier", "folds": 3}},
           "evaluate": {"gold": {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"},
                        "sampling": {"n": 2, "max_new_tokens": 6}, "bootstrap": 100}}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return tmp_path, str(path)


def test_pipeline_runs_caches_and_reports(setup, capsys):
    tmp_path, cfg = setup
    assert main(["pipeline", cfg]) == 0
    root = tmp_path / "pipe"
    stages = sorted(p.stem for p in (root / "stages").glob("*.json"))
    assert stages == sorted(["reward", "target_samples", "weights", "dpo_source", "dpo_weighted", "pseudo_samples",
                             "pseudo_labels", "dpo_pseudo", "evaluate"])
    ev = json.loads((root / "evaluate" / "evaluation.json").read_text())
    assert set(ev["policies"]) == {"initial", "dpo_source", "dpo_weighted", "dpo_pseudo"}
    for e in ev["policies"].values():
        assert {"gold_mean", "win_rate_vs_baseline", "kl_to_baseline", "gold_diff_vs_dpo_source_ci95"} <= set(e)
    html = (root / "report.html").read_text()
    imgs = re.findall(r"<img [^>]*src='([^']+)'", html)
    assert len(imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    # A second run redoes nothing.
    capsys.readouterr()
    before = (root / "dpo_pseudo" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["pipeline", cfg]) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 9
    assert (root / "dpo_pseudo" / "model" / "model.safetensors").stat().st_mtime_ns == before
    # The same directory under another configuration is refused, not silently reused; display keys are free.
    assert main(["pipeline", cfg, "progress=true"]) == 0
    assert main(["pipeline", cfg, "dpo_train.lr=0.5"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_pipeline_continues_after_a_kill(setup, monkeypatch, capsys):
    """Killed in the middle (during the weighted-DPO stage), a rerun skips the finished stages."""
    from shiftalign.recipes import RECIPES

    tmp_path, cfg = setup
    real = RECIPES.get("preference").main
    calls = {"n": 0}

    def dying(rc):
        calls["n"] += 1
        if calls["n"] == 2:  # dpo_source finished; dpo_weighted is killed
            raise KeyboardInterrupt
        return real(rc)

    import shiftalign.recipes.pipeline as pipeline_module

    class Patched:
        def __init__(self, recipe):
            self.recipe = recipe

        def get(self, name):
            r = self.recipe.get(name)
            return type(r)(dying, r.config) if name == "preference" else r

    monkeypatch.setattr(pipeline_module, "RECIPES", Patched(RECIPES))
    with pytest.raises(KeyboardInterrupt):
        main(["pipeline", cfg])
    done = sorted(p.stem for p in (tmp_path / "pipe" / "stages").glob("*.json"))
    assert done == ["dpo_source", "reward", "target_samples", "weights"]
    monkeypatch.setattr(pipeline_module, "RECIPES", RECIPES)
    capsys.readouterr()
    assert main(["pipeline", cfg]) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 4 and (tmp_path / "pipe" / "report.html").exists()
