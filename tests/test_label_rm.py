"""The reward-model labeller on tiny reward models: best-vs-worst pairs, margin and ensemble filters, ties."""

import json

import pytest
import torch

from shiftalign.config import from_dict
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from conftest import write_jsonl


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    from shiftalign.models.tiny import save_tiny

    d = tmp_path_factory.mktemp("rms")
    return [save_tiny(d / f"rm{s}", seed=s, reward=True) for s in (0, 1)]


def _samples(tmp_path):
    rows = []
    for p in range(4):
        for k in range(4):
            rows.append({"id": f"p{p}-{k}", "prompt": f"question {p}", "completion": f"answer {p} number {k} " * (k + 1)})
    rows += [{"id": "t-0", "prompt": "tie q", "completion": "same"}, {"id": "t-1", "prompt": "tie q", "completion": "same"}]
    return write_jsonl(tmp_path / "s.jsonl", rows)


def _run(tmp_path, models, **rm):
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"  # one directory per configuration
    cfg = from_dict(LabelConfig, {"samples": _samples(tmp_path), "output_dir": str(out),
                                  "labeller": "reward_model", "reward_model": {"models": models, **rm}})
    summary = label_main(cfg)
    pairs = [json.loads(l) for l in (out / "pseudo_pairs.jsonl").read_text().splitlines()]
    dropped = [json.loads(l) for l in (out / "unlabelled.jsonl").read_text().splitlines()]
    return summary, pairs, dropped


def _independent_scores(path, rows):
    """Score with a plain AutoModelForSequenceClassification forward (last token), one row at a time."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    m = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = {}
    for r in rows:
        ids = tok(r["prompt"], add_special_tokens=False)["input_ids"] + tok(r["completion"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out[r["id"]] = m(torch.tensor([ids + [tok.eos_token_id]])).logits[0, 0].item()
    return out


def test_best_vs_worst_matches_independent_scores(tmp_path, rms):
    summary, pairs, dropped = _run(tmp_path, rms[:1])
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    ref = _independent_scores(rms[0], rows)
    assert len(pairs) == 4 and [d["reason"] for d in dropped] == ["identical responses"]
    for p in pairs:
        group = [r["id"] for r in rows if r["prompt"] == p["prompt"]]
        assert p["chosen_id"] == max(group, key=ref.get) and p["rejected_id"] == min(group, key=ref.get)
        assert p["provenance"]["scores"][0] == pytest.approx(ref[p["chosen_id"]], abs=1e-4)
        assert p["provenance"]["margin"] > 0 and 0.5 < p["provenance"]["confidence"] < 1


def test_margin_filter(tmp_path, rms):
    _, pairs, dropped = _run(tmp_path, rms[:1], pairs="all", margin=1e6)
    assert pairs == [] and {d["reason"] for d in dropped} == {"margin", "identical responses"}
    _, pairs, _ = _run(tmp_path, rms[:1], pairs="all", margin=0.0)
    assert len(pairs) == 4 * 6


def test_ensemble_mean_and_spread_filter(tmp_path, rms):
    _, pairs, _ = _run(tmp_path, rms, pairs="all")
    assert len(pairs) == 24
    spreads = sorted(p["provenance"]["spread"] for p in pairs)
    for p in pairs:
        ms = p["provenance"]["model_scores"]
        assert p["provenance"]["scores"][0] == pytest.approx(sum(ms[0]) / 2)
    cut = spreads[len(spreads) // 2]
    _, kept, dropped = _run(tmp_path, rms, pairs="all", max_spread=cut)
    assert 0 < len(kept) < 24 and all(p["provenance"]["spread"] <= cut for p in kept)
    assert sum(d["reason"] == "ensemble spread" for d in dropped) == 24 - len(kept)



def test_head_agreement_is_the_share_of_pairs_every_model_orders_as_the_ensemble(tmp_path, rms):
    summary, pairs, _ = _run(tmp_path, rms, pairs="all")
    unanimous = [all(c > r for c, r in zip(*p["provenance"]["model_scores"])) for p in pairs]
    assert 0 < sum(unanimous) < len(pairs)  # two random models: some pairs split them
    assert summary["head_agreement"] == pytest.approx(sum(unanimous) / len(pairs))
    assert "head_agreement" not in _run(tmp_path, rms[:1], pairs="all")[0]  # one model: nothing to agree on


def test_min_agreement_keeps_pairs_whose_margin_exceeds_that_many_spreads(tmp_path, rms):
    _, pairs, _ = _run(tmp_path, rms, pairs="all")
    z = sorted(p["provenance"]["margin"] / p["provenance"]["spread"] for p in pairs if p["provenance"]["spread"] > 0)
    cut = z[len(z) // 2]
    _, kept, dropped = _run(tmp_path, rms, pairs="all", min_agreement=cut)
    assert 0 < len(kept) < len(pairs)
    assert all(p["provenance"]["margin"] >= cut * p["provenance"]["spread"] for p in kept)
    assert all(d["margin"] < cut * d["spread"] for d in dropped if d["reason"] == "ensemble spread")
