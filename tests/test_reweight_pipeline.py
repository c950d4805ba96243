"""Stabilisers, diagnostics, and `shiftalign weights fit` end to end on tiny models."""

import json

import numpy as np
import pytest
import torch
import yaml

from shiftalign.cli import main
from shiftalign.errors import ConfigError
from shiftalign.reweight.diagnostics import domain_auc, ess_fraction, largest_share, summarize
from shiftalign.reweight.stabilize import StabiliserConfig, clip, stabilise, stabilise_with_exponent, temper

from conftest import pref_rows, write_jsonl


def test_stabiliser_invariants():
    rng = np.random.default_rng(0)
    w = rng.lognormal(sigma=2.0, size=1000)
    assert np.mean(stabilise(w, StabiliserConfig())) == pytest.approx(1.0)
    assert ess_fraction(stabilise(w, StabiliserConfig())) == pytest.approx(0.5, abs=1e-6)
    assert np.all(temper(w, 0.0) == 1.0)
    assert np.allclose(temper(w, 1.0), w)
    assert clip(w, 3.0).max() <= 3.0
    q = clip(w, quantile=0.9)
    assert q.max() == pytest.approx(np.quantile(w, 0.9)) and np.sum(q < w) == pytest.approx(100, abs=1)
    out = stabilise(w, StabiliserConfig(temper=0.5, clip=2.0, normalize=False))
    assert out.max() <= 2.0 and np.allclose(out, np.minimum(np.sqrt(w), 2.0))
    assert ess_fraction(stabilise(w, StabiliserConfig(temper=0.5))) > ess_fraction(w)
    with pytest.raises(ConfigError):
        stabilise(np.array([1.0, -1.0]), StabiliserConfig())
    with pytest.raises(ConfigError):
        temper(w, 1.5)


def test_ess_targeted_tempering_reaches_its_target_on_a_gaussian_shift():
    """Source N(0, 1), target N(1.5, 1): w = exp(1.5 x - 1.125) has ESS/N = exp(-1.5^2) = 0.105; w^g is
    the ratio of a shift of 1.5 g, with ESS/N exp(-(1.5 g)^2), so ESS/N 0.5 needs g = sqrt(ln 2) / 1.5."""
    x = np.random.default_rng(0).normal(size=200_000)
    w = np.exp(1.5 * x - 1.125)
    assert ess_fraction(w) == pytest.approx(np.exp(-2.25), rel=0.1)
    out, gamma = stabilise_with_exponent(w, StabiliserConfig())  # default target 0.5
    assert ess_fraction(out) == pytest.approx(0.5, abs=1e-6)
    assert gamma == pytest.approx(np.sqrt(np.log(2)) / 1.5, abs=0.01)
    out, gamma = stabilise_with_exponent(w, StabiliserConfig(target_ess=0.8, clip_quantile=0.99))
    assert ess_fraction(out) == pytest.approx(0.8, abs=1e-6) and gamma < np.sqrt(-np.log(0.8)) / 1.5 + 0.05
    # weights that already reach the target are left alone; an explicit exponent wins over the target
    assert stabilise_with_exponent(np.exp(0.3 * x[:1000]), StabiliserConfig())[1] == 1.0
    assert stabilise_with_exponent(w, StabiliserConfig(temper=1.0))[1] == 1.0
    with pytest.raises(ConfigError, match="target_ess"):
        stabilise(w, StabiliserConfig(target_ess=0.0))


def test_diagnostics_values():
    assert ess_fraction(np.ones(10)) == pytest.approx(1.0)
    assert ess_fraction(np.r_[1.0, np.zeros(9)]) == pytest.approx(0.1)
    assert largest_share(np.r_[3.0, 1.0]) == pytest.approx(0.75)
    with pytest.warns(UserWarning, match="effective sample size"):
        d = summarize(np.r_[100.0, np.ones(99) * 1e-3], np.r_[100.0, np.ones(99) * 1e-3])
    assert "warning" in d


def test_domain_auc_drops_when_true_weights_are_used():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(1500, 2)), rng.normal(size=(1500, 2)) + 0.8
    mu = np.full(2, 0.8)
    true = np.exp(Xs @ mu - 0.5 * mu @ mu)
    before, after = domain_auc(Xs, Xt), domain_auc(Xs, Xt, true)
    assert before > 0.65 and abs(after - 0.5) < 0.05


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    from shiftalign.models.tiny import save_tiny_encoder

    return save_tiny_encoder(tmp_path_factory.mktemp("enc") / "encoder")


