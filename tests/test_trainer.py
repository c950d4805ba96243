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
    assert result["steps"] == 8  # Trainer.fit: steps, train, eval
    a, b = params_of(straight), params_of(resumed)
    for n in a:
        assert torch.equal(a[n], b[n]), n
    steps = [json.loads(l)["step"] for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def _wpo_trainer(tiny_dir, data, out, **train):
    from shiftalign.reweight.policy_ratio import PolicyRatioConfig, policy_ratio_weights

    tr = make_trainer(tiny_dir, data, out, **train)
    tr.task.dynamic_weights = lambda o: policy_ratio_weights(o, PolicyRatioConfig(form="wpo"))
    return tr


def _direct_objective_grads(tr, indices):
    """Gradients of sum w f l / sum w f over the whole batch in one pass, f detached (WPO factors)."""
    model = tr.acc.unwrap_model(tr.model)
    model.zero_grad(set_to_none=True)
    batch, out, loss, _ = tr._forward(model, [tr.task.train_items[i] for i in indices], tr.task.ref_train)
    w = batch["weights"]  # static weight x in-loop factor
    ((w * loss).sum() / w.sum()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(((w * loss).sum() / w.sum()).detach()), grads


@pytest.mark.parametrize("micro", [1, 2, 8])
def test_in_loop_factors_are_normalised_over_the_whole_step(tiny_dir, tmp_path, micro):
    # non-uniform static weights times WPO factors (~exp(-10) here): the step must minimise
    # sum w f l / sum w f over the step, whatever the micro-batch size
    data = _weighted(tmp_path, [0.5, 1.0, 2.0, 0.0, 3.0, 1.5, 0.25, 1.0])
    tr = _wpo_trainer(tiny_dir, data, tmp_path / f"m{micro}", micro_batch_size=micro)
    want_loss, want = _direct_objective_grads(tr, list(range(8)))
    record, got = grads_after_step(tr, list(range(8)))
    assert record["loss"] == pytest.approx(want_loss, rel=1e-5)
    assert record["policy_weight"] < 0.1  # the factors are far from 1: an unnormalised step would be ~20x too small
    for n in want:
        assert torch.allclose(got[n], want[n], atol=1e-7, rtol=1e-4), n


def test_kto_mismatched_responses_never_share_the_prompt(tiny_dir):
    from pathlib import Path

    from shiftalign.data.load import load_examples
    from shiftalign.data.tokenize import add_mismatched_branch, tokenize_examples
    from shiftalign.models.load import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    src = Path(__file__).parents[1] / "data" / "quickstart" / "unpaired.jsonl"
    items, _ = tokenize_examples(load_examples(str(src), "unpaired"), tok, 256, 128)
    partner = add_mismatched_branch(items, 256, seed=3)
    assert sum(items[j].prompt_ids == items[j + 1].prompt_ids for j in range(len(items) - 1)) >= 20  # the old pairing
    assert all(items[j].prompt_ids != items[partner[j]].prompt_ids for j in range(len(items)))
    assert all(items[j].completion_ids[1] == items[partner[j]].completion_ids[0] for j in range(len(items)))
    assert sorted(partner) == list(range(len(items)))  # a permutation: every response used once
    assert add_mismatched_branch(items, 256, seed=3) == partner  # seeded
    with pytest.raises(ValueError, match="share one prompt"):
        add_mismatched_branch(items[:3], 256)  # 2 of 3 rows share a prompt: no valid pairing


def test_kto_step_uses_z0_of_the_whole_step(tiny_dir, tmp_path):
    rows = [{"prompt": f"q {i}", "completion": f"answer {i} " * (1 + i % 3), "label": i % 3 != 0} for i in range(8)]
    tr = make_trainer(tiny_dir, write_jsonl(tmp_path / "u.jsonl", rows), tmp_path / "k", loss="kto", micro_batch_size=2,
                      schedule="constant")
    first = tr.train_step(list(range(8)))
    assert first["loss"] == pytest.approx(0.5, abs=1e-6)  # policy == reference: r = z0 = 0
    # after one step the policy differs from the reference: compute step 2's loss by hand
    model = tr.acc.unwrap_model(tr.model)
    with torch.no_grad():
        batch, out, _, _ = tr._forward(model, tr.task.train_items, tr.task.ref_train, torch.tensor(0.0))
    kl = (out["logps"][:, 1] - out["ref_logps"][:, 1]).mean()  # over all 8 rows, not one micro-batch
    z0 = kl.clamp(min=0)
    assert z0 > 0.1  # a real estimate, not the clamp
    # per micro-batch of 2 length-sorted rows the estimates differ from the step's
    assert max(abs(float(kl) - float(out["logps"][i:i + 2, 1].sub(out["ref_logps"][i:i + 2, 1]).mean()))
               for i in range(0, 8, 2)) > 1e-3
    r = out["logps"][:, 0] - out["ref_logps"][:, 0]
    beta = tr.task.params.beta
    want = torch.where(batch["labels"], 1 - torch.sigmoid(beta * (r - z0)), 1 - torch.sigmoid(beta * (z0 - r)))
    second = tr.train_step(list(range(8)))
    assert second["kl_reference_point"] == pytest.approx(float(z0), abs=1e-6)
    assert second["loss"] == pytest.approx(float(want.mean()), rel=1e-5)


def test_frozen_reference_is_loaded_once_and_reloaded_when_its_files_change(tmp_path, tiny_dir):
    """One loader for every reference: the starting weights by default, reused while unchanged,
    reloaded when the model at the path is rewritten, None for a LoRA policy (its base serves)."""
    import shutil

    import torch

    from shiftalign.config import LoraConfig, ModelConfig
    from shiftalign.models.load import load_policy
    from shiftalign.train.reference import frozen_reference

    path = tmp_path / "ref"
    shutil.copytree(tiny_dir, path)
    cfg = ModelConfig(path=str(path))
    first = frozen_reference(cfg, None, "cpu")
    assert frozen_reference(cfg, None, "cpu") is first
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    model, _ = load_policy(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    model.save_pretrained(path)
    second = frozen_reference(cfg, None, "cpu")
    assert second is not first
    name, p = next(iter(second.named_parameters()))
    assert torch.equal(p, dict(model.named_parameters())[name])
    assert frozen_reference(ModelConfig(path=str(path), lora=LoraConfig()), None, "cpu") is None
    assert frozen_reference(ModelConfig(path=str(path), lora=LoraConfig()), str(tiny_dir), "cpu") is not None


def test_reference_logps_are_computed_for_the_rows_the_steps_visit_only(tiny_dir, tmp_path, monkeypatch):
    """max_steps 3 of 4 pairs on 19 pairs: the reference pass covers the 12 rows those steps draw (NaN
    elsewhere, so a row read without its log-probs poisons the loss), with the values of a full pass."""
    from shiftalign.config import RunConfig, from_dict
    from shiftalign.recipes import RECIPES
    from shiftalign.train import loop, reference

    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(19))
    computed, seen, refs = [], set(), {}
    real_compute, real_step = reference.compute_logps, loop.Trainer.train_step

    def compute(model, items, *a, **k):
        computed.append(len(items))
        return real_compute(model, items, *a, **k)

    def step(self, indices):
        seen.update(indices)
        refs[self.cfg.output_dir] = self.task.ref_train
        return real_step(self, indices)

    monkeypatch.setattr(reference, "compute_logps", compute)
    monkeypatch.setattr(loop.Trainer, "train_step", step)

    def run(out, cache="refcache", **train):
        cfg = from_dict(RunConfig, {"recipe": "preference", "output_dir": str(tmp_path / out),
                                    "cache_dir": str(tmp_path / cache), "model": {"path": tiny_dir},
                                    "data": {"train": data}, "loss": {"name": "dpo"},
                                    "train": {"batch_size": 4, "micro_batch_size": 2, "progress": False, **train}})
        RECIPES.get("preference").main(cfg)
        return refs[str(tmp_path / out)]

    part = run("part", max_steps=3)
    assert computed == [12] and len(seen) == 12
    finite = set(torch.isfinite(part).all(1).nonzero().flatten().tolist())
    assert finite == seen
    seen.clear()
    full = run("full", cache="other", epochs=1)  # 4 steps: 16 rows, the tail of 3 is never drawn
    assert computed[-1] == 16 and len(seen) == 16
    rows = sorted(finite)
    assert torch.allclose(part[rows], full[rows], atol=1e-5)
    # The cache is per example: a run over a superset of the rows computes only the rows not stored yet.
    again = run("again", epochs=1)
    assert computed[-1] == 16 - 12 and len(computed) == 3
    assert torch.allclose(again, full, atol=1e-5, equal_nan=True)  # NaN: the tail no step draws


def test_optimizer_uses_the_fused_adamw_kernel_with_the_for_loop_kernels_steps():
    """make_optimizer picks AdamW's fused kernel on the CPU; three steps of it equal the for-loop kernel's."""
    from shiftalign.models.tiny import tiny_causal_lm
    from shiftalign.train.optim import make_optimizer

    models = [tiny_causal_lm(seed=0)[0] for _ in range(2)]
    fused, _ = make_optimizer(models[0], 1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(models[1].parameters(), lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    ids = torch.randint(0, 100, (2, 12))
    for _ in range(3):
        for model, opt in zip(models, (fused, plain)):
            model(ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
