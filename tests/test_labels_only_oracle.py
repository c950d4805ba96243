"""The labels-only oracle and control (``reward_model.orient``, the ``pseudo`` arm's ``orient``): the reward
model selects and weights the pairs exactly as for the method, and only their orientation comes from gold
or from a seeded coin, in round 1 (shared samples) and in later rounds (each arm's own samples)."""

import json
import math

import pytest
import yaml

from shiftalign.cli import main
from shiftalign.config import from_dict
from shiftalign.labeling.reward_model import RewardLabelConfig, score_lists
from shiftalign.labeling.samples import grouped_samples
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from conftest import iterate_config, write_jsonl

GOLD = '''import hashlib


def gold(prompts, responses):
    """A hash of the response, except on "tie" prompts, where every response scores 0."""
    return [0.0 if p.startswith("tie") else int(hashlib.sha256(r.encode()).hexdigest()[:8], 16) / 16**8
            for p, r in zip(prompts, responses)]
'''


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gold_fn(spec):
    from shiftalign.rl.scorers import make_scorer

    return make_scorer(dict(spec))


@pytest.fixture(scope="module")
def arms(tmp_path_factory, tiny_dir):
    """Three ``iterate`` runs from the same round-1 samples with the same reward model: the method (1 round),
    the labels-only oracle (gold orients) and the labels-only control (a coin orients), 2 rounds each."""
    from shiftalign.models.tiny import save_tiny

    d = tmp_path_factory.mktemp("labels_only")
    rm = save_tiny(d / "rm", seed=5, reward=True)
    (d / "gold.py").write_text(GOLD)
    gold = {"name": "python", "function": f"{d / 'gold.py'}:gold"}
    texts = [f"what is {i}?" for i in range(8)] + ["tie: what is 8?", "tie: what is 9?"]
    prompts = write_jsonl(d / "prompts.jsonl", [{"id": f"q{i}", "prompt": t} for i, t in enumerate(texts)])
    round1 = write_jsonl(d / "round1.jsonl", [
        {"id": f"q{i}-{k}", "prompt": t, "completion": f"reply {k} to {i}: " + "word " * (2 * k + i % 3)}
        for i, t in enumerate(texts) for k in range(3)])
    runs = {}
    for name, orient, rounds in (("method", None, 1), ("oracle", gold, 2), ("control", {"name": "random", "seed": 3}, 2)):
        cfg = iterate_config(d / name, tiny_dir, rm, prompts, "initial", rounds=rounds, round1_samples=round1,
                             confidence_temperature=1.0)
        cfg["label"]["reward_model"]["orient"] = orient
        cfg["train"]["cache_dir"] = str(d / "ref")
        (d / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["iterate", str(d / f"{name}.yaml")]) == 0
        runs[name] = d / name
    return {"runs": runs, "rm": rm, "gold": gold}


def _round(run, r):
    rd = run / f"round-{r}"
    pairs = _read(rd / "labels" / "pseudo_pairs.jsonl")
    weights = {r["id"]: r["weight"] for r in _read(rd / "train_pairs.jsonl")}
    return rd, {frozenset((p["chosen_id"], p["rejected_id"])): (p, weights[p["id"]]) for p in pairs}


def test_round_one_same_pairs_and_weights_only_the_orientation_differs(arms):
    _, method = _round(arms["runs"]["method"], 1)
    rd, oracle = _round(arms["runs"]["oracle"], 1)
    _, control = _round(arms["runs"]["control"], 1)
    gold = _gold_fn(arms["gold"])
    ties = [d for d in _read(rd / "labels" / "unlabelled.jsonl") if d["reason"] == "orient tie"]
    tied = {frozenset((d["a_id"], d["b_id"])) for d in ties}

    # The method's pairs that gold ties are exactly the dropped ones, recorded and counted.
    scored = {key: gold([p["prompt"]] * 2, [p["chosen"], p["rejected"]]) for key, (p, _) in method.items()}
    assert tied == {key for key, (a, b) in scored.items() if a == b} and len(tied) == 2
    assert all(d["orient_scores"][0] == d["orient_scores"][1] for d in ties)
    summary = json.loads((rd / "labels" / "label_summary.json").read_text())
    assert summary["reasons"]["orient tie"] == 2 and summary["orient"]["ties"] == 2

    # Identical pairs (unordered) and identical weights: the oracle less the gold ties, the control all.
    assert set(oracle) == set(method) - tied and set(control) == set(method)
    for arm in (oracle, control):
        for key, (p, w) in arm.items():
            m, mw = method[key]
            assert w == pytest.approx(mw, rel=1e-12) and 0 < w < 1
            assert p["provenance"]["margin"] == m["provenance"]["margin"]
            assert sorted(p["provenance"]["scores"]) == sorted(m["provenance"]["scores"])  # the reward model's

    # The oracle's orientation is gold's on every kept pair; it reverses the reward model on some, not all.
    flips = 0
    for key, (p, _) in oracle.items():
        c, r = gold([p["prompt"]] * 2, [p["chosen"], p["rejected"]])
        assert c > r and p["provenance"]["orient"]["scores"] == [c, r]
        flipped = p["chosen_id"] != method[key][0]["chosen_id"]
        assert p["provenance"]["orient"]["flipped"] == flipped
        assert (p["provenance"]["scores"][0] < p["provenance"]["scores"][1]) == flipped
        flips += flipped
    assert 0 < flips < len(oracle)
    assert summary["orient"]["flipped"] == flips


