"""Bad input anywhere ends in one message naming the file, the line or row, the field and what was
expected, with a non-zero exit and nothing written; text quirks that are not errors (a byte-order
mark, CRLF line ends) are accepted."""

import json

import pytest
import yaml

from shiftalign.cli import main
from shiftalign.data.load import load_examples, load_weights

from conftest import pref_rows, write_jsonl


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def _prefs_bytes(tmp_path, data: bytes, name="p.jsonl"):
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def _case_invalid_utf8(tmp_path):
    good = _lines(pref_rows(4)).encode().splitlines(keepends=True)
    good[1] = good[1].replace(b"answer", b"answ\xff\xfer")
    return {"data.train": _prefs_bytes(tmp_path, b"".join(good))}, ["p.jsonl, line 2", "UTF-8", "0xff"]


def _case_directory(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    return {"data.train": str(tmp_path / "d.jsonl")}, ["d.jsonl", "a file (got a directory)"]


def _case_missing(tmp_path):
    return {"data.train": str(tmp_path / "nope.jsonl")}, ["nope.jsonl", "not found"]


def _case_empty_field(tmp_path):
    rows = pref_rows(4)
    rows[2]["rejected"] = ""
    return {"data.train": write_jsonl(tmp_path / "p.jsonl", rows)}, ["p.jsonl, line 3", "'rejected'", "non-empty"]


def _case_weights_not_in_data(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(8))
    ids = [e.id for e in load_examples(data, "paired")]
    w = write_jsonl(tmp_path / "w.jsonl", [{"id": i, "weight": 1.0} for i in ids] + [{"id": "stranger", "weight": 2.0}])
    return {"data.train": data, "data.weights": w}, ["w.jsonl", "'id'", "stranger"]


def _case_bad_weight(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(8))
    ids = [e.id for e in load_examples(data, "paired")]
    w = write_jsonl(tmp_path / "w.jsonl", [{"id": i, "weight": -1.0 if k == 4 else 1.0} for k, i in enumerate(ids)])
    return {"data.train": data, "data.weights": w}, ["w.jsonl, line 5", "'weight'", ">= 0"]


def _case_wrong_type_lr(tmp_path):
    return {"data.train": write_jsonl(tmp_path / "p.jsonl", pref_rows(8)), "train.lr": "fast"}, ["train.lr", "float"]


def _case_wrong_type_batch(tmp_path):
    return {"data.train": write_jsonl(tmp_path / "p.jsonl", pref_rows(8)), "train.batch_size": 2.5}, \
        ["train.batch_size", "integer"]


def _case_unknown_key(tmp_path):
    return {"data.train": write_jsonl(tmp_path / "p.jsonl", pref_rows(8)), "train.learning_rate": 0.1}, \
        ["learning_rate", "known:"]


TRAIN_CASES = [_case_invalid_utf8, _case_directory, _case_missing, _case_empty_field, _case_weights_not_in_data,
               _case_bad_weight, _case_wrong_type_lr, _case_wrong_type_batch, _case_unknown_key]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: c.__name__[6:])
def test_train_bad_input(tmp_path, tiny_dir, capsys, case):
    overrides, expected = case(tmp_path)
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir},
           "loss": {"name": "dpo"}, "train": {"batch_size": 4, "micro_batch_size": 2, "progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = [f"{k}={v}" for k, v in overrides.items()]
    assert main(["train", str(tmp_path / "c.yaml"), *args]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("shiftalign: error")]
    assert len(errors) == 1, errors
    for fragment in expected:
        assert fragment in errors[0], (fragment, errors[0])
    assert not (tmp_path / "run").exists()  # nothing written


def test_empty_prompts_file_for_sampling(tmp_path, tiny_dir, capsys):
    (tmp_path / "prompts.jsonl").write_text("\n\n")
    cfg = {"prompts": str(tmp_path / "prompts.jsonl"), "output": str(tmp_path / "s" / "s.jsonl"),
           "policy": {"path": tiny_dir}, "progress": False}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["sample", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl" in err and "at least one row" in err


def test_unreadable_file(tmp_path, monkeypatch):
    from pathlib import Path

    from shiftalign.errors import DataError

    path = tmp_path / "p.jsonl"
    path.write_text(_lines(pref_rows(2)))
    real = Path.read_bytes

    def denied(self):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DataError, match="a readable file \\(Permission denied\\)"):
        load_examples(str(path), "paired")


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf", "cr"])
def test_bom_and_crlf_are_accepted(tmp_path, variant):
    text = _lines(pref_rows(4))
    plain = load_examples(_prefs_bytes(tmp_path, text.encode(), "plain.jsonl"), "paired")
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    if variant == "cr":
        text = text.replace("\n", "\r")
    data = ("\ufeff" if "bom" in variant else "").encode() + text.encode()
    got = load_examples(_prefs_bytes(tmp_path, data), "paired")
    assert [(e.id, e.prompt, e.completions, e.weight) for e in got] == \
        [(e.id, e.prompt, e.completions, e.weight) for e in plain]
    # a weights file and a CSV file too
    w = _prefs_bytes(tmp_path, b"\xef\xbb\xbf" + b'{"id": "a", "weight": 2}\r\n{"id": "b", "weight": 1}\r\n', "w.jsonl")
    assert load_weights(w) == {"a": 2.0, "b": 1.0}
    csv = _prefs_bytes(tmp_path, b"\xef\xbb\xbfprompt,chosen,rejected\r\nq,good,bad\r\n", "p.csv")
    assert [(e.prompt, e.completions) for e in load_examples(csv, "paired")] == [("q", ["good", "bad"])]


SCORERS = '''
def raises(prompts, responses):
    return {}["missing"]

def short(prompts, responses):
    return [0.0] * (len(responses) - 1)

def nan(prompts, responses):
    return [float("nan")] * len(responses)

def words(prompts, responses):
    return ["good"] * len(responses)
'''


@pytest.mark.parametrize("function, expected", [
    ("raises", "raised KeyError: 'missing'"), ("short", "expected 4 scores (one per response), got 3"),
    ("nan", "score 0 is nan, expected a finite number"), ("words", "expected a list of numbers"),
])
def test_a_faulty_scorer_function_is_named(tmp_path, tiny_dir, capsys, function, expected):
    (tmp_path / "score.py").write_text(SCORERS)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"q{i}", "prompt": f"what is {i}"} for i in range(2)])
    cfg = {"recipe": "rl", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir}, "prompts": prompts,
           "scorer": {"name": "python", "function": f"{tmp_path / 'score.py'}:{function}"},
           "sampling": {"n": 2, "max_new_tokens": 4}, "prompts_per_iteration": 2, "iterations": 1, "train": {"progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("shiftalign: error")]
    assert len(errors) == 1 and f"score.py:{function}" in errors[0] and expected in errors[0], errors
