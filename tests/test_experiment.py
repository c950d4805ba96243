"""`shiftalign experiment` end to end on tiny models: every kind of arm runs and is cached, source pairs
are built by a behaviour policy, the gap-recovery ratio follows its definition, an arm without labels
is reported rather than fatal, a rerun after a kill continues, and the verdict follows the numbers."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import yaml

from shiftalign.cli import main

from conftest import write_jsonl
from fake_llm_server import FakeLLM
from helpers import rows_of
from helpers import run_experiment_config as _run


def test_every_arm_runs_and_results_follow_the_definitions(bench_cfg, tmp_path, monkeypatch, capsys, request):
    pytest.importorskip("openai")
    server = FakeLLM().__enter__()  # its verdicts need the word "good": the tiny policy never writes it
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    assert _run(bench_cfg, tmp_path, monkeypatch, server) == 0
    root = tmp_path / "bench"
    res = json.loads((root / "results.json").read_text())
    rows = {r["arm"]: r for r in res["arms"]}
    assert set(rows) == {a["name"] for a in bench_cfg["arms"]}
    assert "no pairs" in rows["judge"]["failed"]  # reported, not fatal
    ev = json.loads((root / "evaluate" / "evaluation.json").read_text())["policies"]
    assert "judge" not in ev and len(ev) == 8
    pairs = [json.loads(l) for l in (root / "data" / "source_pairs.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 10 and all({"gold_chosen", "gold_rejected", "p_label"} <= set(p) for p in pairs)
    # Oracle labels are gold labels: accuracy 1 by construction; a reward model's need not be.
    assert rows["oracle"]["label_accuracy"] == 1.0
    assert rows["dpo_classifier"]["ess_fraction"] is not None and rows["dpo_classifier"]["domain_auc"] is not None
    assert 0 < rows["dpo_policy_ratio"]["ess_fraction"] <= 1
    assert [r["round"] for r in json.loads((root / "stages" / "arm_rm_iterative.json").read_text())["diagnostics"]["rounds"]] == [1, 2]
    # Differences are against source-only DPO; the gap-recovery ratio is (arm - source) / (oracle - source)
    # when the oracle's interval lies above zero, and absent otherwise.
    base, oracle = ev["dpo_source"]["gold_mean"], ev["oracle"]["gold_mean"]
    for name, r in rows.items():
        if "failed" in r:
            continue
        assert r["diff"] == pytest.approx(ev[name]["gold_mean"] - base, abs=1e-9)
        lo, hi = ev["oracle"]["gold_diff_vs_dpo_source_ci95"]
        if name == "dpo_source":
            assert r["gap_recovery"] == 0.0
        elif lo > 0:
            assert r["gap_recovery"] == pytest.approx((ev[name]["gold_mean"] - base) / (oracle - base))
        else:
            assert r["gap_recovery"] is None
    # Round 1 of every pseudo-label arm reuses the shared policy samples.
    shared = (root / "policy_samples" / "samples.jsonl").read_text()
    assert (root / "oracle" / "round-1" / "samples.jsonl").read_text() == shared
    assert not list(root.rglob("checkpoints"))  # finished stages keep their models, not their checkpoints
    assert (root / "weights" / "dpo_kliep" / "config.yaml").exists() and "temper: 0.5" in \
        (root / "weights" / "dpo_kliep" / "config.yaml").read_text()
    html = (root / "report.html").read_text()
    imgs = re.findall(r"<img [^>]*src='([^']+)'", html)
    assert len(imgs) >= 5 and all(s.startswith("data:image/png;base64,") for s in imgs)  # 3 plots + 2 weight histograms
    assert "None" not in html and "None" not in (root / "results.md").read_text()
    assert html.index("class='verdict'") < html.index("<table>")  # the result comes first
    assert res["verdict"][0].startswith(("Best method arm on the gold reward (python)", "No method arm beats"))
    assert "| oracle |" in (root / "results.md").read_text()
    # A second run redoes nothing; another configuration in the same directory is refused.
    capsys.readouterr()
    assert _run(bench_cfg, tmp_path, monkeypatch, server) == 0
    assert capsys.readouterr().out.count("done earlier") == 6 + len(bench_cfg["arms"])  # 6: every stage but the arms'
    assert _run({**bench_cfg, "dpo_loss": {"name": "dpo", "beta": 0.5}}, tmp_path, monkeypatch, server) == 2
    assert "another configuration" in capsys.readouterr().err


def test_a_killed_experiment_continues(bench_cfg, tmp_path, monkeypatch, capsys):
    from shiftalign.experiment.arms import ARMS

    cfg = {**bench_cfg, "arms": [a for a in bench_cfg["arms"] if a["name"] in ("initial", "dpo_source", "oracle")]}
    real = ARMS.get("pseudo")

    def dying(ctx, name, opts):
        raise KeyboardInterrupt

    monkeypatch.setitem(ARMS._items, "pseudo", replace(real, run=dying))
    with FakeLLM() as server, pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path, monkeypatch, server)
    done = sorted(p.stem for p in (tmp_path / "bench" / "stages").glob("*.json"))
    assert done == ["arm_dpo_source", "arm_initial", "data", "policy_samples", "reward", "reward_shift"]
    monkeypatch.setitem(ARMS._items, "pseudo", real)
    capsys.readouterr()
    with FakeLLM() as server:
        assert _run(cfg, tmp_path, monkeypatch, server) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 6 and (tmp_path / "bench" / "results.json").exists()


def test_an_arm_added_or_changed_runs_alone_and_shared_settings_still_guard_the_directory(bench_cfg, tmp_path,
                                                                                         monkeypatch, capsys):
    """Arms are keyed on their own settings: adding one to a finished experiment runs it (and the
    evaluation) only; changing one runs it and the arms built on it again, from an emptied directory;
    a change of the shared settings is still refused."""
    base = [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
            {"name": "warm", "kind": "pseudo", "labeller": "gold", "init": "dpo_source"}]
    with FakeLLM() as server:
        assert _run({**bench_cfg, "arms": base, "oracle_arm": None}, tmp_path, monkeypatch, server) == 0
        root = tmp_path / "bench"
        first_model = (root / "dpo_source" / "model" / "model.safetensors").read_bytes()
        # Round 1 of an arm warm-started from dpo_source uses dpo_source's samples, drawn once for every such arm.
        shared = root / "policy_samples" / "dpo_source" / "samples.jsonl"
        first_samples = shared.read_text()
        assert (root / "warm" / "round-1" / "samples.jsonl").read_text() == first_samples
        capsys.readouterr()
        added = base + [{"name": "oracle", "kind": "pseudo", "labeller": "gold"}]
        assert _run({**bench_cfg, "arms": added}, tmp_path, monkeypatch, server) == 0
        out = capsys.readouterr().out
        # data, reward, samples, shift cost + the three arms + the selection (its candidates, dpo_source's
        # policies, are unchanged: an oracle is no candidate)
        assert out.count("done earlier") == 4 + 3 + 1
        assert "stage 8/10 arm_oracle ..." in out and "stage 9/10 evaluate ..." in out
        rows = {r["arm"]: r for r in json.loads((root / "results.json").read_text())["arms"]}
        assert set(rows) == {"initial", "dpo_source", "warm", "oracle"}
        # A changed arm runs again, and so does the arm warm-started from it; the others do not.
        changed = [dict(a, train={"lr": 3e-3}) if a["name"] == "dpo_source" else a for a in added]
        assert _run({**bench_cfg, "arms": changed}, tmp_path, monkeypatch, server) == 0
        out = capsys.readouterr().out
        assert out.count("its settings changed since it ran") == 4  # dpo_source, warm, evaluate, selection
        assert "arm_oracle: done earlier" in out and "arm_initial: done earlier" in out
        assert (root / "dpo_source" / "model" / "model.safetensors").read_bytes() != first_model
        # ... and drawn again from the changed policy, not reused.
        assert shared.read_text() != first_samples
        assert (root / "warm" / "round-1" / "samples.jsonl").read_text() == shared.read_text()
        assert _run({**bench_cfg, "arms": changed, "dpo_loss": {"name": "dpo", "beta": 0.5}}, tmp_path, monkeypatch,
                    server) == 2
        assert "another configuration" in capsys.readouterr().err


def test_pseudo_labelling_as_published_with_reward_heads(bench_cfg, tmp_path, monkeypatch, capsys):
    """Heads as the reward model with its shift cost; a pseudo arm warm-started from source-only DPO with
    the previous round as reference, source pairs mixed in with another arm's density-ratio weights,
    confidence-weighted pseudo-pairs and an ensemble-spread filter; an importance-weighted reward model;
    the random-label control."""
    from shiftalign.models.reward_heads import is_heads_dir

    held = write_jsonl(tmp_path / "held.jsonl", [{"id": f"h{i}", "prompt": f"how to {i}?", "chosen": "good job, go on",
                                                  "rejected": "bad"} for i in range(6)])
    enc = bench_cfg["features"]
    cfg = {**bench_cfg, "data": {**bench_cfg["data"], "heldout_pairs": held},
           "reward_model": {"kind": "heads", "heads": 4, "l2": 1.0, "features": enc},
           "arms": [{"name": "initial", "kind": "initial"},
                    {"name": "dpo_source", "kind": "dpo", "seeds": 2},
                    {"name": "dpo_classifier", "kind": "dpo", "estimator": {"name": "classifier", "folds": 3}},
                    {"name": "warm", "kind": "pseudo", "init": "dpo_source", "rounds": 2, "reference": "previous",
                     "seeds": 2,
                     "mix_source": True, "mix_source_pairs": 4, "source_weights": "dpo_classifier",
                     "confidence_temperature": 1.0,
                     "max_spread": 100.0, "pairs": "all", "matched_baseline": "random_labels"},
                    {"name": "iw_rm", "kind": "pseudo", "reward_weights": {"estimator": {"name": "classifier", "folds": 3}}},
                    {"name": "iw_refit", "kind": "pseudo", "rounds": 2, "refit_reward": True,
                     "reward_weights": {"estimator": {"name": "classifier", "folds": 3}}},
                    {"name": "random_labels", "kind": "pseudo", "labeller": "random"},
                    {"name": "rl_iw", "kind": "rl", "reward_from": "iw_rm",
                     "rl": {"iterations": 1, "prompts_per_iteration": 2, "minibatch_size": 4,
                            "sampling": {"n": 2, "max_new_tokens": 6}}},
                    {"name": "oracle", "kind": "pseudo", "labeller": "gold", "seeds": 2}]}
    with FakeLLM() as server:
        assert _run(cfg, tmp_path, monkeypatch, server) == 0
    root = tmp_path / "bench"
    res = json.loads((root / "results.json").read_text())
    assert is_heads_dir(root / "reward")
    # every replicate of a pseudo arm that starts from the initial policy labels the shared samples in round 1
    shared_samples = (root / "policy_samples" / "samples.jsonl").read_text()
    assert (root / "oracle@1" / "round-1" / "samples.jsonl").read_text() == shared_samples
    shared, iw = res["reward_models"]["reward (shared)"], res["reward_models"]["iw_rm"]
    assert shared["kind"] == "heads" and shared["in_domain_pairs"] == 6 and shared["on_policy_pairs"] > 0
    assert shared["shift_cost"] == pytest.approx(shared["in_domain_accuracy"] - shared["on_policy_accuracy"])
    assert "importance-weighted" in iw["kind"] and iw["on_policy_accuracy"] is not None
    assert json.loads((root / "rewards" / "iw_rm" / "reward_heads.json").read_text())["weighted"]
    for r in (1, 2):  # refit_reward: every round labels with heads weighted toward its own samples
        rd = root / "iw_refit" / f"round-{r}"
        assert is_heads_dir(rd / "reward") and json.loads((rd / "reward" / "reward_heads.json").read_text())["weighted"]
        assert yaml.safe_load((rd / "labels" / "config.yaml").read_text())["reward_model"]["models"] == [str(rd / "reward")]
    rl_cfg = yaml.safe_load((root / "rl_iw" / "config.yaml").read_text())
    assert rl_cfg["scorer"]["path"] == str(root / "rewards" / "iw_rm")  # RL against the importance-weighted heads
    # warm start: round 1 trains from dpo_source's model; round 2's reference is round 1's policy
    r1 = yaml.safe_load((root / "warm" / "round-1" / "train" / "config.yaml").read_text())
    r2 = yaml.safe_load((root / "warm" / "round-2" / "train" / "config.yaml").read_text())
    assert r1["model"]["path"] == str(root / "dpo_source" / "model") == r1["reference"]
    assert r2["reference"] == str(root / "warm" / "round-1" / "train" / "model")
    rows = [json.loads(line) for line in (root / "warm" / "round-1" / "train_pairs.jsonl").read_text().splitlines()]
    weights = {r["id"]: r["weight"] for r in map(json.loads, (root / "weights" / "dpo_classifier" / "weights.jsonl")
                                                 .read_text().splitlines())}
    pseudo = [r for r in rows if "provenance" in r]
    assert pseudo and all(0 < r["weight"] < 1 for r in pseudo)  # tanh(margin / 2): confidence, not 1
    assert all(r["weight"] == pytest.approx(weights[r["id"]]) for r in rows if "provenance" not in r)
    assert len(rows) - len(pseudo) == 4  # mix_source_pairs of the source pairs, with their weights
    # the heads' agreement on each round's pseudo-pairs reaches the arm's diagnostics and its row
    warm_rounds = json.loads((root / "stages" / "arm_warm.json").read_text())["diagnostics"]["rounds"]
    agreement = [json.loads((root / "warm" / f"round-{r}" / "labels" / "label_summary.json").read_text())
                 ["head_agreement"] for r in (1, 2)]
    assert [r["head_agreement"] for r in warm_rounds] == agreement and all(0 <= a <= 1 for a in agreement)
    assert next(r for r in res["arms"] if r["arm"] == "warm")["head_agreement_by_round"] == agreement
    assert res["arms"][[r["arm"] for r in res["arms"]].index("random_labels")]["label_accuracy"] is not None
    assert "Reward models" in (root / "report.html").read_text() and "shift cost" in (root / "results.md").read_text()
    # seed replicates: one row per arm; replicate k of a warm start starts from replicate k of its source
    rows = {r["arm"]: r for r in res["arms"]}
    assert set(rows) == {a["name"] for a in cfg["arms"]}
    assert rows["warm"]["seeds"] == 2 and rows["warm"]["seed_sd"] is not None and rows["oracle"]["seeds"] == 2
    assert rows["warm"]["matched"]["arm"] == "random_labels" and "vs random_labels (" in (root / "results.md").read_text()
    r1 = yaml.safe_load((root / "warm@1" / "round-1" / "train" / "config.yaml").read_text())
    assert r1["model"]["path"] == str(root / "dpo_source@1" / "model") and r1["seed"] == cfg.get("seed", 0) + 1
    ev = json.loads((root / "evaluate" / "evaluation.json").read_text())["policies"]
    assert {"dpo_source@1", "warm@1"} <= set(ev)
    assert rows["dpo_source"]["gold"] == pytest.approx((ev["dpo_source"]["gold_mean"] + ev["dpo_source@1"]["gold_mean"]) / 2)
    # gold-free selection with the heads: every member scores each candidate, whose overlap with the source is measured
    sel = res["selection"]
    assert [c["name"] for c in sel["candidates"] if c["point"] is None] == [
        "dpo_source", "dpo_source@1", "dpo_classifier", "warm", "warm@1", "iw_rm", "iw_refit", "rl_iw"]
    assert [c["name"] for c in sel["candidates"] if c["point"]] == ["warm round 1 end", "warm@1 round 1 end",
                                                                     "iw_refit round 1 end"]
    assert sel["members"] == 4 and all(0 < c["ess_fraction"] <= 1 and c["lcb"] <= c["score"] for c in sel["candidates"])
    cons = sel["selectors"]["conservative"]
    kept = [c for c in sel["candidates"] if c["ess_fraction"] >= 0.1]
    assert cons["pick"] == (max(kept, key=lambda c: c["lcb"])["name"] if kept else None)
    assert "Gold-free selection" in (root / "results.md").read_text()


@pytest.mark.parametrize("arm, message", [
    ({"name": "x", "kind": "magic"}, "arms[1].kind: expected one of dpo, initial, pseudo, rl, got 'magic'"),
    ({"name": "x", "kind": "dpo", "estimatr": {"name": "kliep"}}, "unknown key estimatr in 'arms.x'"),
    ({"name": "x", "kind": "dpo", "estimator": {"name": "kliep", "sigmaa": 1}}, "arms.x.unknown key sigmaa"),
    ({"name": "x", "kind": "dpo", "train": {"lr": "fast"}}, "arms.x.train.lr"),
    ({"name": "x", "kind": "pseudo", "labeller": "crowd"}, "arms.x.labeller: expected one of gold, judge, random, reward_model"),
    ({"name": "x", "kind": "rl", "rl": {"prompts": "p.jsonl"}}, "arms.x.rl: prompts are set by the experiment"),
    ({"name": "x", "kind": "pseudo", "init": "later"}, "arms.x: 'later' is not an arm listed before it"),
    ({"name": "x", "kind": "dpo", "seeds": 0}, "arms.x.seeds: expected a whole number >= 1"),
    ({"name": "x", "kind": "pseudo", "reward_weights": {"stabilise": {}}}, "arms.x.reward_weights: expected"),
])
def test_a_bad_arm_is_refused_before_anything_is_written(bench_cfg, tmp_path, capsys, arm, message):
    cfg = {**bench_cfg, "arms": [{"name": "initial", "kind": "initial"}, arm]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["experiment", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize("oracle_ci, reported", [([0.05, 0.2], True), ([-0.1, 0.2], False), ([-0.3, -0.1], False)])
def test_gap_recovery_only_when_the_oracle_is_significantly_better(oracle_ci, reported):
    from shiftalign.experiment.arms import ArmResult

    k = "gold_diff_vs_src"
    pol = {"src": {"gold_mean": 0.5, k: 0.0, f"{k}_ci95": [0.0, 0.0]},
           "oracle": {"gold_mean": 0.5 + sum(oracle_ci) / 2, k: sum(oracle_ci) / 2, f"{k}_ci95": oracle_ci},
           "method": {"gold_mean": 0.55, k: 0.05, f"{k}_ci95": [-0.01, 0.11]}}
    for e in pol.values():
        e.update(win_rate_vs_baseline=0.5, kl_to_baseline=0.1)
    rows = {r["arm"]: r for r in rows_of("src", "oracle", {n: ArmResult(n) for n in pol}, {"policies": pol}, {})}
    if reported:
        assert rows["method"]["gap_recovery"] == pytest.approx(0.05 / 0.125)
    else:
        assert rows["method"]["gap_recovery"] is None  # an oracle worse than source-only gives no ratio


def _row(arm, diff, ci, **kw):
    return {"arm": arm, "gold": 0.5 + diff, "diff": diff, "ci95": ci, "gap_recovery": None, "kl": 1.0,
            "kl_ci95": [0.8, 1.2], **kw}


def test_the_verdict_states_the_result_from_the_numbers():
    from shiftalign.experiment.verdict import verdict

    kinds = {"initial": "initial", "src": "dpo", "weighted": "dpo", "pseudo": "pseudo", "oracle": "pseudo"}
    rows = [_row("initial", -0.1, [-0.2, -0.01]), _row("src", 0.0, [0.0, 0.0]),
            _row("weighted", 0.04, [0.01, 0.07], ess_fraction=0.31, domain_auc=[0.84, 0.52], gap_recovery=0.5),
            _row("pseudo", -0.02, [-0.05, 0.01], label_accuracy=0.75, pseudo_pairs=64),
            _row("oracle", 0.08, [0.03, 0.13])]
    lines = verdict(rows, kinds, "src", "oracle", "vader")
    assert lines[0].startswith("Best method arm on the gold reward (vader): `weighted`, +0.04 [+0.01, +0.07] "
                               "against `src` (resolved: the interval lies above zero).")
    assert "The oracle `oracle` (gold labels on the target) gains +0.08 [+0.03, +0.13] over `src`: resolved" in lines[0]
    assert "`weighted` recovers 0.5 of the gap." in lines[0]
    assert lines[1] == ("`weighted`: +0.04 [+0.01, +0.07]; ESS/N 0.31; domain AUC 0.84 → 0.52; "
                        "KL 1 [0.8, 1.2] nats")
    assert lines[2].startswith("`pseudo`: −0.02 [−0.05, +0.01]; label accuracy 0.75 on 64 pseudo-pairs")
    # Nothing beats the baseline and the oracle is unresolved: said so, and no ratio.
    rows[2] = _row("weighted", -0.01, [-0.04, 0.02])
    rows[4] = _row("oracle", 0.03, [-0.01, 0.07])
    lines = verdict(rows, kinds, "src", "oracle", "vader")
    assert lines[0].startswith("No method arm beats `src` on the gold reward (vader); the closest is `weighted`, "
                               "−0.01 [−0.04, +0.02] (not resolved: the interval contains zero).")
    assert "not resolved: at this budget gold labels of the target buy nothing measurable" in lines[0]
    assert "recovers" not in lines[0]


def test_the_default_profile_uses_the_same_method_settings_on_every_gold():
    """bench/shift/default_plain_language.yaml and default_readability.yaml extend default.yaml: resolved, each
    differs from it in exactly the gold, its two pairs files and the output directory, with the same arms in the
    same order; the format regime's profiles differ from the default ones in the pairs files alone, and the
    methods and recipe-ablation profiles' second gold from their first in the gold and its pairs files; all parse
    as experiment configs."""
    from pathlib import Path

    from shiftalign.config import load_config, to_dict
    from shiftalign.experiment.config import ExperimentConfig, parse_arms

    def flat(tree, prefix=""):  # dotted key -> value; the arms keyed by name
        if isinstance(tree, dict):
            return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        if prefix == "arms.":
            return {k: v for arm in tree for k, v in flat(arm, f"arms.{arm['name']}.").items()}
        return {prefix[:-1]: tree}

    root = Path(__file__).resolve().parents[1] / "bench" / "shift"
    default = to_dict(load_config(str(root / "default.yaml"), [], ExperimentConfig))
    for variant in ("default_plain_language.yaml", "default_readability.yaml"):
        assert yaml.safe_load((root / variant).read_text())["extends"] == "default.yaml"
        cfg = to_dict(load_config(str(root / variant), [], ExperimentConfig))
        assert [a["name"] for a in cfg["arms"]] == [a["name"] for a in default["arms"]]
        a, b = flat(default), flat(cfg)
        assert a.keys() == b.keys()
        assert {k for k in a if a[k] != b[k]} == {"output_dir", "gold.name", "data.source_pairs",
                                                  "data.heldout_pairs"}, variant
        gold = cfg["gold"]["name"]
        assert (cfg["data"]["source_pairs"], cfg["data"]["heldout_pairs"]) == (
            f"data/shift/default/source_pairs_{gold}.jsonl", f"data/shift/default/heldout_pairs_{gold}.jsonl")
    for variant, base, golds in (("format.yaml", "default.yaml", False),
                                 ("format_plain_language.yaml", "default_plain_language.yaml", False),
                                 ("format_plain_language.yaml", "format.yaml", True),
                                 ("methods_plain_language.yaml", "methods.yaml", True),
                                 ("recipe_ablations_plain_language.yaml", "recipe_ablations.yaml", True)):
        cfg = flat(to_dict(load_config(str(root / variant), [], ExperimentConfig)))
        ref = flat(to_dict(load_config(str(root / base), [], ExperimentConfig)))
        assert ref.keys() == cfg.keys()
        changed = {"output_dir", "data.source_pairs", "data.heldout_pairs"} | ({"gold.name"} if golds else set())
        assert {k for k in ref if ref[k] != cfg[k]} == changed, variant
        cue = "_format" if variant.startswith("format") else ""
        assert cfg["data.source_pairs"] == f"data/shift/default/source_pairs_{cfg['gold.name']}{cue}.jsonl"
    for f in ("default.yaml", "default_plain_language.yaml", "default_readability.yaml", "small.yaml",
              "small_data.yaml", "format.yaml", "format_plain_language.yaml", "methods.yaml",
              "methods_plain_language.yaml", "recipe_ablations.yaml", "recipe_ablations_plain_language.yaml"):
        parse_arms(load_config(str(root / f), [], ExperimentConfig))


def test_rows_and_verdict_read_the_best_arm_family_wise_and_against_the_control():
    """Per-prompt numbers of a baseline, three method arms, a random-label control and an oracle: only
    method arms get a family-wise interval, wider than their own; the control is no method, and the
    verdict gives the best arm's family-wise interval and its difference to the control."""
    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.verdict import verdict

    rng = np.random.default_rng(0)
    prompts = rng.normal(size=48)
    shift = {"src": 0.0, "m1": 0.02, "m2": 0.15, "m3": -0.05, "random": 0.12, "oracle": 0.3, "initial": -0.1}
    pol = {n: {"gold_per_prompt": list(prompts + s + rng.normal(0, 0.2, 48)), "kl_per_prompt": [1.0] * 48, "kl_to_baseline": 1.0,
               "win_rate_vs_baseline": 0.5} for n, s in shift.items()}
    for e in pol.values():
        e["gold_mean"] = float(np.mean(e["gold_per_prompt"]))
    roles = {"initial": "reference", "random": "control", **{n: "method" for n in ("src", "m1", "m2", "m3", "oracle")}}
    rows = {r["arm"]: r for r in rows_of("src", "oracle", {n: ArmResult(n) for n in pol}, {"policies": pol}, {},
                                          None, roles)}
    assert set(n for n, r in rows.items() if "ci95_family" in r) == {"m1", "m2", "m3"}
    for n in ("m1", "m2", "m3"):
        lo, hi = rows[n]["ci95"]
        flo, fhi = rows[n]["ci95_family"]
        assert flo < lo and fhi > hi
        assert set(rows[n]["vs_control"]) == {"random"}
    d, lo, hi = rows["m2"]["vs_control"]["random"]
    assert d == pytest.approx(rows["m2"]["gold"] - rows["random"]["gold"]) and lo < d < hi
    kinds = {"initial": "initial", "src": "dpo", "m1": "dpo", "m2": "pseudo", "m3": "dpo", "random": "pseudo",
             "oracle": "pseudo"}
    lines = verdict(list(rows.values()), kinds, "src", "oracle", "vader", roles)
    assert lines[0].startswith("Best method arm on the gold reward (vader): `m2`")  # not the control
    assert "Family-wise over the 3 method arms" in lines[0]
    assert "The control `random` (no information about the target: what training alone does) is at" in lines[0]
    assert "`m2` against it:" in lines[0]
    assert any(line.startswith("`random`:") for line in lines[1:])
    roles["src"] = "control"  # source-only DPO is a control by its options: as the baseline it is none of them
    rows = {r["arm"]: r for r in rows_of("src", "oracle", {n: ArmResult(n) for n in pol}, {"policies": pol}, {},
                                          None, roles)}
    assert set(rows["m2"]["vs_control"]) == {"random"}
    assert "The control `src`" not in verdict(list(rows.values()), kinds, "src", "oracle", "vader", roles)[0]


