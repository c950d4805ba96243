"""The judge's budget when a request times out in flight: the server may have processed and charged it,
so it is settled at its reserved worst case (input-token bound + max_tokens), never at zero, and counted.
Against the loopback fake server, whose SLOW marker answers after ``slow_seconds``."""

import json

import pytest

from shiftalign.config import from_dict
from shiftalign.labeling.judge import JudgeConfig
from shiftalign.labeling.limits import input_token_bound
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from conftest import write_jsonl
from fake_llm_server import FakeLLM

pytest.importorskip("openai")

PRICES = {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0}


def worst_case_tokens(prompt: str, a: str, b: str) -> int:
    j = JudgeConfig()
    return input_token_bound([{"role": "system", "content": j.system},
                              {"role": "user", "content": j.template.format(prompt=prompt, a=a, b=b)}])


@pytest.mark.parametrize("where, limits, requests", [
    ("deadline", {"deadline": 0.6, "request_timeout": 30}, 2),  # abandoned at the item's deadline: one per order
    ("sdk timeout", {"deadline": 5.0, "request_timeout": 0.4, "max_attempts": 2}, 4),  # the HTTP timeout, retried once
])
def test_a_timed_out_request_is_charged_its_worst_case(tmp_path, monkeypatch, where, limits, requests):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    rows = [{"id": "s-0", "prompt": "question SLOW", "completion": "a good answer"},
            {"id": "s-1", "prompt": "question SLOW", "completion": "a rude reply"}]
    with FakeLLM(slow_seconds=1.5) as server:
        cfg = from_dict(LabelConfig, {
            "samples": write_jsonl(tmp_path / "s.jsonl", rows), "output_dir": str(tmp_path / "out"),
            "labeller": "judge", "progress": False,
            "judge": {"backend": {"kind": "openai", "model": "judge-1", "base_url": server.openai_url,
                                  "api_key_env": "JUDGE_KEY"},
                      "limits": {"concurrency": 2, "backoff_base": 0.05, **PRICES, **limits},
                      "cache": str(tmp_path / "cache.sqlite")}})
        summary = label_main(cfg)
    dropped = [json.loads(l) for l in (tmp_path / "out" / "unlabelled.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in dropped] != [] and summary["pairs"] == 0
    assert summary["unknown_outcome_requests"] == requests, where
    per_request_in = [worst_case_tokens("question SLOW", "a good answer", "a rude reply"),
                      worst_case_tokens("question SLOW", "a rude reply", "a good answer")]
    assert summary["input_tokens"] == sum(per_request_in) * requests // 2
    assert summary["output_tokens"] == JudgeConfig().max_tokens * requests
    want = (summary["input_tokens"] * PRICES["input_usd_per_mtok"]
            + summary["output_tokens"] * PRICES["output_usd_per_mtok"]) / 1e6
    assert summary["cost_usd"] == pytest.approx(want) and summary["cost_usd"] > 0
