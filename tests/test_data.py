"""Data loading, validation messages, templating, truncation and tree collation."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from shiftalign.data.batching import collate, split_step, step_batches
from shiftalign.data.load import attach_weights, load_examples, load_weights
from shiftalign.data.schema import validate_row
from shiftalign.data.tokenize import tokenize_examples
from shiftalign.errors import DataError
from shiftalign.models.tiny import tiny_causal_lm, tiny_tokenizer
from shiftalign.ops.logprobs import branch_logps

GOOD = {"prompt": "hi", "chosen": "good", "rejected": "bad"}


def _bad(tmp_path, lines, kind="paired"):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_examples(str(p), kind)
    return str(e.value), e.value


@pytest.mark.parametrize("row,field,expect", [
    ({"prompt": "hi", "chosen": "good"}, "rejected", "required"),
    ({"prompt": 3, "chosen": "good", "rejected": "bad"}, "prompt", "non-empty string"),
    ({"prompt": "hi", "chosen": "  ", "rejected": "bad"}, "chosen", "non-empty"),
    ({"prompt": "hi", "chosen": "same", "rejected": "same"}, "rejected", "identical"),
    ({**GOOD, "weight": -1}, "weight", ">= 0"),
    ({**GOOD, "weight": float("nan")}, "weight", "finite"),
    ({**GOOD, "weight": "heavy"}, "weight", "a number"),
    ({"prompt": [{"role": "user"}], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "prompt[0]", "role"),
    ({"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}, "prompt", "same format"),
])
def test_bad_rows_name_file_line_field(tmp_path, row, field, expect):
    msg, err = _bad(tmp_path, [json.dumps(GOOD), json.dumps(row)])
    assert err.line == 2 and err.field == field and expect in msg
    assert "d.jsonl, line 2" in msg


def test_malformed_json_line(tmp_path):
    msg, err = _bad(tmp_path, [json.dumps(GOOD), '{"prompt": "hi", "chosen": ', json.dumps(GOOD)])
    assert err.line == 2 and "malformed JSON" in msg


def test_unpaired_label_must_be_bool(tmp_path):
    msg, err = _bad(tmp_path, [json.dumps({"prompt": "q", "completion": "a", "label": "yes"})], kind="unpaired")
    assert err.field == "label" and "boolean" in msg


def test_duplicate_ids(tmp_path):
    msg, err = _bad(tmp_path, [json.dumps({**GOOD, "id": "a"}), json.dumps({**GOOD, "chosen": "x", "id": "a"})])
    assert err.field == "id" and "line 1" in msg


def test_ids_are_stable_content_hashes():
    a = validate_row(dict(GOOD), "paired", "x", 1)
    b = validate_row(dict(GOOD), "paired", "y", 9)
    c = validate_row({**GOOD, "chosen": "other"}, "paired", "x", 1)
    assert a.id == b.id != c.id and len(a.id) == 16


def test_formats_jsonl_json_csv_parquet_and_hf_dir(tmp_path):
    rows = [{"prompt": "p1", "chosen": "a", "rejected": "b"}, {"prompt": "p2", "chosen": "c", "rejected": "d", "weight": 2.0}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.csv").write_text("prompt,chosen,rejected,weight\np1,a,b,\np2,c,d,2\n")
    pq.write_table(pa.Table.from_pylist([{**r, "weight": r.get("weight")} for r in rows]), tmp_path / "a.parquet")
    import datasets
    datasets.Dataset.from_list([{**r, "weight": r.get("weight")} for r in rows]).save_to_disk(str(tmp_path / "hf"))
    for name in ["a.jsonl", "a.json", "a.csv", "a.parquet", "hf"]:
        ex = load_examples(str(tmp_path / name), "paired")
        assert [e.prompt for e in ex] == ["p1", "p2"], name
        assert ex[1].weight == 2.0 and ex[0].weight is None, name
        assert ex[0].id == ex[0].id and ex[0].id == load_examples(str(tmp_path / "a.jsonl"), "paired")[0].id


def test_sft_messages_and_conversational():
    ex = validate_row({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "sft", "x", 1)
    assert ex.prompt == [{"role": "user", "content": "q"}] and ex.completions == [[{"role": "assistant", "content": "a"}]]


def test_weights_join(tmp_path):
    ex = [validate_row({**GOOD, "id": i}, "paired", "x", i + 1) for i in range(3)]
    wf = tmp_path / "w.jsonl"
    wf.write_text('{"id": "0", "weight": 2.0}\n{"id": "1", "weight": 0.5}\n')
    w = load_weights(str(wf))
    with pytest.raises(DataError, match="none for id '2'"):
        attach_weights(ex, w, str(wf))
    assert [e.weight for e in attach_weights(ex, w, str(wf), "one")] == [2.0, 0.5, 1.0]
    wf.write_text('{"id": "0", "weight": -2.0}\n')
    with pytest.raises(DataError, match="line 1"):
        load_weights(str(wf))


def test_chat_template_and_eos():
    tok = tiny_tokenizer()
    ex = [validate_row({"prompt": [{"role": "user", "content": "hello"}], "chosen": [{"role": "assistant", "content": "good"}],
                        "rejected": [{"role": "assistant", "content": "bad"}]}, "paired", "x", 1)]
    items, _ = tokenize_examples(ex, tok, 64, 32)
    assert tok.decode(items[0].prompt_ids) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert items[0].completion_ids[0][-1] == tok.eos_token_id
    # plain text is used as is (TRL's convention) unless wrapped
    ex2 = [validate_row(dict(GOOD), "paired", "x", 1)]
    assert tok.decode(tokenize_examples(ex2, tok, 64, 32)[0][0].prompt_ids) == "hi"
    assert "<|im_start|>user\nhi" in tok.decode(tokenize_examples(ex2, tok, 64, 32, wrap_text_as_chat=True)[0][0].prompt_ids)


def test_truncation_rule_and_skip_are_counted():
    tok = tiny_tokenizer()
    long_prompt = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "the quick brown fox " * 20},
                   {"role": "assistant", "content": "ok"}, {"role": "user", "content": "why"}]
    ex = [validate_row({"prompt": long_prompt, "chosen": [{"role": "assistant", "content": "good " * 50}],
                        "rejected": [{"role": "assistant", "content": "bad"}]}, "paired", "x", 1)]
    items, rep = tokenize_examples(ex, tok, 48, 24)
    text = tok.decode(items[0].prompt_ids)
    assert "be kind" in text and "why" in text and "quick" not in text  # earlier turns dropped, system + last user kept
    assert len(items[0].prompt_ids) <= 24 and all(len(items[0].prompt_ids) + len(c) <= 48 for c in items[0].completion_ids)
    assert tok.decode(items[0].completion_ids[0]).startswith("good")  # the start of the response is kept
    assert rep.truncated_prompts == 1 and rep.truncated_responses == 1
    items, rep = tokenize_examples(ex, tok, 48, 24, truncation="skip")
    assert items == [] and rep.skipped == 1


def test_step_batches_are_seeded_and_split_covers_step():
    a = step_batches(20, 8, seed=1, epoch=0)
    assert a == step_batches(20, 8, seed=1, epoch=0) != step_batches(20, 8, seed=1, epoch=1)
    assert len(a) == 2 and all(len(s) == 8 for s in a)
    lengths = list(range(20))
    parts = [split_step(a[0], lengths, 2, 2, r) for r in range(2)]
    flat = sorted(i for p in parts for mb in p for i in mb)
    assert flat == sorted(a[0]) and all(len(p) == 2 for p in parts)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tree_rows_equal_separate_sequences(attn):
    """One forward over [prompt | chosen | rejected] gives the log-probs of two separate forwards, with
    either attention kernel that takes the 4-D tree mask (eager gets it as an additive float mask)."""
    model, tok = tiny_causal_lm(seed=3, attn_implementation=attn)
    assert model.config._attn_implementation == attn
    rows = [{"prompt": "hello how", "chosen": "the quick fox", "rejected": "a bad answer is long"},
            {"prompt": "why thanks please", "chosen": "kind", "rejected": "rude and long answer here"}]
    items, _ = tokenize_examples([validate_row(r, "paired", "x", i) for i, r in enumerate(rows)], tok, 128, 64)
    out = branch_logps(model, collate(items, tok.pad_token_id))
    for b, it in enumerate(items):
        for j, c in enumerate(it.completion_ids):
            ids = torch.tensor([it.prompt_ids + c])
            lp = torch.log_softmax(model(ids).logits[0, :-1], -1)
            P = len(it.prompt_ids)
            ref = lp[P - 1:].gather(-1, ids[0, P:, None]).sum()
            assert torch.allclose(out["logps"][b, j], ref, atol=1e-5)
            assert out["lengths"][b, j] == len(c)


def test_policy_samples_may_be_empty_but_sft_rows_may_not():
    """A policy can answer with eos at once: a ``sample`` row (density-ratio targets) keeps an empty
    completion, in text or chat form; an ``sft`` row still refuses it."""
    ex = validate_row({"prompt": "hi", "completion": ""}, "sample", "s.jsonl", 1)
    assert ex.completions == [""]
    chat = validate_row({"prompt": [{"role": "user", "content": "hi"}], "completion": ""}, "sample", "s.jsonl", 1)
    assert chat.completions == [[]]
    assert validate_row({"prompt": "hi", "completion": "yes"}, "sample", "s.jsonl", 1).completions == ["yes"]
    with pytest.raises(DataError, match="completion"):
        validate_row({"prompt": "hi", "completion": ""}, "sft", "s.jsonl", 1)
    with pytest.raises(DataError, match="completion"):
        validate_row({"prompt": "hi"}, "sample", "s.jsonl", 1)


def test_text_of_one_text_for_prompts_and_responses():
    from shiftalign.data.text import text_of

    assert text_of("plain") == "plain"
    # a conversational response reads as what the assistant wrote (the sampled completion's text; what is tokenised)
    assert text_of([{"role": "assistant", "content": "Hi"}, {"role": "assistant", "content": " there"}]) == "Hi there"
    # a prompt keeps who said what
    assert text_of([{"role": "system", "content": "be kind"}, {"role": "user", "content": "q"}]) == "system: be kind\nuser: q"
