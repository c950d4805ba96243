"""The LLM-judge labeller against loopback servers speaking the OpenAI and Anthropic wire formats,
with injected faults: every item ends labelled or explicitly unlabelled with its reason. Also: the
verdict formats read from realistic replies, the verdict-token probability read at the verdict's own
position, the refusal or recorded fallback of ``decide: soft`` without log-probs, cache invalidation
on the endpoint, the log-probs flag and a local model's files, and the budget on non-ASCII text."""

import asyncio
import json
import math
import time

import pytest

from shiftalign.config import from_dict
from shiftalign.errors import ConfigError
from shiftalign.labeling.cache import ResponseCache
from shiftalign.labeling.clients import BackendConfig, Reply
from shiftalign.labeling.judge import (
    JudgeConfig,
    PairJudge,
    parse_verdict,
    soft_preference,
)
from shiftalign.labeling.limits import (
    Limiter,
    LimitsConfig,
    TokenBucket,
    input_token_bound,
)
from shiftalign.recipes.label import LabelConfig
from shiftalign.recipes.label import main as label_main

from conftest import write_jsonl
from fake_llm_server import FakeLLM

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


def judge_cfg(tmp_path, server, kind, sample_file, out="out", backend=None, judge=None, **limits):
    url = server.openai_url if kind == "openai" else server.anthropic_url
    return from_dict(LabelConfig, {
        "samples": sample_file, "output_dir": str(tmp_path / out), "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": kind, "model": "judge-1", "base_url": url, "api_key_env": "JUDGE_KEY",
                              **(backend or {})}, "judge": judge or {},
                  "limits": {"concurrency": 4, "deadline": 2.5, "backoff_base": 0.05, "request_timeout": 5, **limits},
                  "cache": str(tmp_path / "cache.sqlite")}})


def run(tmp_path, server, kind, sample_file, monkeypatch, out="out", backend=None, judge=None, **limits):
    monkeypatch.setenv("JUDGE_KEY", "sk-test-SECRET-0123456789")
    cfg = judge_cfg(tmp_path, server, kind, sample_file, out, backend, judge, **limits)
    summary = label_main(cfg)
    pairs = [json.loads(l) for l in (tmp_path / out / "pseudo_pairs.jsonl").read_text().splitlines()]
    dropped = [json.loads(l) for l in (tmp_path / out / "unlabelled.jsonl").read_text().splitlines()]
    return summary, pairs, dropped


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_faults_end_labelled_or_unlabelled_with_reason(tmp_path, monkeypatch, kind):
    with FakeLLM(slow_seconds=4.0) as server:
        t0 = time.monotonic()
        _, pairs, dropped = run(tmp_path, server, kind, samples(tmp_path), monkeypatch)
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
        _, pairs, dropped = run(tmp_path, server, "openai", samples(tmp_path, ["plain one", "plain two"]),
                                monkeypatch)
    assert pairs == []
    assert {d["reason"] for d in dropped} == {"position disagreement", "identical responses"}


def test_restart_is_served_from_cache(tmp_path, monkeypatch):
    markers = ["plain one", "plain two", "MALFORMED", "REASKOK", "FAULT500"]
    half = samples(tmp_path, markers[:2], "half.jsonl")
    full = samples(tmp_path, markers, "full.jsonl")
    with FakeLLM() as server:  # one server throughout: its address is part of the cache key
        run(tmp_path, server, "openai", half, monkeypatch)  # the job "killed" after the first two items
        first = server.requests
        summary, pairs, _ = run(tmp_path, server, "openai", full, monkeypatch, out="out2")
        # only the three new items are asked: 2 orders each, + re-asks (MALFORMED 2, REASKOK 2) + 500 retries (2)
        assert server.requests - first == 3 * 2 + 4 + 2
        assert summary["cache_hits"] == 4  # both orders of the two finished items
        before = server.requests
        summary, pairs2, _ = run(tmp_path, server, "openai", full, monkeypatch, out="out3")
        assert server.requests == before and pairs2 == pairs
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
        _, pairs, _ = run(tmp_path, server, "openai", samples(tmp_path, ["plain one"]), monkeypatch)
    assert pairs[0]["provenance"]["confidence"] == pytest.approx((0.9 / 0.98 + 0.9 / 0.98) / 2, abs=1e-3)
    for f in list((tmp_path / "out").iterdir()) + [tmp_path / "cache.sqlite"]:
        assert b"SECRET" not in f.read_bytes(), f