@pytest.mark.parametrize("estimator", ["classifier", "ulsif", "kliep"])
def test_weights_fit_cli_writes_weights_diagnostics_plot(tmp_path, encoder_dir, estimator):
    source = write_jsonl(tmp_path / "src.jsonl", pref_rows(40))
    # Target: responses that look like the chosen ones of half of the prompts -> those pairs should gain weight.
    target = write_jsonl(tmp_path / "tgt.jsonl", [{"prompt": f"what is {i}?", "completion": f"a good answer {i}"}
                                                 for i in range(0, 40, 2)] * 2)
    cfg = {"source": source, "target": target, "output_dir": str(tmp_path / "w"), "pair_mode": "chosen",
           "features": {"kind": "embedding", "model": encoder_dir}, "estimator": {"name": estimator},
           "diagnostics_auc": True}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["weights", "fit", str(path)]) == 0
    rows = [json.loads(l) for l in (tmp_path / "w" / "weights.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["weight"] >= 0 for r in rows)
    assert np.mean([r["weight"] for r in rows]) == pytest.approx(1.0)
    diag = json.loads((tmp_path / "w" / "diagnostics.json").read_text())
    for key in ("ess_fraction", "ess_fraction_raw", "largest_share", "domain_auc_before", "domain_auc_after"):
        assert key in diag
    assert (tmp_path / "w" / "weights.png").read_bytes()[:4] == b"\x89PNG"


def test_weighted_training_reads_weights_file(tmp_path, tiny_dir):
    rows = pref_rows(8)
    source = write_jsonl(tmp_path / "src.jsonl", [{k: v for k, v in r.items() if k != "weight"} for r in rows])
    from shiftalign.data.load import load_examples
    ids = [e.id for e in load_examples(source, "paired")]
    wfile = tmp_path / "weights.jsonl"
    wfile.write_text("".join(json.dumps({"id": i, "weight": w}) + "\n" for i, w in zip(ids, [4, 0, 0, 0, 1, 1, 1, 1])))
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir},
           "data": {"train": source, "weights": str(wfile)}, "loss": {"name": "dpo"},
           "train": {"batch_size": 8, "micro_batch_size": 4, "progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["weight_sum"] == pytest.approx(8.0)
    assert rec["weight_ess_fraction"] == pytest.approx(64 / (8 * 20))
    # An id missing from the weights file is an error by default.
    wfile.write_text("".join(json.dumps({"id": i, "weight": 1.0}) + "\n" for i in ids[:7]))
    assert main(["train", str(tmp_path / "c.yaml"), f"output_dir={tmp_path / 'run2'}"]) == 2


def test_policy_ratio_weights_forms():
    import torch

    from shiftalign.reweight.policy_ratio import PolicyRatioConfig, policy_ratio_weights

    out = {"logps": torch.tensor([[-2.0, -4.0], [-6.0, -8.0]]), "lengths": torch.tensor([[2.0, 4.0], [2.0, 4.0]]),
           "ref_logps": torch.tensor([[-2.0, -4.0], [-5.0, -7.0]])}
    # unnormalised factors: the training loop divides by their sum over the whole step
    w = policy_ratio_weights(out, PolicyRatioConfig(form="wpo"))
    assert torch.allclose(w, torch.tensor([np.exp(-1 - 1), np.exp(-3 - 2)]).float())
    # relative: policy == reference -> r = 1 -> r_a = 1; r = e^-1 with a = 0.5 -> 1 / (0.5 + 0.5 e)
    wr = policy_ratio_weights(out, PolicyRatioConfig(form="relative", alpha=0.5))
    assert wr[0].item() == pytest.approx(1.0)
    assert wr[1].item() == pytest.approx(1 / (0.5 + 0.5 * np.e), rel=1e-5)


def test_policy_ratio_in_training(tmp_path, tiny_dir, prefs):
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir},
           "data": {"train": prefs}, "loss": {"name": "dpo"}, "policy_ratio": {"form": "relative", "alpha": 0.5},
           "train": {"batch_size": 8, "micro_batch_size": 4, "progress": False, "lr": 1e-2, "epochs": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    recs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["policy_weight"] == pytest.approx(1.0)  # policy == reference at the first step
    assert all("policy_weight" in r for r in recs)
    # The ESS logged is that of the weights the step trained with: static weights times the factor.
    from shiftalign.data.batching import step_batches

    static = [pref_rows()[i]["weight"] for i in step_batches(16, 8, 0, 0)[0]]
    static_ess = sum(static) ** 2 / (len(static) * sum(x * x for x in static))
    assert recs[0]["weight_ess_fraction"] == pytest.approx(static_ess, rel=1e-5)  # factors 1 at the first step
    assert all(0 < r["weight_ess_fraction"] <= 1 + 1e-9 for r in recs)
    assert len({round(r["weight_ess_fraction"], 6) for r in recs}) > 1  # the policy moved: factors differ


@pytest.mark.parametrize("kind,width", [("hidden", 32), ("logprob", 4)])
def test_lm_feature_kinds_and_cache(tmp_path, tiny_dir, kind, width):
    from shiftalign.models.features import FeatureConfig, extract

    pairs = [("what is 1?", "a good answer"), ("what is 2?", "a rude reply"), ("hello", "the quick fox")]
    cfg = FeatureConfig(kind=kind, model=tiny_dir)
    X = extract(pairs, cfg, tmp_path / "cache")
    assert X.shape == (3, width) and np.all(np.isfinite(X))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    assert np.array_equal(extract(pairs, cfg, tmp_path / "cache"), X)  # served from the cache
    if kind == "logprob":
        assert np.all(X[:, 0] <= 0) and np.allclose(X[:, 0] / X[:, 2], X[:, 1], atol=1e-5)  # sum / length = mean
    alone = extract(pairs, FeatureConfig(kind=kind, model=tiny_dir, batch_size=1), None)  # no padding at all
    np.testing.assert_allclose(X, alone, atol=1e-5)  # padded rows of a batch match their unpadded forward


def test_hidden_features_pick_a_layer(tmp_path, tiny_dir):
    from shiftalign.errors import ConfigError
    from shiftalign.models.features import FeatureConfig, extract

    pairs = [("what is 1?", "a good answer"), ("hello", "the quick fox")]
    last = extract(pairs, FeatureConfig(kind="hidden", model=tiny_dir), tmp_path / "cache")
    first = extract(pairs, FeatureConfig(kind="hidden", model=tiny_dir, layer=1), tmp_path / "cache")
    assert first.shape == last.shape and not np.allclose(first, last)  # a cache entry per layer
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    with pytest.raises(ConfigError, match="features.layer"):
        extract(pairs, FeatureConfig(kind="hidden", model=tiny_dir, layer=99), None)


def test_hidden_state_stops_at_its_layer_and_equals_the_full_forward(tiny_dir):
    """Every hidden state, including the embeddings and the normed last one, equals the full model's
    ``output_hidden_states``; a middle one runs none of the layers above it."""
    from transformers import AutoModelForCausalLM

    from shiftalign.models.features import hidden_state

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 9, 11, 3, 7], [4, 8, 2, 6, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    n = model.config.num_hidden_layers
    with torch.inference_mode():
        full = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for layer in [*range(n + 1), -1]:
            torch.testing.assert_close(hidden_state(model, ids, mask, layer), full[layer], rtol=0, atol=1e-6)
        ran = []
        hooks = [m.register_forward_hook(lambda *_, i=i: ran.append(i)) for i, m in enumerate(model.model.layers)]
        hidden_state(model, ids, mask, 1)
        for h in hooks:
            h.remove()
    assert ran == [0]  # state 1 is layer 0's output: the layers above it did not run


def test_feature_cache_follows_the_model_content(tmp_path, tiny_dir):
    import shutil

    from shiftalign.models.features import FeatureConfig, extract
    from shiftalign.models.tiny import save_tiny

    model = tmp_path / "m"
    shutil.copytree(tiny_dir, model)
    pairs = [("what is 1?", "a good answer"), ("hello", "the quick fox")]
    cfg = FeatureConfig(kind="hidden", model=str(model))
    X = extract(pairs, cfg, tmp_path / "cache")
    shutil.rmtree(model)
    save_tiny(model, seed=9)  # retrained into the same path
    Y = extract(pairs, cfg, tmp_path / "cache")
    assert not np.allclose(X, Y)  # not served stale from the cache
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    assert np.array_equal(extract(pairs, cfg, tmp_path / "cache"), Y)  # and the new entry is hit


def test_mlp_classifier_with_calibration():
    from scipy.stats import spearmanr

    from shiftalign.reweight import ESTIMATORS

    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(800, 2)), rng.normal(size=(800, 2)) + 0.7
    mu = np.full(2, 0.7)
    true = np.exp(Xs @ mu - 0.5 * mu @ mu)
    spec = ESTIMATORS.get("classifier")
    w, info = spec.fit(Xs, Xt, spec.params(model="mlp", calibration="sigmoid", folds=3))
    assert info["model"] == "mlp" and spearmanr(w, true).statistic > 0.85


def test_feature_kinds_are_registry_entries():
    from shiftalign.errors import ConfigError
    from shiftalign.models.features import FEATURE_KINDS, FeatureConfig, extract

    assert FEATURE_KINDS.names() == ["embedding", "hidden", "logprob"]
    with pytest.raises(ConfigError, match="unknown feature kind 'tfidf'; known: embedding, hidden, logprob"):
        extract([("p", "r")], FeatureConfig(kind="tfidf"), None)
