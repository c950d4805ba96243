"""Our DPO loss on a fixed batch with policy != reference equals TRL's DPOTrainer to 1e-5.

Both trainers get the same tiny random policy, a different tiny random reference, the same 8
plain-text pairs and one batch holding all of them (so the batch mean does not depend on order).
TRL computes the loss its own way (separate padded chosen / rejected sequences, reference forward
in the step); we compute it from tree rows and cached reference log-probs.
"""

import pytest
import torch

trl = pytest.importorskip("trl")

from shiftalign.data.batching import collate  # noqa: E402
from shiftalign.data.schema import validate_row  # noqa: E402
from shiftalign.data.tokenize import tokenize_examples  # noqa: E402
from shiftalign.losses.dpo import dpo_loss  # noqa: E402
from shiftalign.models.tiny import tiny_causal_lm  # noqa: E402
from shiftalign.ops.logprobs import branch_logps  # noqa: E402
from shiftalign.train.reference import compute_logps  # noqa: E402

from conftest import pref_rows  # noqa: E402


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_trl(tmp_path, beta):
    import datasets
    from trl import DPOConfig, DPOTrainer

    policy, tok = tiny_causal_lm(seed=1)
    reference, _ = tiny_causal_lm(seed=2)
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pref_rows(8)]

    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=8, beta=beta, bf16=False,
                     gradient_checkpointing=False, report_to=[], use_cpu=True, max_length=512)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()

    items, _ = tokenize_examples([validate_row(r, "paired", "x", i) for i, r in enumerate(rows)], tok, 512, 256)
    ref = compute_logps(reference, items, tok.pad_token_id, batch_size=8, device="cpu")
    with torch.no_grad():
        lp = branch_logps(policy, collate(items, tok.pad_token_id))["logps"]
    ours, _ = dpo_loss(lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], beta=beta)
    assert abs(ours.mean().item() - trl_loss) < 1e-5, (ours.mean().item(), trl_loss)
    assert abs(trl_loss - 0.6931) > 1e-3  # policy != reference: a non-trivial value was compared