def test_local_judge_never_defaults_a_verdict(tmp_path, tiny_dir):
    """A tiny random local model cannot answer the template: every pair must end unlabelled with a reason."""
    cfg = from_dict(LabelConfig, {
        "samples": samples(tmp_path, ["plain one", "plain two"]), "output_dir": str(tmp_path / "loc"),
        "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": "local", "model": tiny_dir}, "judge": {"max_tokens": 8}}})
    summary = label_main(cfg)
    assert summary["pairs"] == 0 and summary["unlabelled"] == 3
    assert set(summary["reasons"]) <= {"truncated", "unparseable", "identical responses"}


def test_requests_per_minute_limit():
    async def take(n):
        bucket = TokenBucket(per_minute=600)  # 10 per second, burst 600
        bucket.level = 0  # start empty to measure the refill rate
        t0 = time.monotonic()
        for _ in range(n):
            await bucket.take(1)
        return time.monotonic() - t0

    assert 0.9 <= asyncio.run(take(10)) <= 1.6


# ---- verdict parsing: realistic replies ---------------------------------------------------------

VERDICTS = [
    # the article "a" is never the verdict A
    ("Both answers are correct and equally clear.\nVerdict: a tie.", "tie"),
    ("Verdict: A tie.", "tie"),
    ("Verdict: a slight edge to B", None),
    ("Verdict: A slight edge to B.", None),
    ("verdict: a", None),
    ("a", None),
    ("[[a]]", None),
    ("Both are fine, so it is a tie.", None),
    # both bracket styles, ties
    ("Response A is shorter but wrong.\n[[B]]", "B"),
    ("[[ A ]]", "A"),
    ("[[tie]]", "tie"),
    ("[[Tie]]", "tie"),
    ("After weighing both: [B]", "B"),
    ("[tie]", "tie"),
    ("[[B]]\n(Response [A] was longer.)", "B"),  # double brackets outrank single ones
    # an explicit verdict line
    ("Verdict: B", "B"),
    ("**Verdict:** A", "A"),
    ("Verdict: **B**", "B"),
    ("Final verdict is [A].", "A"),
    ("Verdict: Response B is better.", "B"),
    ("Verdict: A, because it answers the question.", "A"),
    ("Verdict: Assistant A", "A"),
    ("Verdict: it's a tie", "tie"),
    # markdown bold, bare replies (re-asks, prefilled replies)
    ("**[[A]]**", "A"),
    ("**B**", "B"),
    ("B.", "B"),
    ("[[" + "A]]", "A"),
    ("[[" + "B", "B"),
    ("tie", "tie"),
    ("The better one is **B**.", None),
    # reasoning that mentions A first, trailing text after the verdict
    ("Response A is better written, but Response B is correct, and a correct answer matters more.\n\n[[B]]", "B"),
    ("Response A is better.", None),  # not the asked format: re-asked
    ("[[A]]\n\nLet me know if you need a more detailed analysis of B.", "A"),
    ("I considered [[A]] at first, but B handles the edge case.\n[[B]]", "B"),
    # refusals and non-answers
    ("I'm sorry, but I can't help with comparing these responses.", None),
    ("As an AI, I cannot take a side here.", None),
    ("", None),
    ("[[C]]", None),
]


@pytest.mark.parametrize("text,want", VERDICTS)
def test_parse_verdict_on_realistic_replies(text, want):
    assert parse_verdict(text) == want


def _reply(pieces, tops_at: dict[int, dict[str, float]]):
    """A reply from its output tokens, with probabilities (not log) at some positions; others certain."""
    tops = [{k: math.log(v) for k, v in tops_at[i].items()} if i in tops_at else {t: 0.0} for i, t in enumerate(pieces)]
    return Reply("".join(pieces), "stop", 10, len(pieces), tops, list(pieces))


