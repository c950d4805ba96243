"""The public Python API: every listed name imports and is documented, the README's 'From Python'
example runs (on a tiny model), configs resolve from a dataclass, a mapping or a YAML path with keyword
overrides, and the density-ratio estimators work on plain arrays (two Gaussians, true ratio known)."""

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import spearmanr

import shiftalign
from shiftalign.errors import ConfigError, DataError

from conftest import pref_rows, write_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = ["train_model", "fit_weights", "fit_heads", "sample", "label", "iterate", "evaluate", "run_experiment"]


def test_every_public_name_imports_and_is_documented():
    assert set(COMMANDS) <= set(shiftalign.__all__)
    namespace: dict = {}
    exec(f"from shiftalign import {', '.join(shiftalign.__all__)}", namespace)
    for name in shiftalign.__all__:
        obj = namespace[name]
        if callable(obj):
            assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"
    for name in COMMANDS:  # each command's docstring names its inputs and its output
        doc = inspect.getdoc(getattr(shiftalign, name))
        assert "Inputs:" in doc and "Output:" in doc, name
    with pytest.raises(AttributeError):
        shiftalign.prepare_items  # internal: not in the public list
    importlib.import_module("shiftalign.experiment.engine")  # a subpackage's name would shadow a public name
    importlib.import_module("shiftalign.train.loop")
    assert all(getattr(shiftalign, name) is namespace[name] for name in shiftalign.__all__)


def test_configs_resolve_from_a_dataclass_a_mapping_or_a_file(tmp_path):
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump({"recipe": "preference", "loss": {"name": "dpo", "beta": 0.1},
                                                       "train": {"lr": 1e-6}}))
    from_file = shiftalign.resolve_config("train", str(tmp_path / "dpo.yaml"), loss={"beta": 0.3},
                                          **{"train.batch_size": 4})
    assert from_file.loss == {"name": "dpo", "beta": 0.3} and from_file.train.lr == 1e-6
    assert from_file.train.batch_size == 4
    from_mapping = shiftalign.resolve_config("train", {"loss": {"name": "dpo", "beta": 0.3}, "train": {"lr": 1e-6}},
                                             train={"batch_size": 4})
    assert dataclasses.asdict(from_mapping) == dataclasses.asdict(from_file)
    from_class = shiftalign.resolve_config("train", from_file, output_dir="elsewhere")
    assert from_class.output_dir == "elsewhere" and from_class.train == from_file.train
    w = shiftalign.resolve_config("weights fit", shiftalign.WeightsConfig(), estimator={"name": "ulsif"})
    assert isinstance(w, shiftalign.WeightsConfig)
    with pytest.raises(ConfigError, match="dpo.yaml: .*learning_rate"):
        shiftalign.resolve_config("train", str(tmp_path / "dpo.yaml"), train={"learning_rate": 1})
    with pytest.raises(ConfigError, match="unknown key.*gamma"):
        shiftalign.resolve_config("train", {"loss": {"name": "dpo", "gamma": 1}})


def test_readme_example_runs(tmp_path, tiny_dir, monkeypatch):
    block = re.search(r"## From Python.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert 'MODEL = "default"' in block
    code = block.replace('MODEL = "default"', f"MODEL = {tiny_dir!r}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)
    fitted, result = namespace["fitted"], namespace["result"]
    weights = [float(line.split('"weight": ')[1].split(",")[0]) for line in Path(fitted.file).read_text().splitlines()]
    assert len(weights) == 16 and np.isclose(np.mean(weights), 1.0)
    assert Path(result.model, "config.json").is_file() and result.steps == 2
    assert result.data["train_examples"] == 16


def test_in_memory_rows_name_the_argument_and_row(tmp_path):
    rows = pref_rows(4)
    rows[2]["rejected"] = ""
    with pytest.raises(DataError) as e:
        shiftalign.train_model({"output_dir": str(tmp_path / "run")}, data=rows)
    assert str(e.value).startswith("data (rows given in memory), row 3: field 'rejected'"), str(e.value)
    assert not (tmp_path / "run").exists()


def gaussians(d, n_s=600, n_t=600, shift=1.0, seed=0):  # as in test_reweight_estimators
    rng = np.random.default_rng(seed)
    mu = np.full(d, shift / np.sqrt(d))
    Xs = rng.normal(size=(n_s, d))
    Xt = rng.normal(size=(n_t, d)) + mu
    return Xs, Xt, np.exp(Xs @ mu - 0.5 * mu @ mu), mu


@pytest.mark.parametrize("estimator,params", [("ulsif", {}), ("classifier", {"folds": 3})])
def test_density_ratio_on_arrays_tracks_the_true_ratio(estimator, params):
    """N(0, I) -> N(mu, I) in 2-d: the weights rank like exp(mu.x - |mu|^2/2) and move the source mean."""
    Xs, Xt, true, mu = gaussians(2)
    w = shiftalign.density_ratio(Xs, Xt, estimator=estimator, **params)
    assert w.shape == (len(Xs),) and np.all(np.isfinite(w)) and np.all(w >= 0)
    assert spearmanr(w, true).statistic > 0.9
    wmean = (w[:, None] * Xs).sum(0) / w.sum()
    assert np.linalg.norm(wmean - Xt.mean(0)) < 0.35 * np.linalg.norm(Xs.mean(0) - Xt.mean(0))


def test_density_ratio_estimator_object():
    Xs, Xt, true, _ = gaussians(1, shift=2.0)
    dr = shiftalign.DensityRatio("ulsif", stabilise={"target_ess": 0.6}, auc=True).fit(Xs[:, 0], Xt[:, 0])
    assert dr.raw_weights_.shape == dr.weights_.shape == (len(Xs),)
    assert spearmanr(dr.raw_weights_, true).statistic > 0.9
    assert dr.diagnostics_["ess_fraction"] >= 0.6 - 1e-6 and 0 <= dr.temper_ < 1
    assert dr.diagnostics_["domain_auc_after"] < dr.diagnostics_["domain_auc_before"]
    assert np.isclose(dr.weights_.mean(), 1.0) and "sigma" in dr.info_
    with pytest.raises(ConfigError, match="unknown key.*folds"):
        shiftalign.DensityRatio("ulsif", folds=3)
    with pytest.raises(ConfigError, match="finite 2-D"):
        shiftalign.DensityRatio("ulsif").fit(np.full((4, 2), np.nan), Xt[:4])


def test_write_jsonl_helper_is_the_conftest_one(tmp_path):  # the in-memory rows land as the file would
    path = write_jsonl(tmp_path / "p.jsonl", pref_rows(3))
    from_file = shiftalign.load_examples(path, "paired")
    from shiftalign.api import _as_file

    from_memory = shiftalign.load_examples(_as_file(pref_rows(3)), "paired")
    assert [(e.id, e.prompt, e.completions, e.weight) for e in from_file] == \
        [(e.id, e.prompt, e.completions, e.weight) for e in from_memory]
