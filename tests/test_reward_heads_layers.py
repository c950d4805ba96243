"""The reward heads' feature layer chosen by cross-validation on the training pairs: candidate layers
(``features.layer`` a list) come from one backbone pass, the choice reads no held-out pair, and a single
layer behaves (and caches) as before."""

import hashlib
import json

import numpy as np
import pytest

from shiftalign.cli import main
from shiftalign.config import from_dict
from shiftalign.errors import ConfigError
from shiftalign.models.features import FeatureConfig, extract, extract_layers, fingerprint
from shiftalign.models.reward_heads import RewardHeads, choose_layer

from conftest import pref_rows, write_jsonl

SIGNAL, NOISE = 12, (9, 15, 18)


def _noise(text: str, layer: int, d: int = 4) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(f"{layer}:{text}".encode(), digest_size=4).digest(), "little")
    return np.random.default_rng(seed).normal(size=d)


def _fake_features(texts, layer):
    """Features of (prompt, response) texts at ``layer``: noise, plus a preference signal on the first
    feature at layer 12 for the training pairs' chosen responses ("good ...") and at layer 18 for the
    held-out pairs' ("fine ..."): held-out labels that would favour layer 18."""
    rows = []
    for _, response in texts:
        x = _noise(response, layer)
        x[0] += 2.0 * ((layer == SIGNAL and response.startswith("good")) or (layer == 18 and response.startswith("fine")))
        rows.append(x)
    return np.array(rows, np.float32)


def test_choose_layer_picks_the_layer_whose_features_carry_the_preference():
    rng = np.random.default_rng(0)
    n, d = 80, 4
    layers = {}
    for layer in (*NOISE[:1], SIGNAL, *NOISE[1:]):
        chosen, rejected = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        if layer == SIGNAL:
            chosen[:, 0] += 2.0
        layers[layer] = (chosen, rejected)
    layer, C, table = choose_layer(layers, None, None, seed=0)
    assert layer == SIGNAL and C > 0
    assert [row["layer"] for row in table] == [9, 12, 15, 18]  # every candidate, in the listed order
    by = {row["layer"]: row for row in table}
    assert by[SIGNAL]["cv_accuracy"] > 0.85 and all(by[k]["cv_accuracy"] < 0.7 for k in NOISE)
    assert by[SIGNAL]["cv_log_loss"] == min(row["cv_log_loss"] for row in table)
    fixed = choose_layer(layers, None, l2=0.5, seed=0)  # a given penalty: the layer alone is chosen, at that C
    assert fixed[0] == SIGNAL and {row["l2"] for row in fixed[2]} == {0.5}


def _rows(chosen, rejected, n):
    return [{"id": f"{chosen}{i}", "prompt": f"question {i}?", "chosen": f"{chosen} answer {i}",
             "rejected": f"{rejected} answer {i}"} for i in range(n)]


def test_heads_fit_chooses_the_layer_on_training_pairs_and_held_out_pairs_only_report(tmp_path, tiny_dir,
                                                                                      monkeypatch):
    import shiftalign.recipes.reward_heads as recipe

    seen = []

    def fake_layers(texts, cfg, cache):
        seen.append(("layers", [r for _, r in texts]))
        return {layer: _fake_features(texts, layer) for layer in cfg.layer}

    def fake_extract(texts, cfg, cache):
        seen.append((cfg.layer, [r for _, r in texts]))
        return _fake_features(texts, cfg.layer)

    monkeypatch.setattr(recipe, "extract_layers", fake_layers)
    monkeypatch.setattr(recipe, "extract", fake_extract)
    write_jsonl(tmp_path / "train.jsonl", _rows("good", "bad", 50))
    write_jsonl(tmp_path / "held.jsonl", _rows("fine", "poor", 50))

    def fit(name, held):
        cfg = {"pairs": str(tmp_path / "train.jsonl"), "output_dir": str(tmp_path / name), "heads": 2,
               "features": {"kind": "hidden", "model": str(tiny_dir), "layer": [9, 12, 15, 18]},
               **({"held_out": str(tmp_path / "held.jsonl")} if held else {})}
        (tmp_path / f"{name}.yaml").write_text(json.dumps(cfg))
        assert main(["heads", "fit", str(tmp_path / f"{name}.yaml")]) == 0
        return json.loads((tmp_path / name / "reward_heads.json").read_text())

    with_held = fit("with_held", True)
    choice = with_held["layer_choice"]
    assert choice["chosen"] == SIGNAL and with_held["features"]["layer"] == SIGNAL  # not 18, which held-out favours
    assert [c["layer"] for c in choice["candidates"]] == [9, 12, 15, 18]
    assert all(0 <= c["cv_accuracy"] <= 1 and c["cv_log_loss"] > 0 for c in choice["candidates"])
    assert with_held["held_out_pairs"] == 50 and with_held["held_out_accuracy"] < 0.75  # reported, at layer 12
    # the candidates saw the training responses only; the held-out ones were extracted once, at the chosen layer
    train_responses = {f"{k} answer {i}" for k in ("good", "bad") for i in range(50)}
    assert [tag for tag, _ in seen] == ["layers", SIGNAL]
    assert set(seen[0][1]) == train_responses and not set(seen[1][1]) & train_responses
    without = fit("without_held", False)  # the same choice, to the digit, with no held-out pairs at all
    assert without["layer_choice"] == choice and "held_out_accuracy" not in without
    heads = RewardHeads.load(tmp_path / "with_held")
    assert heads.features.layer == SIGNAL  # the saved heads score at the chosen layer alone