def test_arm_roles_from_options():
    """Unweighted source-only DPO and random labels are controls; weighted DPO and labels with information
    are methods; the initial policy is the reference."""
    from shiftalign.experiment.arms import arm_role
    from shiftalign.experiment.arms.dpo import DPOOptions
    from shiftalign.experiment.arms.initial import InitialOptions
    from shiftalign.experiment.arms.pseudo import PseudoOptions

    assert arm_role(DPOOptions(train={"max_steps": 120})) == "control"
    assert arm_role(DPOOptions(estimator={"name": "classifier"})) == "method"
    assert arm_role(DPOOptions(policy_ratio={})) == "method"
    assert arm_role(PseudoOptions(labeller="random", init="dpo_source")) == "control"
    assert arm_role(PseudoOptions(labeller="reward_model")) == "method"
    assert arm_role(PseudoOptions(labeller="gold", init="dpo_source")) == "oracle"
    assert arm_role(InitialOptions()) == "reference"


def test_an_arm_is_read_against_its_own_oracle():
    """An arm naming its recipe's oracle gets its gap recovery against that one; the others keep the
    experiment's oracle; oracles are not method arms, and the verdict says which oracle the best arm is
    read against."""
    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.verdict import verdict

    k = "gold_diff_vs_src"
    gains = {"src": (0.0, [0.0, 0.0]), "oracle": (0.1, [0.05, 0.15]), "oracle_warm": (0.4, [0.3, 0.5]),
             "warm": (0.2, [0.1, 0.3]), "single": (0.05, [0.01, 0.09])}
    pol = {n: {"gold_mean": 0.5 + d, k: d, f"{k}_ci95": ci, "win_rate_vs_baseline": 0.5, "kl_to_baseline": 1.0}
           for n, (d, ci) in gains.items()}
    roles = {"src": "control", "oracle": "oracle", "oracle_warm": "oracle", "warm": "method", "single": "method"}
    rows = rows_of("src", "oracle", {n: ArmResult(n) for n in pol}, {"policies": pol}, {}, roles=roles,
                    oracles={"warm": "oracle_warm"})
    by = {r["arm"]: r for r in rows}
    assert by["warm"]["gap_recovery"] == pytest.approx(0.2 / 0.4) and by["warm"]["oracle"] == "oracle_warm"
    assert by["single"]["gap_recovery"] == pytest.approx(0.05 / 0.1) and by["single"]["oracle"] == "oracle"
    lines = verdict(rows, {n: "pseudo" for n in pol}, "src", "oracle", "vader", roles)
    assert lines[0].startswith("Best method arm on the gold reward (vader): `warm`")  # not oracle_warm
    assert ("`warm` is read against its own oracle `oracle_warm` (its recipe with gold labels), at +0.4 [+0.3, +0.5] "
            "over `src`: it recovers 0.5 of that gap.") in lines[0]
    assert not any(line.startswith("`oracle_warm`") for line in lines)


