"""The LLM-judge labeller against loopback servers speaking the OpenAI and Anthropic wire formats,
with injected faults: every item ends labelled or explicitly unlabelled with its reason."""

import json
import time

import pytest

from conftest import write_jsonl
from fake_llm_server import FakeLLM
from shiftalign.config import from_dict
from shiftalign.recipes.label import LabelConfig, main as label_main

pytest.importorskip("openai")
pytest.importorskip("anthropic")

MARKERS = ["plain one", "plain two", "FAULT429", "FAULT500", "SLOW", "MALFORMED", "REASKOK", "TRUNC", "REFUSE"]
EXPECT = {"plain one": "label", "plain two": "label", "FAULT429": "label", "FAULT500": "label", "SLOW": "deadline",
          "MALFORMED": "unparseable", "REASKOK": "label", "TRUNC": "truncated", "REFUSE": "refusal"}


def samples(tmp_path, markers=MARKERS, name="s.jsonl"):
    rows = []
    for m in markers:
        rows.append({"id": f"{m}-0", "prompt": f"question {m}", "completion": f"a good answer to {m}"})
        rows.append({"id": f"{m}-1", "prompt": f"question {m}", "completion": f"a rude reply to {m}"})
    rows += [{"id": "same-0", "prompt": "q same", "completion": "identical"}, {"id": "same-1", "prompt": "q same",
                                                                               "completion": "identical"}]
    return write_jsonl(tmp_path / name, rows)


def run(tmp_path, server, kind, sample_file, monkeypatch, out="out", **limits):
    monkeypatch.setenv("JUDGE_KEY", "sk-test-SECRET-0123456789")
    url = server.openai_url if kind == "openai" else server.anthropic_url
    cfg = from_dict(LabelConfig, {
        "samples": sample_file, "output_dir": str(tmp_path / out), "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": kind, "model": "judge-1", "base_url": url, "api_key_env": "JUDGE_KEY"},
                  "limits": {"concurrency": 4, "deadline": 2.5, "backoff_base": 0.05, "request_timeout": 5, **limits},
                  "cache": str(tmp_path / "cache.sqlite")}})
    summary = label_main(cfg, log=lambda m: None)
    pairs = [json.loads(l) for l in (tmp_path / out / "pseudo_pairs.jsonl").read_text().splitlines()]
    dropped = [json.loads(l) for l in (tmp_path / out / "unlabelled.jsonl").read_text().splitlines()]
    return summary, pairs, dropped


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_faults_end_labelled_or_unlabelled_with_reason(tmp_path, monkeypatch, kind):
    with FakeLLM(slow_seconds=4.0) as server:
        t0 = time.monotonic()
        summary, pairs, dropped = run(tmp_path, server, kind, samples(tmp_path), monkeypatch)
        elapsed = time.monotonic() - t0
        assert server.by_status.get(429) == 2 and server.by_status.get(500) == 2  # once per order
    assert len(pairs) + len(dropped) == len(MARKERS) + 1  # every item accounted for
    got = {p["prompt"].split()[-1]: "label" for p in pairs}
    for d in dropped:
        got[d["prompt"].split()[-1] if d["prompt"] != "q same" else "same"] = d["reason"]
    for m, want in EXPECT.items():
        assert got[m.split()[-1]] == want, (m, got)
    assert got["same"] == "identical responses"
    for p in pairs:  # no label it did not earn: the judge prefers the "good" response
        assert "good" in p["chosen"] and "rude" in p["rejected"]
        assert p["provenance"]["labeller"] == "judge" and p["provenance"]["template_hash"]
    assert elapsed >= 1.0  # the 429's retry-after of 1 s was honoured


def test_position_biased_judge_gives_no_labels(tmp_path, monkeypatch):
    with FakeLLM(biased=True) as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", samples(tmp_path, ["plain one", "plain two"]),
                                      monkeypatch)
    assert pairs == []
    assert {d["reason"] for d in dropped} == {"position disagreement", "identical responses"}


def test_restart_is_served_from_cache(tmp_path, monkeypatch):
    markers = ["plain one", "plain two", "MALFORMED", "REASKOK", "FAULT500"]
    half = samples(tmp_path, markers[:2], "half.jsonl")
    full = samples(tmp_path, markers, "full.jsonl")
    with FakeLLM() as server:
        run(tmp_path, server, "openai", half, monkeypatch)  # the job "killed" after the first two items
        first = server.requests
    with FakeLLM() as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", full, monkeypatch, out="out2")
        # only the three new items are asked: 2 orders each, + re-asks (MALFORMED 2, REASKOK 2) + 500 retries (2)
        assert server.requests == 3 * 2 + 4 + 2
        assert summary["cache_hits"] == 4  # both orders of the two finished items
    with FakeLLM() as server:
        summary, pairs2, _ = run(tmp_path, server, "openai", full, monkeypatch, out="out3")
        assert server.requests == 0 and pairs2 == pairs
    assert first == 4


