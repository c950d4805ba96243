"""Seeded step batches, length grouping, and collation into "tree rows".

A tree row packs one prompt and its k responses into one sequence: ``[prompt | response 1 | ... |
response k | pad]``. A custom attention mask lets each response attend to the prompt and to itself
only, and each response's positions restart right after the prompt, so the hidden states of every
response are exactly those of a separate ``prompt + response`` sequence while the prompt is
computed once. Chosen and rejected of a pair thus share one forward pass and one prompt.

Batch tensors (B rows, T tokens, k branches, N response tokens in the batch):
``input_ids (B, T)``, ``position_ids (B, T)``, ``attention_mask (B, 1, T, T)`` bool,
``pred_rows / pred_pos / targets / segment (N,)`` to gather the hidden state that predicts each
response token and scatter its log-prob into its ``(row, branch)`` slot, ``branch_end (B, k)``
(index of each response's last token), ``weights (B,)``, ``index (B,)`` (dataset position),
``labels (B,)`` when present.
"""

from __future__ import annotations

import random

import torch

from .tokenize import Tokenized


def step_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle 0..n-1 with (seed, epoch) and cut into full optimiser-step batches (a short tail is dropped)."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def visited_rows(n: int, batch_size: int, seed: int, epochs: int, max_steps: int) -> list[int]:
    """The rows that the optimiser steps of a run visit, in order of position: the batches of
    :func:`step_batches`, epoch after epoch, up to ``max_steps`` steps (0: every epoch's)."""
    seen: set[int] = set()
    steps = 0
    for epoch in range(epochs):
        for batch in step_batches(n, batch_size, seed, epoch):
            if max_steps > 0 and steps >= max_steps:
                return sorted(seen)
            seen.update(batch)
            steps += 1
        if len(seen) == n:
            break
    return sorted(seen)


def split_step(step: list[int], lengths: list[int], micro_batch_size: int, world_size: int, rank: int) -> list[list[int]]:
    """This process's micro-batches of one step. Sorting the step by length before cutting it keeps
    padding low; micro-batch c goes to process c % world_size, which balances work between processes."""
    ordered = sorted(step, key=lambda i: (lengths[i], i))
    chunks = [ordered[i:i + micro_batch_size] for i in range(0, len(ordered), micro_batch_size)]
    return [c for j, c in enumerate(chunks) if j % world_size == rank]


def collate(items: list[Tokenized], pad_id: int) -> dict[str, torch.Tensor]:
    k = len(items[0].completion_ids)
    if any(len(it.completion_ids) != k for it in items):
        raise ValueError("every row of a batch needs the same number of responses")
    B, T = len(items), max(it.row_length for it in items)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    branch = torch.full((B, T), -1, dtype=torch.long)
    branch_end = torch.zeros((B, k), dtype=torch.long)
    pred_rows, pred_pos, targets, segment = [], [], [], []
    for b, it in enumerate(items):
        P = len(it.prompt_ids)
        input_ids[b, :P] = torch.tensor(it.prompt_ids)
        position_ids[b, :P] = torch.arange(P)
        branch[b, :P] = 0
        start = P
        for j, ids in enumerate(it.completion_ids):
            L = len(ids)
            sl = slice(start, start + L)
            input_ids[b, sl] = torch.tensor(ids, dtype=torch.long)
            position_ids[b, sl] = torch.arange(P, P + L)
            branch[b, sl] = j + 1
            branch_end[b, j] = start + L - 1 if L else P - 1
            # The token at position t is predicted by the hidden state before it: the last prompt
            # token for the first response token, the previous response token otherwise.
            pred_rows += [b] * L
            pred_pos += [P - 1] + list(range(start, start + L - 1)) if L else []
            targets += ids
            segment += [b * k + j] * L
            start += L
    valid = branch >= 0
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    bi, bj = branch[:, :, None], branch[:, None, :]
    mask = causal & ((bj == 0) | (bj == bi)) & valid[:, None, :] & valid[:, :, None]
    mask |= torch.eye(T, dtype=torch.bool)  # padding rows attend to themselves: no all-masked row
    batch = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "attention_mask": mask[:, None],
        "pred_rows": torch.tensor(pred_rows, dtype=torch.long),
        "pred_pos": torch.tensor(pred_pos, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "segment": torch.tensor(segment, dtype=torch.long),
        "branch_end": branch_end,
        "weights": torch.tensor([it.weight for it in items], dtype=torch.float32),
        "index": torch.tensor([it.index for it in items], dtype=torch.long),
    }
    if items[0].label is not None:
        batch["labels"] = torch.tensor([bool(it.label) for it in items])
    return batch