TRAILING = ["[[", "B", "]]", "\nThis", " is", " a", " clear", " call", "."]
SOFT = [
    # P(B) = 0.95 at the verdict token; trailing " a" with its own top log-probs cannot move it
    ("trailing article", _reply(TRAILING, {1: {"B": 0.95, "A": 0.05}, 5: {" a": 0.9, " an": 0.1}}), "", 0.05),
    # candidates are exactly A / B: " a" and "b" at the verdict token are not A / B
    ("case-sensitive", _reply(["[[", "B", "]]"], {1: {"B": 0.6, " a": 0.3, "A": 0.1}}), "", 0.1 / 0.7),
    ("lower-case b", _reply(["[[", "A", "]]"], {1: {"A": 0.5, "b": 0.4, "B": 0.1}}), "", 0.5 / 0.6),
    # brackets and whitespace around a candidate are allowed
    ("bracketed tokens", _reply(["[[B", "]]"], {0: {"[[B": 0.7, "[[A": 0.2, " [[A": 0.1}}), "", 0.3),
    # an earlier "A" in the reasoning is not the verdict token
    ("reasoning first", _reply(["Response", " A", " is", " long", ".", "\n[[", "B", "]]"],
                               {1: {" A": 0.99, " B": 0.01}, 6: {"B": 0.7, "A": 0.3}}), "", 0.3),
    ("prefilled", _reply(["A", "]]"], {0: {"A": 0.8, "B": 0.2}}), "[[", 0.8),
    ("tie", _reply(["[[", "tie", "]]"], {1: {"tie": 0.9, "A": 0.06, "B": 0.04}}), "", 0.6),
    ("verdict line", _reply(["Verdict", ":", " B"], {2: {" B": 0.9, " A": 0.1}}), "", 0.1),
]


@pytest.mark.parametrize("name,reply,prefill,want", SOFT, ids=[c[0] for c in SOFT])
def test_soft_preference_is_read_at_the_verdict_token(name, reply, prefill, want):
    p, why = soft_preference(reply, prefill)
    assert why is None and p == pytest.approx(want, abs=1e-9)


def test_soft_preference_says_why_it_has_none():
    bare = Reply("[[B]]", "stop", 10, 3)
    assert soft_preference(bare) == (None, "no log-probs")
    no_tokens = Reply("[[B]]", "stop", 10, 3, [{"[[": 0.0}, {"B": 0.0}, {"]]": 0.0}])
    assert soft_preference(no_tokens) == (None, "verdict token not located")
    # the sampled tokens do not hold the verdict parsed from the text
    mismatch = Reply("[[B]]", "stop", 10, 3, [{"x": 0.0}] * 3, ["[[", "A", "]]"])
    assert soft_preference(mismatch) == (None, "verdict token not located")
    no_ab = _reply(["[[", "B", "]]"], {1: {"B": 1.0}})
    no_ab.top_logprobs[1] = {"tie": math.log(0.9), " a": math.log(0.1)}
    assert soft_preference(no_ab) == (None, "no A/B log-probs at the verdict token")


def test_soft_labels_survive_trailing_text(tmp_path, monkeypatch):
    """End to end: each verdict is followed by text holding the article " a"; P(verdict) = 0.9 at the
    verdict token, so both orders agree with P(good) = 0.9 / 0.98 and the good response is chosen."""
    with FakeLLM(trailing="\nThat is a clear call, a good one.") as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", samples(tmp_path, ["plain one", "plain two"]),
                                      monkeypatch, judge={"decide": "soft"})
    assert [d["reason"] for d in dropped] == ["identical responses"]
    assert sorted(p["chosen_id"] for p in pairs) == ["plain one-0", "plain two-0"]
    for p in pairs:
        prov = p["provenance"]
        assert prov["decision"] == "soft" and prov["confidence"] == pytest.approx(0.9 / 0.98, abs=1e-6)
        first_is_chosen = prov["verdicts"][0] == "A"
        assert prov["soft_first"] == pytest.approx(0.9 / 0.98 if first_is_chosen else 1 - 0.9 / 0.98, abs=1e-6)
    assert summary["soft_fallbacks"] == 0


