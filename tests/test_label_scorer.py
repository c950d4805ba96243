"""The scorer labeller (oracle labels from any registered scorer): best-vs-worst pairs oriented by the scorer."""

import json

from shiftalign.config import from_dict
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from conftest import write_jsonl


def _samples(tmp_path):
    rows = [{"id": f"p{p}-{k}", "prompt": f"question {p}", "completion": f"answer {p} number {k} " * (k + 1)}
            for p in range(4) for k in range(4)]
    rows += [{"id": "t-0", "prompt": "tie q", "completion": "same"}, {"id": "t-1", "prompt": "tie q", "completion": "same"}]
    return write_jsonl(tmp_path / "s.jsonl", rows)


def test_scorer_labeller_orients_pairs_by_the_scorer(tmp_path):
    """The oracle labeller: any registered scorer (here a python function) labels best vs worst."""
    (tmp_path / "gold.py").write_text("def g(prompts, responses):\n    return [len(r) for r in responses]\n")
    cfg = from_dict(LabelConfig, {"samples": _samples(tmp_path), "output_dir": str(tmp_path / "out"),
                                  "labeller": "scorer",
                                  "scorer": {"scorer": {"name": "python", "function": f"{tmp_path / 'gold.py'}:g"}}})
    summary = label_main(cfg)
    pairs = [json.loads(l) for l in (tmp_path / "out" / "pseudo_pairs.jsonl").read_text().splitlines()]
    assert summary["pairs"] == 4 and summary["reasons"] == {"identical responses": 1}
    for p in pairs:  # the longest response (k = 3) is chosen over the shortest (k = 0)
        assert p["chosen_id"].endswith("-3") and p["rejected_id"].endswith("-0")
        assert p["provenance"]["labeller"] == "scorer" and p["provenance"]["margin"] > 0
