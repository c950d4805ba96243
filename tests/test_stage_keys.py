"""Every shipped experiment config keeps the stage keys it had when its run directories were made, so a
directory made by an earlier shiftalign resumes without retraining an arm: the keys are pinned in
tests/fixtures/stage_keys.json (written by ``python tests/test_stage_keys.py`` from the code they pin;
rewrite it only for a change that must retrain, and say so)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "fixtures" / "stage_keys.json"
CONFIGS = ["configs/experiment.yaml", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench" / "shift").glob("*.yaml"))]


def keys_of(path: str) -> dict:
    from shiftalign.config import load_config
    from shiftalign.experiment.config import ExperimentConfig, parse_arms
    from shiftalign.experiment.engine import arm_keys

    cfg = load_config(str(ROOT / path), [], ExperimentConfig)
    return arm_keys(parse_arms(cfg))


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_keep_their_stage_keys(path):
    pinned = json.loads(PINNED.read_text())
    assert path in pinned, f"{path}: a new shipped config; pin its keys with python tests/test_stage_keys.py"
    assert keys_of(path) == pinned[path]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    PINNED.write_text(json.dumps({p: keys_of(p) for p in CONFIGS}, indent=1, sort_keys=True) + "\n")
