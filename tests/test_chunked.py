"""The chunked head equals the plain full-vocabulary path in values and gradients."""

import pytest
import torch

from shiftalign.ops.chunked import chunked_token_logps


def _plain(h, W, y, T):
    logp = torch.log_softmax((h @ W.T).float() / T, -1)
    return logp.gather(-1, y[:, None])[:, 0], -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("with_entropy", [True, False])
@pytest.mark.parametrize("T, chunk", [(1.0, 7), (0.7, 64), (1.3, 1000)])
def test_chunked_head_equals_the_plain_path_in_values_and_gradients(T, chunk, with_entropy):
    torch.manual_seed(0)
    N, H, V = 50, 16, 300
    h0, W0 = torch.randn(N, H) * 2, torch.randn(V, H)
    y = torch.randint(0, V, (N,))
    g1 = torch.randn(N)  # arbitrary upstream gradients on logp and (when computed) entropy
    g2 = torch.randn(N) if with_entropy else torch.zeros(N)
    results = []
    for fn in (_plain, lambda h, W, y, T: chunked_token_logps(h, W, y, T, chunk, with_entropy=with_entropy)):
        h, W = h0.clone().requires_grad_(), W0.clone().requires_grad_()
        logp, ent = fn(h, W, y, T)
        ((g1 * logp).sum() + (g2 * ent).sum()).backward()
        results.append((logp.detach(), ent.detach() if with_entropy else None, h.grad, W.grad))
    for a, b in zip(*results):
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


def test_chunked_head_without_entropy_and_under_autocast():
    torch.manual_seed(1)
    h, W = torch.randn(20, 8, requires_grad=True), torch.randn(40, 8, requires_grad=True)
    y = torch.randint(0, 40, (20,))
    logp, ent = chunked_token_logps(h, W, y, chunk=3)
    assert torch.equal(ent, torch.zeros(20))
    logp.sum().backward()
    ref_h, ref_W = h.grad.clone(), W.grad.clone()
    h.grad = W.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp2, _ = chunked_token_logps(h, W, y, chunk=3)
    assert logp2.dtype == torch.float32 and torch.allclose(logp, logp2, atol=1e-5)
    logp2.sum().backward()
    assert torch.allclose(h.grad, ref_h, atol=1e-5) and torch.allclose(W.grad, ref_W, atol=1e-5)


def test_branch_logps_on_a_model_equal_the_full_logits_path(tiny_dir, tmp_path, monkeypatch):
    """The DPO path (branch_logps) with the chunked head against the full-logits head on a tiny model:
    log-probs and every parameter's gradient agree to 1e-5."""
    import shiftalign.ops.logprobs as lp
    from shiftalign.config import ModelConfig
    from shiftalign.data.batching import collate
    from shiftalign.data.load import load_examples
    from shiftalign.data.tokenize import tokenize_examples
    from shiftalign.models.load import load_policy

    from conftest import pref_rows, write_jsonl

    model, tok = load_policy(ModelConfig(path=tiny_dir))
    items, _ = tokenize_examples(load_examples(write_jsonl(tmp_path / "p.jsonl", pref_rows(6)), "paired"), tok, 64, 32,
                                 "truncate", False)
    batch = collate(items, tok.pad_token_id)
    runs = []
    for chunked in (True, False):
        if not chunked:
            monkeypatch.setattr(lp, "_plain_head", lambda hf: None)
        model.zero_grad()
        out = lp.branch_logps(model, batch)
        out["logps"].sum().backward()
        runs.append((out["logps"].detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    for n, g in runs[0][1].items():
        assert torch.allclose(g, runs[1][1][n], atol=1e-5), n


def test_bf16_autocast_weights_are_snapped_to_the_bf16_grid(tiny_dir):
    """A weight halfway between two bf16 values jumps a whole bf16 step under any tiny update; on the
    grid it does not. Models loaded for bf16 autocast are put on the grid."""
    from shiftalign.config import ModelConfig
    from shiftalign.models.load import load_policy, snap_to_bf16

    tie = torch.tensor([1.0 + 2 ** -8])  # halfway between the bf16 values 1 and 1 + 2^-7
    assert (tie + 1e-7).to(torch.bfloat16).item() - (tie - 1e-7).to(torch.bfloat16).item() == 2 ** -7
    layer = torch.nn.Linear(1, 1, bias=False)
    layer.weight.data.fill_(tie.item())
    assert snap_to_bf16(layer) == 1
    w = layer.weight.detach()
    assert (w + 1e-7).to(torch.bfloat16).item() == (w - 1e-7).to(torch.bfloat16).item() == w.item()
    model, _ = load_policy(ModelConfig(path=tiny_dir, dtype="bfloat16"))
    assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in model.parameters())


def _bf16_ties(model) -> None:
    """Put every weight exactly halfway between two bf16 values (as ~5 % of the packaged model's are)."""
    with torch.no_grad():
        for p in model.parameters():
            b = p.to(torch.bfloat16).float()
            _, e = torch.frexp(b)
            p.copy_(b + torch.ldexp(torch.sign(b), e - 9))  # + half a bf16 step at b's exponent


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bf16_dpo_steps_move_the_loss_like_fp32(tmp_path, prefs, dtype):
    """Three DPO steps at lr 1e-6 from weights at bf16 ties: the loss moves by about what fp32 moves it.
    Measured: fp32 -1.5e-4, bf16 -6.5e-5; with the snapping switched off, bf16 moved 1.5e-3 (every tie
    flips a whole bf16 step whatever the lr; on the packaged model the loss fell 0.69 -> 0.22 in one
    step). Each precision runs in its own process (accelerate fixes it per process)."""
    import json
    import subprocess
    import sys

    import yaml

    from shiftalign.models.tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(0)
    _bf16_ties(model)
    assert sum(int((p != p.to(torch.bfloat16).float()).sum()) for p in model.parameters()) > 1000
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": str(tmp_path / "m"),
           "dtype": dtype}, "data": {"train": prefs}, "loss": {"name": "dpo", "beta": 0.1},
           "train": {"batch_size": 8, "micro_batch_size": 8, "progress": False, "lr": 1e-6, "epochs": 2,
                     "max_steps": 3, "schedule": "constant", "max_grad_norm": 0.0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-c", "from shiftalign.cli import main; raise SystemExit(main())", "train",
                    str(tmp_path / "c.yaml")], check=True, capture_output=True, timeout=300)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert max(abs(x - losses[0]) for x in losses) < 5e-4