def test_an_arms_oracle_must_be_an_arm_and_runs_with_it_and_max_seeds_caps_replicates():
    from shiftalign.errors import ConfigError
    from shiftalign.experiment.config import ExperimentConfig, parse_arms, selected_arms

    arms = [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
            {"name": "oracle_warm", "kind": "pseudo", "labeller": "gold", "init": "dpo_source"},
            {"name": "warm", "kind": "pseudo", "init": "dpo_source", "oracle": "oracle_warm"},
            {"name": "oracle", "kind": "pseudo", "labeller": "gold"}, {"name": "other", "kind": "dpo"}]
    cfg = ExperimentConfig(arms=arms, only_arms=["warm"])
    assert [a.name for a in selected_arms(parse_arms(cfg), cfg)] == ["initial", "dpo_source", "oracle_warm", "warm",
                                                                     "oracle"]
    cfg = ExperimentConfig(arms=[dict(a, seeds=3) if a["name"] == "warm" else a for a in arms], max_seeds=1)
    assert {a.name: a.seeds for a in selected_arms(parse_arms(cfg), cfg)}["warm"] == 1  # the others come later
    with pytest.raises(ConfigError, match="max_seeds: expected a whole number >= 1, got 0"):
        parse_arms(ExperimentConfig(arms=arms, max_seeds=0))
    arms[3]["oracle"] = "nope"
    with pytest.raises(ConfigError, match="arms.warm.oracle: 'nope' is not one of the arms"):
        parse_arms(ExperimentConfig(arms=arms))


