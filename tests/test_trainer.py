"""The training loop: weighted reduction, accumulation, resume, outputs."""

import json

import pytest
import torch

from conftest import pref_rows, write_jsonl
from helpers import grads_after_step, make_trainer, params_of


def _weighted(tmp_path, weights):
    rows = pref_rows(8)
    for r, w in zip(rows, weights):
        r["weight"] = w
    return write_jsonl(tmp_path / f"w{hash(tuple(weights))}.jsonl", rows)


def test_all_ones_weights_equal_unweighted_mean(tiny_dir, tmp_path):
    tr = make_trainer(tiny_dir, _weighted(tmp_path, [1.0] * 8), tmp_path / "o")
    with torch.no_grad():
        batch, _, per_example, _ = tr._forward(tr.model, tr.task.train_items, tr.task.ref_train)
    record, _ = grads_after_step(tr, list(range(8)))
    assert record["loss"] == pytest.approx(per_example.mean().item(), abs=1e-6)
    assert batch["weights"].eq(1).all()


def test_scaling_all_weights_changes_nothing(tiny_dir, tmp_path):
    w = [0.5, 1.0, 2.0, 0.0, 3.0, 1.5, 0.25, 1.0]
    ra, ga = grads_after_step(make_trainer(tiny_dir, _weighted(tmp_path, w), tmp_path / "a"), list(range(8)))
    rb, gb = grads_after_step(make_trainer(tiny_dir, _weighted(tmp_path, [7 * x for x in w]), tmp_path / "b"), list(range(8)))
    assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-7, rtol=1e-5), n


def test_weights_change_the_gradient(tiny_dir, tmp_path):
    _, ga = grads_after_step(make_trainer(tiny_dir, _weighted(tmp_path, [1.0] * 8), tmp_path / "a"), list(range(8)))
    _, gb = grads_after_step(make_trainer(tiny_dir, _weighted(tmp_path, [5, 0, 0, 0, 0, 0, 0, 1.0]), tmp_path / "b"), list(range(8)))
    assert any(not torch.allclose(ga[n], gb[n]) for n in ga)


def test_accumulation_equals_one_big_batch(tiny_dir, tmp_path):
    f = _weighted(tmp_path, [0.5, 1.0, 2.0, 0.0, 3.0, 1.5, 0.25, 1.0])
    ra, ga = grads_after_step(make_trainer(tiny_dir, f, tmp_path / "a", micro_batch_size=8), list(range(8)))
    rb, gb = grads_after_step(make_trainer(tiny_dir, f, tmp_path / "b", micro_batch_size=1), list(range(8)))
    assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-7, rtol=1e-5), n


def test_resume_after_interruption_equals_uninterrupted(tiny_dir, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(16))
    kw = dict(batch_size=4, micro_batch_size=2, epochs=2, save_every=3, max_grad_norm=1.0, warmup_steps=2)
    straight = make_trainer(tiny_dir, data, tmp_path / "straight", **kw)
    straight.fit()

    interrupted = make_trainer(tiny_dir, data, tmp_path / "resumed", **kw)
    calls = {"n": 0}
    orig = interrupted.train_step

    def dying(idx):
        if calls["n"] == 5:  # killed during step 6, after the checkpoint of step 3
            raise KeyboardInterrupt
        calls["n"] += 1
        return orig(idx)

    interrupted.train_step = dying
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(tiny_dir, data, tmp_path / "resumed", **kw)
    result = resumed.fit()
    assert result["steps"] == 8
    a, b = params_of(straight), params_of(resumed)
    for n in a:
        assert torch.equal(a[n], b[n]), n
    steps = [json.loads(l)["step"] for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_kto_trains_on_unpaired_rows(tiny_dir, tmp_path):
    rows = [{"prompt": f"q {i}", "completion": f"answer {i}", "label": i % 2 == 0} for i in range(8)]
    tr = make_trainer(tiny_dir, write_jsonl(tmp_path / "u.jsonl", rows), tmp_path / "k", loss="kto")
    record = tr.train_step(list(range(8)))
    assert 0 < record["loss"] < 1 and record["desirable"] == pytest.approx(0.5)