# ---- decide: soft without log-probs -----------------------------------------------------------------

@pytest.mark.parametrize("backend,match", [({"kind": "anthropic"}, "anthropic backend never returns"),
                                           ({"kind": "openai", "logprobs": False}, "logprobs is false"),
                                           ({"kind": "local", "logprobs": False}, "logprobs is false")])
def test_soft_decision_without_logprobs_is_refused_when_the_config_is_built(tmp_path, backend, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(LabelConfig, {"samples": "s.jsonl", "output_dir": str(tmp_path / "out"), "labeller": "judge",
                                "judge": {"backend": backend, "judge": {"decide": "soft"}}})
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=match):
        PairJudge(None, from_dict(BackendConfig, backend), JudgeConfig(decide="soft"), Limiter(LimitsConfig()), None)


def test_soft_fallback_is_recorded_and_counted(tmp_path, monkeypatch):
    """A server that ignores the log-probs request: labels come from the verdicts, each says so, and the
    summary counts them."""
    with FakeLLM(no_logprobs=True) as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", samples(tmp_path, ["plain one", "plain two"]),
                                      monkeypatch, judge={"decide": "soft"})
    assert sorted(p["chosen_id"] for p in pairs) == ["plain one-0", "plain two-0"]
    for p in pairs:
        assert p["provenance"]["decision"] == "verdicts (no log-probs)"
        assert p["provenance"]["confidence"] == 1.0 and p["provenance"]["soft_first"] is None
    stored = json.loads((tmp_path / "out" / "label_summary.json").read_text())
    assert stored["soft_fallbacks"] == summary["soft_fallbacks"] == 2
    assert [d["reason"] for d in dropped] == ["identical responses"]


# ---- cache keys: endpoint, log-probs flag, local model files -----------------------------------------

def test_cache_invalidates_on_endpoint_and_logprobs_flag(tmp_path, monkeypatch):
    s = samples(tmp_path, ["plain one", "plain two"])
    with FakeLLM() as one, FakeLLM() as two:
        _, pairs, _ = run(tmp_path, one, "openai", s, monkeypatch, out="o1", backend={"logprobs": False})
        assert one.requests == 4 and {p["provenance"]["confidence"] for p in pairs} == {1.0}
        run(tmp_path, one, "openai", s, monkeypatch, out="o2", backend={"logprobs": False})
        assert one.requests == 4  # the same endpoint and settings: served from the cache
        # answers fetched without log-probs are not reused when log-probs are asked for
        summary, pairs, _ = run(tmp_path, one, "openai", s, monkeypatch, out="o3")
        assert one.requests == 8 and summary["cache_hits"] == 0
        assert [p["provenance"]["confidence"] for p in pairs] == pytest.approx([0.9 / 0.98] * 2)
        # another server (base_url) is asked again
        summary, _, _ = run(tmp_path, two, "openai", s, monkeypatch, out="o4")
        assert two.requests == 4 and summary["cache_hits"] == 0


class _CountingStub:
    fingerprint = "weights-1"

    def __init__(self):
        self.calls = 0

    async def chat(self, messages, max_tokens, temperature):
        self.calls += 1
        return Reply("[[A]]", "stop", 10, 3)


def test_cache_invalidates_on_local_model_files(tmp_path, tiny_dir):
    from shiftalign.labeling.clients import LocalBackend
    from shiftalign.models.fingerprint import files_fingerprint

    assert LocalBackend(BackendConfig(model=tiny_dir), 5).fingerprint == files_fingerprint(tiny_dir)
    stub, cache = _CountingStub(), ResponseCache(tmp_path / "c.sqlite")
    judge = PairJudge(stub, BackendConfig(model=tiny_dir), JudgeConfig(), Limiter(LimitsConfig()), cache)
    def ask():
        return asyncio.run(judge.ask("q", "x", "y", time.monotonic() + 30)).verdict
    assert ask() == "A" and ask() == "A" and stub.calls == 1
    stub.fingerprint = "weights-2"  # the model at the same path was retrained
    assert ask() == "A" and stub.calls == 2
    cache.close()