def test_budget_cap_stops_spending(tmp_path, monkeypatch):
    markers = [f"plain {i}" for i in range(12)]
    with FakeLLM() as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", samples(tmp_path, markers), monkeypatch,
                                      concurrency=1, budget_usd=0.02, input_usd_per_mtok=10.0,
                                      output_usd_per_mtok=30.0)
    assert summary["budget_exhausted"] and summary["cost_usd"] <= 0.02
    assert 0 < len(pairs) < len(markers)
    assert any(d["reason"] == "budget" for d in dropped)
    assert len(pairs) + len(dropped) == len(markers) + 1


def test_soft_labels_and_key_never_written(tmp_path, monkeypatch):
    with FakeLLM() as server:
        summary, pairs, _ = run(tmp_path, server, "openai", samples(tmp_path, ["plain one"]), monkeypatch)
    assert pairs[0]["provenance"]["confidence"] == pytest.approx((0.9 / 0.98 + 0.9 / 0.98) / 2, abs=1e-3)
    for f in list((tmp_path / "out").iterdir()) + [tmp_path / "cache.sqlite"]:
        assert b"SECRET" not in f.read_bytes(), f


def test_local_judge_never_defaults_a_verdict(tmp_path, tiny_dir):
    """A tiny random local model cannot answer the template: every pair must end unlabelled with a reason."""
    cfg = from_dict(LabelConfig, {
        "samples": samples(tmp_path, ["plain one", "plain two"]), "output_dir": str(tmp_path / "loc"),
        "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": "local", "model": tiny_dir}, "judge": {"max_tokens": 8}}})
    summary = label_main(cfg, log=lambda m: None)
    assert summary["pairs"] == 0 and summary["unlabelled"] == 3
    assert set(summary["reasons"]) <= {"truncated", "unparseable", "identical responses"}


def test_requests_per_minute_limit():
    import asyncio

    from shiftalign.labeling.limits import TokenBucket

    async def take(n):
        bucket = TokenBucket(per_minute=600)  # 10 per second, burst 600
        bucket.level = 0  # start empty to measure the refill rate
        t0 = time.monotonic()
        for _ in range(n):
            await bucket.take(1)
        return time.monotonic() - t0

    assert 0.9 <= asyncio.run(take(10)) <= 1.6


class _BiasedStub:
    """Always answers A (position bias), but its verdict-token probabilities lean toward the
    response containing "good": P(A) = 0.8 when A is good, 0.6 otherwise."""

    def __init__(self):
        self.seen = []

    async def chat(self, messages, max_tokens, temperature):
        import math

        from shiftalign.labeling.clients import Reply

        self.seen.append(messages)
        user = messages[1]["content"]
        a_good = "good" in user.split("[Response A]")[1].split("[Response B]")[0]
        pa = 0.8 if a_good else 0.6
        return Reply("A]]", "stop", 10, 2, [{"A": math.log(pa), "B": math.log(1 - pa)}, {"]]": 0.0}])


@pytest.mark.parametrize("decide", ["verdicts", "soft"])
def test_order_averaged_soft_decision_cancels_position_bias(decide):
    import asyncio

    from shiftalign.labeling.judge import JudgeConfig, PairJudge
    from shiftalign.labeling.limits import Limiter, LimitsConfig

    stub = _BiasedStub()
    judge = PairJudge(stub, "local", "stub", JudgeConfig(prefill="[[", decide=decide), Limiter(LimitsConfig()), None)
    res = asyncio.run(judge.judge_pair("q", "a plain answer", "a good answer", 30))
    assert all(m[-1] == {"role": "assistant", "content": "[["} for m in stub.seen)  # the reply is prefilled
    assert res["verdicts"] == ["A", "A"]  # "[[" + "A]]" parses
    # P(y1 better) = (P1(A) + P2(B)) / 2 = (0.6 + 0.2) / 2 = 0.4: y2 ("good") wins with confidence 0.6.
    assert res["soft_first"] == pytest.approx(0.4)
    if decide == "verdicts":
        assert res["label"] == "tie" and res["reason"] == "position disagreement"
    else:
        assert res["label"] == "second" and res["confidence"] == pytest.approx(0.6)


def test_prefill_is_refused_on_openai_and_decide_is_checked():
    from shiftalign.errors import ConfigError
    from shiftalign.labeling.judge import JudgeConfig, PairJudge
    from shiftalign.labeling.limits import Limiter, LimitsConfig

    with pytest.raises(ConfigError, match="prefill"):
        PairJudge(None, "openai", "m", JudgeConfig(prefill="[["), Limiter(LimitsConfig()), None)
    with pytest.raises(ConfigError, match="decide"):
        PairJudge(None, "local", "m", JudgeConfig(decide="vote"), Limiter(LimitsConfig()), None)


def test_local_judge_with_prefill_and_soft_decision(tmp_path, tiny_dir):
    """The local backend continues a prefilled reply; whatever a random model answers, every pair ends
    labelled (from the soft decision) or unlabelled with a reason."""
    cfg = from_dict(LabelConfig, {
        "samples": samples(tmp_path, ["plain one", "plain two"]), "output_dir": str(tmp_path / "loc"),
        "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": "local", "model": tiny_dir},
                  "judge": {"max_tokens": 2, "prefill": "[[", "decide": "soft"}}})
    summary = label_main(cfg, log=lambda m: None)
    assert summary["pairs"] + summary["unlabelled"] == 3
    assert set(summary["reasons"]) <= {"truncated", "unparseable", "identical responses", "soft tie"}