@pytest.mark.parametrize("arm", ["oracle", "control"])
def test_later_rounds_select_and_weight_by_the_reward_model_on_the_arms_own_samples(arms, arm):
    run = arms["runs"][arm]
    rd, pairs = _round(run, 2)
    samples = _read(rd / "samples.jsonl")
    assert {s["policy"] for s in samples} == {str(run / "round-1" / "train" / "model")}  # its own policy
    groups, _ = grouped_samples(str(rd / "samples.jsonl"))
    flat = [ex for g in groups for ex in g]
    [rm_scores] = score_lists(arms["rm"], flat, RewardLabelConfig())
    rm = {ex.id: s for ex, s in zip(flat, rm_scores)}
    gold = _gold_fn(arms["gold"])
    gold_scores = dict(zip([ex.id for ex in flat], gold([ex.prompt for ex in flat], [ex.completions[0] for ex in flat])))

    expected, by_gold = set(), set()
    for g in groups:
        ids = [ex.id for ex in g]
        expected.add(frozenset((max(ids, key=rm.get), min(ids, key=rm.get))))
        by_gold.add(frozenset((max(ids, key=gold_scores.get), min(ids, key=gold_scores.get))))
    assert by_gold != expected  # the two selection rules differ on these samples: the check below tells them apart
    assert pairs and set(pairs) <= expected
    unlabelled = {frozenset((d["a_id"], d["b_id"])): d["reason"] for d in _read(rd / "labels" / "unlabelled.jsonl")}
    assert all(unlabelled.get(key) in ("identical responses", "orient tie") for key in expected - set(pairs))
    for key, (p, w) in pairs.items():  # the reward model's confidence weight, whichever way the pair points
        a, b = key
        assert w == pytest.approx(math.tanh(abs(rm[a] - rm[b]) / 2), rel=1e-4)
        if arm == "oracle":
            assert gold_scores[p["chosen_id"]] > gold_scores[p["rejected_id"]]


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    from shiftalign.models.tiny import save_tiny

    d = tmp_path_factory.mktemp("rms")
    return [save_tiny(d / f"rm{s}", seed=s, reward=True) for s in (0, 1)]


def _label(tmp_path, name, samples, models, **rm):
    out = tmp_path / name
    summary = label_main(from_dict(LabelConfig, {"samples": samples, "output_dir": str(out), "labeller": "reward_model",
                                                 "progress": False, "reward_model": {"models": models, **rm}}))
    return summary, {frozenset((p["chosen_id"], p["rejected_id"])): p for p in _read(out / "pseudo_pairs.jsonl")}


def test_the_control_is_a_seeded_coin_flip_per_pair(tmp_path, rms):
    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"id": f"p{i}-{k}", "prompt": f"question {i}", "completion": f"answer {k} to {i} " + "more " * (k + i % 4)}
        for i in range(120) for k in range(2)])
    _, method = _label(tmp_path, "method", samples, rms)
    summary, coin = _label(tmp_path, "coin", samples, rms, orient={"name": "random", "seed": 0})
    _, again = _label(tmp_path, "again", samples, rms, orient={"name": "random", "seed": 0})
    _, other = _label(tmp_path, "other", samples, rms, orient={"name": "random", "seed": 1})
    assert set(coin) == set(method) == set(other) and len(coin) == 120
    agree = [coin[k]["chosen_id"] == method[k]["chosen_id"] for k in coin]
    assert 40 <= sum(agree) <= 80  # Binomial(120, 1/2): outside this with probability < 1e-3
    assert summary["orient"]["flipped"] == agree.count(False)
    assert [again[k]["chosen_id"] for k in coin] == [coin[k]["chosen_id"] for k in coin]  # reproducible
    assert sum(other[k]["chosen_id"] != coin[k]["chosen_id"] for k in coin) >= 30  # another seed, other coins
    # The ensemble's agreement is the reward model's, not the orientation's.
    assert summary["head_agreement"] == json.loads((tmp_path / "method" / "label_summary.json").read_text())["head_agreement"]


def test_pseudo_arm_orient_option():
    from types import SimpleNamespace

    from shiftalign.errors import ConfigError
    from shiftalign.experiment.arms.pseudo import PseudoOptions, label_settings
    from shiftalign.experiment.config import written_form

    assert PseudoOptions().role() == "method"
    assert PseudoOptions(orient="gold").role() == "oracle"
    assert PseudoOptions(orient="random").role() == "control"
    with pytest.raises(ConfigError, match="orient"):
        PseudoOptions(labeller="judge", orient="gold")
    with pytest.raises(ConfigError, match="orient"):
        PseudoOptions(orient="vader")
    with pytest.raises(ConfigError, match="orient"):
        RewardLabelConfig(orient="gold")  # a scorer config, not a word
    ctx = SimpleNamespace(cfg=SimpleNamespace(gold={"name": "vader"}, seed=7, progress=False, wrap_text_as_chat=False))
    method = label_settings(ctx, "m", PseudoOptions(confidence_temperature=1.0), "rm")
    for orient, scorer in (("gold", {"name": "vader"}), ("random", {"name": "random", "seed": 7})):
        lab = label_settings(ctx, "o", PseudoOptions(confidence_temperature=1.0, orient=orient), "rm")
        assert lab.reward_model.orient == scorer
        assert {**vars(lab.reward_model), "orient": None} == vars(method.reward_model)  # nothing else differs
    # The stage key leaves orient out at its default (the keys of existing arms hold) and reads it when set.
    assert "orient" not in written_form(PseudoOptions, {})
    assert written_form(PseudoOptions, {"orient": "gold"})["orient"] == "gold"