# ---- budget ------------------------------------------------------------------------------------------

def test_budget_holds_on_non_ascii_text(tmp_path, monkeypatch):
    """A byte-level tokenizer spends a token per byte on CJK text (3 per character): the reservation must
    bound the input the server reports, so spend never passes the cap."""
    from shiftalign.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    bounds = []

    def count(messages):
        n = len(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
        bounds.append((input_token_bound(messages), n))
        return n

    rows = []
    for i in range(8):
        rows += [{"id": f"{i}-0", "prompt": f"问题 {i}：" + "怎么办？" * 10, "completion": "good " + "这是一个很好的回答。" * 12},
                 {"id": f"{i}-1", "prompt": f"问题 {i}：" + "怎么办？" * 10, "completion": "rude " + "走开，别问了。" * 12}]
    with FakeLLM(count_tokens=count) as server:
        summary, pairs, dropped = run(tmp_path, server, "openai", write_jsonl(tmp_path / "cjk.jsonl", rows), monkeypatch,
                                      concurrency=1, budget_usd=0.5, input_usd_per_mtok=100.0, output_usd_per_mtok=0.0)
    assert all(bound >= n for bound, n in bounds), bounds
    assert summary["budget_exhausted"] and summary["cost_usd"] <= 0.5
    assert 0 < len(pairs) < 8 and {d["reason"] for d in dropped} == {"budget"}
    assert all(p["chosen"].startswith("good") for p in pairs)


# ---- judges with a stub and a local model -----------------------------------------------------------

class _BiasedStub:
    """Always answers A (position bias), but its verdict-token probabilities lean toward the
    response containing "good": P(A) = 0.8 when A is good, 0.6 otherwise."""

    def __init__(self):
        self.seen = []

    async def chat(self, messages, max_tokens, temperature):
        self.seen.append(messages)
        user = messages[1]["content"]
        a_good = "good" in user.split("[Response A]")[1].split("[Response B]")[0]
        pa = 0.8 if a_good else 0.6
        return Reply("A]]", "stop", 10, 2, [{"A": math.log(pa), "B": math.log(1 - pa)}, {"]]": 0.0}], ["A", "]]"])


@pytest.mark.parametrize("decide", ["verdicts", "soft"])
def test_order_averaged_soft_decision_cancels_position_bias(decide):
    stub = _BiasedStub()
    judge = PairJudge(stub, BackendConfig(model="stub"), JudgeConfig(prefill="[[", decide=decide),
                      Limiter(LimitsConfig()), None)
    res = asyncio.run(judge.judge_pair("q", "a plain answer", "a good answer", 30))
    assert all(m[-1] == {"role": "assistant", "content": "[["} for m in stub.seen)  # the reply is prefilled
    assert res["verdicts"] == ["A", "A"]  # "[[" + "A]]" parses
    # P(y1 better) = (P1(A) + P2(B)) / 2 = (0.6 + 0.2) / 2 = 0.4: y2 ("good") wins with confidence 0.6.
    assert res["soft_first"] == pytest.approx(0.4)
    if decide == "verdicts":
        assert res["label"] == "tie" and res["reason"] == "position disagreement" and res["decision"] == "verdicts"
    else:
        assert res["label"] == "second" and res["confidence"] == pytest.approx(0.6) and res["decision"] == "soft"


def test_prefill_is_refused_on_openai_and_decide_is_checked():
    with pytest.raises(ConfigError, match="prefill"):
        PairJudge(None, BackendConfig(kind="openai"), JudgeConfig(prefill="[["), Limiter(LimitsConfig()), None)
    with pytest.raises(ConfigError, match="decide"):
        PairJudge(None, BackendConfig(), JudgeConfig(decide="vote"), Limiter(LimitsConfig()), None)


def _ab_judge(path, items, splits):
    """A tiny local judge whose only likely outputs are the tokens A and B (every other output row is
    zero), with logit(A) - logit(B) = 2 * splits[k] on the k-th input (items in order, each (y, z) then
    (z, y)): its verdict depends on the content. Returns the saved path and a function giving
    P(A) / (P(A) + P(B)) by a plain forward pass of the same model."""
    import torch

    from shiftalign.models.tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(1)
    a, b = tok.convert_tokens_to_ids(["A", "B"])

    def ids(prompt, first, second):
        msgs = [{"role": "system", "content": JudgeConfig().system},
                {"role": "user", "content": JudgeConfig().template.format(prompt=prompt, a=first, b=second)},
                {"role": "assistant", "content": "[["}]
        text = tok.apply_chat_template(msgs, tokenize=False, continue_final_message=True)
        return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])

    with torch.no_grad():
        hs = torch.stack([model.model(ids(p, *order)).last_hidden_state[0, -1] for p, y, z in items
                          for order in ((y, z), (z, y))]).double()
        # the A - B logit split per input: the first pair is clear (P(A) = sigmoid(2) in the y-first order),
        # the second nearly a tie; the least-norm direction giving those splits, on top of a common part
        # that keeps A and B well above every other token (top log-probs hold both)
        split = torch.linalg.pinv(hs) @ torch.tensor(splits, dtype=torch.float64)
        common = torch.linalg.pinv(hs) @ torch.full((len(hs),), 5.0, dtype=torch.float64)
        model.lm_head.weight.zero_()
        model.lm_head.weight[a] = (common + split).float()
        model.lm_head.weight[b] = (common - split).float()
    model.save_pretrained(path)
    tok.save_pretrained(path)

    def p_a(prompt, first, second):
        with torch.no_grad():
            logits = model(ids(prompt, first, second)).logits[0, -1]
        assert min(logits[a], logits[b]) > 0  # both in the top log-probs
        return float(torch.sigmoid(logits[a] - logits[b]))

    return str(path), p_a