def test_only_arms_runs_a_selection_and_a_later_run_adds_the_rest(bench_cfg, tmp_path, monkeypatch, capsys):
    """only_arms runs the named arms with the initial, baseline and oracle arms and what they build on; the
    full config later in the same directory runs only what is left (and the evaluation)."""
    arms = [{"name": "initial", "kind": "initial"}, {"name": "dpo_source", "kind": "dpo"},
            {"name": "warm", "kind": "pseudo", "labeller": "gold", "init": "dpo_source"},
            {"name": "random_labels", "kind": "pseudo", "labeller": "random"},
            {"name": "oracle", "kind": "pseudo", "labeller": "gold"}]
    root = tmp_path / "bench"
    with FakeLLM() as server:
        assert _run({**bench_cfg, "arms": arms, "only_arms": ["warm"]}, tmp_path, monkeypatch, server) == 0
        done = {p.stem for p in (root / "stages").glob("arm_*.json")}
        assert done == {"arm_initial", "arm_dpo_source", "arm_warm", "arm_oracle"}
        assert {r["arm"] for r in json.loads((root / "results.json").read_text())["arms"]} == \
            {"initial", "dpo_source", "warm", "oracle"}
        capsys.readouterr()
        assert _run({**bench_cfg, "arms": arms}, tmp_path, monkeypatch, server) == 0
        out = capsys.readouterr().out
        # + the selection: random labels are no candidate, so its candidates are unchanged
        assert out.count("done earlier") == 4 + 4 + 1 and "arm_random_labels ..." in out
        assert _run({**bench_cfg, "arms": arms, "only_arms": ["nope"]}, tmp_path, monkeypatch, server) == 2
        assert "only_arms: nope not among the arms" in capsys.readouterr().err