def _save_deep_tiny(path, layers=4):
    from shiftalign.models.tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(0, num_hidden_layers=layers)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("candidates", [[1, 3], [3, 1, 2], [0, 2, -1]])
def test_candidate_layers_come_from_one_backbone_pass_and_match_each_layer_alone(tmp_path, monkeypatch, candidates):
    import shiftalign.models.features as features

    model_dir = _save_deep_tiny(tmp_path / "deep")
    forwards, blocks_run = [], []
    real_load = features._load_lm

    def counting_load(cfg):
        tok, model, device = real_load(cfg)
        model.model.register_forward_pre_hook(lambda *_: forwards.append(1))
        for i, block in enumerate(model.model.layers):
            block.register_forward_hook(lambda *_, i=i: blocks_run.append(i))
        return tok, model, device

    monkeypatch.setattr(features, "_load_lm", counting_load)
    pairs = [(f"what is {i}?", f"an answer of {i} words") for i in range(6)]
    cfg = FeatureConfig(kind="hidden", model=model_dir, layer=candidates, batch_size=16)
    got = extract_layers(pairs, cfg, tmp_path / "cache")
    assert list(got) == candidates and len(forwards) == 1  # one batch, one backbone pass for every candidate
    top = max(c % 5 for c in candidates)
    assert max(blocks_run) == (3 if top in (0, 4) else top - 1)  # a middle top: the blocks above it never ran
    for layer in candidates:  # each candidate is that layer's own features, cached under its own fingerprint
        alone = extract(pairs, FeatureConfig(kind="hidden", model=model_dir, layer=layer, batch_size=16),
                        tmp_path / "cache")
        np.testing.assert_allclose(got[layer], alone, atol=1e-5)
    assert len(forwards) == 1  # every single layer was served from the candidates' cache entries
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == len(candidates)
    extract_layers(pairs, cfg, tmp_path / "cache")
    assert len(forwards) == 1  # and the list itself, too


def test_a_single_layer_reads_and_fingerprints_as_before(tmp_path, tiny_dir):
    from shiftalign.models.fingerprint import files_fingerprint

    single = from_dict(FeatureConfig, {"kind": "hidden", "model": str(tiny_dir), "layer": 1})
    assert single.layer == 1 and isinstance(single.layer, int)
    pairs = [("what is 1?", "a good answer")]
    h = hashlib.blake2b(digest_size=16)  # the fingerprint as it was before candidate layers existed
    h.update(json.dumps(["hidden", files_fingerprint(str(tiny_dir)), 256, 1, "response-mean"]).encode())
    h.update(json.dumps(["what is 1?", "a good answer"]).encode())
    assert fingerprint(pairs, single) == h.hexdigest()  # an existing single-layer cache stays valid
    listed = from_dict(FeatureConfig, {"kind": "hidden", "model": str(tiny_dir), "layer": [1, 2]})
    assert listed.layer == [1, 2]
    with pytest.raises(ConfigError, match="features.layer"):
        extract(pairs, listed, None)  # the other feature users take one layer, never a silent pick
    for bad in ([], [1, 1]):
        with pytest.raises(ConfigError, match="features.layer"):
            FeatureConfig(kind="hidden", layer=bad)
    with pytest.raises(ConfigError, match="features.layer"):
        FeatureConfig(kind="embedding", layer=[1, 2])


def test_one_candidate_fits_the_same_heads_as_that_layer_given_alone(tmp_path, tiny_dir):
    write_jsonl(tmp_path / "pairs.jsonl", pref_rows())
    out = {}
    for name, layer in (("alone", 1), ("listed", [1])):
        cfg = {"pairs": str(tmp_path / "pairs.jsonl"), "output_dir": str(tmp_path / name), "heads": 3,
               "features": {"kind": "hidden", "model": str(tiny_dir), "layer": layer}}
        (tmp_path / f"{name}.yaml").write_text(json.dumps(cfg))
        assert main(["heads", "fit", str(tmp_path / f"{name}.yaml")]) == 0
        out[name] = (RewardHeads.load(tmp_path / name), json.loads((tmp_path / name / "reward_heads.json").read_text()))
    (alone, alone_info), (listed, listed_info) = out["alone"], out["listed"]
    assert "layer_choice" not in alone_info and listed_info["layer_choice"]["chosen"] == 1
    assert alone.l2 == listed.l2 and np.array_equal(alone.theta, listed.theta)  # CV picked the same penalty
    assert alone_info["features"] == listed_info["features"]


def test_candidate_layers_are_refused_where_nothing_chooses_among_them(tmp_path):
    from shiftalign.errors import ConfigError
    from shiftalign.experiment.config import ExperimentConfig
    from shiftalign.experiment.engine import validate_inputs
    from shiftalign.models.features import FeatureConfig
    from shiftalign.recipes.weights import WeightsConfig
    from shiftalign.recipes.weights import main as weights_main

    with pytest.raises(ConfigError, match=r"features.layer: candidate layers \(a list\) are chosen by `heads fit`"):
        weights_main(WeightsConfig(source="s.jsonl", target="t.jsonl", output_dir=str(tmp_path / "w"),
                                   features=FeatureConfig(kind="hidden", layer=[1, 2])))
    assert not (tmp_path / "w").exists()
    with pytest.raises(ConfigError, match="features.layer: candidate layers"):
        validate_inputs(ExperimentConfig(arms=[{"name": "initial", "kind": "initial"}],
                                         features=FeatureConfig(kind="hidden", layer=[1, 2]), baseline_arm="initial",
                                         oracle_arm=None))