def test_local_judge_with_prefill_and_soft_decision(tmp_path):
    """The local backend continues a prefilled reply with one token, A or B; the soft decision reads that
    token's probability and averages the two orders. The judge is built to prefer the good response of
    the first pair (P = sigmoid(2)) and to be nearly indifferent on the second (sigmoid(-0.1), within the
    0.05 margin): one pair labelled, one soft tie, the identical pair unlabelled."""
    items = [(f"question {m}", f"a good answer to {m}", f"a rude reply to {m}") for m in ["plain one", "plain two"]]
    path, p_a = _ab_judge(tmp_path / "judge", items, [1.0, -1.0, -0.05, 0.05])
    cfg = from_dict(LabelConfig, {
        "samples": samples(tmp_path, ["plain one", "plain two"]), "output_dir": str(tmp_path / "loc"),
        "labeller": "judge", "progress": False,
        "judge": {"backend": {"kind": "local", "model": path},
                  "judge": {"max_tokens": 1, "prefill": "[[", "decide": "soft"}}})
    summary = label_main(cfg)
    pairs = {p["prompt"]: p for p in map(json.loads, (tmp_path / "loc" / "pseudo_pairs.jsonl").read_text().splitlines())}
    dropped = {d["prompt"]: d for d in map(json.loads, (tmp_path / "loc" / "unlabelled.jsonl").read_text().splitlines())}
    s_good = [(p_a(x, y, z) + 1 - p_a(x, z, y)) / 2 for x, y, z in items]  # P(good better), by forward passes
    assert s_good == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(0.1))], abs=1e-3)  # as built
    assert list(pairs) == ["question plain one"]
    one = pairs["question plain one"]
    assert one["chosen"] == "a good answer to plain one" and one["rejected"] == "a rude reply to plain one"
    assert one["provenance"]["confidence"] == pytest.approx(s_good[0], abs=1e-3)
    assert one["provenance"]["decision"] == "soft" and sorted(one["provenance"]["verdicts"]) == ["A", "B"]
    assert {k: d["reason"] for k, d in dropped.items()} == {"question plain two": "soft tie",
                                                           "q same": "identical responses"}
    two = dropped["question plain two"]
    good_first = two["a_id"] == "plain two-0"
    assert two["soft_first"] == pytest.approx(s_good[1] if good_first else 1 - s_good[1], abs=1e-3)
    assert summary["pairs"] == 1 and summary["unlabelled"] == 2 and summary["soft_fallbacks"] == 0