def test_an_iterated_arm_reports_label_accuracy_and_head_agreement_by_round_averaged_over_seeds():
    from shiftalign.experiment.arms import ArmResult
    from shiftalign.experiment.verdict import diagnosis

    k = "gold_diff_vs_src"
    pol = {n: {"gold_mean": 0.5, k: 0.0, f"{k}_ci95": [0.0, 0.0], "win_rate_vs_baseline": 0.5, "kl_to_baseline": 1.0}
           for n in ("src", "it", "it@1")}
    rounds = [{"round": 1, "label_accuracy": 0.6, "head_agreement": 0.9}, {"round": 2, "label_accuracy": 0.3,
                                                                           "head_agreement": 0.6}]
    arms = {"src": ArmResult("src"),
            "it": ArmResult("it", diagnostics={"label_accuracy": 0.45, "pseudo_pairs": 256, "rounds": rounds}),
            "it@1": ArmResult("it@1", diagnostics={"label_accuracy": 0.55, "pseudo_pairs": 256,
                                                   "rounds": [{"round": 1, "label_accuracy": 0.8, "head_agreement": 0.7},
                                                              {"round": 2, "label_accuracy": 0.3, "head_agreement": 0.4}]})}
    rows = {r["arm"]: r for r in rows_of("src", None, arms, {"policies": pol}, {},
                                          replicates={"src": ["src"], "it": ["it", "it@1"]})}
    assert rows["it"]["label_accuracy_by_round"] == pytest.approx([0.7, 0.3])
    assert rows["src"]["label_accuracy_by_round"] == []
    assert rows["it"]["head_agreement_by_round"] == pytest.approx([0.8, 0.5])
    assert "label accuracy 0.5 on 256 pseudo-pairs (0.7 → 0.3 by round); every head agrees on 0.8 → 0.5 of them by " \
           "round" in diagnosis(rows["it"], "pseudo")
