"""A diverse ensemble of reward heads: members that differ in their features as well as in their bootstrap resample.

Eisenstein et al. (2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward
Hacking") find that reward-model ensembles whose members differ in their pretraining seed generalise better than
ensembles whose members differ only in their fine-tuning seed, and that reward hacking persists where all members
share an error: members that see the same inputs tend to err together, and then their spread does not flag the
error. The heads of ``models.reward_heads`` differ only in their bootstrap resample of the pairs, on one frozen
feature set. Here the K heads are split over M feature sets (``members``: e.g. the policy's hidden states at
layers 9 and 18 and a sentence embedding; or ``diverse: true``: every candidate layer of ``features.layer`` and
the packaged sentence embedding), as evenly as K allows (the first K mod M sets get one more), each head fitted on
its own bootstrap resample of the pairs with its set's cross-validated penalty. The mean over the K heads and
their spread then feed the labeller, the RL scorer and the conservative bounds of Coste et al. (2024, "Reward
Model Ensembles Help Mitigate Overoptimization"; ``ops.ensemble_bound``) as any ensemble does. Whether the spread
does flag the wrong labels is measured, not assumed: ``metrics.spread_auroc``, per round of the pseudo arm
(``labeling.gold_check``), for this ensemble and for the plain bootstrap heads alike.

Features: the sets of one causal LM that differ only in their layer come from one backbone pass per batch
(``features.extract_layers``, cached per layer); every other set is extracted once (:func:`extract_sets`).

Saved like the heads of one feature set (``reward_heads.json``, ``heads.safetensors``), with ``members`` (each
set's features, head count and penalty) in the json and ``theta.<m>`` / ``scale.<m>`` per set in the tensors;
``RewardHeads.load`` returns a :class:`DiverseHeads` for such a directory, whose ``score_texts`` gives one
(K, N) row per head, the sets' rows in the order listed.

    shiftalign heads fit configs/reward_heads.yaml diverse=true features.kind=hidden 'features.layer=[9, 18]'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..config import from_dict
from ..errors import ConfigError
from ..io import atomic_path, write_json_atomic
from .features import FEATURE_KINDS, FeatureConfig, candidate_layers, extract, extract_layers


def member_sets(features: FeatureConfig, members: list[FeatureConfig] | None, diverse: bool,
                where: str = "") -> list[FeatureConfig] | None:
    """The feature sets of a diverse ensemble: ``members`` as given, or with ``diverse`` every candidate layer
    of ``features`` (a kind with layers; one layer: that one) and the packaged sentence embedding; None for
    heads on the one feature set ``features`` (the bootstrap ensemble). ConfigError for fewer than two sets,
    a repeated set, an unknown kind or candidate layers in a member; ``where`` prefixes the keys."""
    if members is not None and diverse:
        raise ConfigError(f"{where}members / {where}diverse: give the feature sets or diverse: true, not both")
    if diverse:
        if FEATURE_KINDS.get(features.kind).compute_layers is None:
            raise ConfigError(f"{where}diverse: its members are layers of features of a kind with layers (hidden) "
                              f"and the sentence embedding; got features.kind {features.kind!r}")
        layers = candidate_layers(features) or [features.layer]
        members = [replace(features, layer=layer) for layer in layers] + [FeatureConfig(kind="embedding")]
    if members is None:
        return None
    for i, f in enumerate(members):
        FEATURE_KINDS.get(f.kind)
        if candidate_layers(f) is not None:
            raise ConfigError(f"{where}members[{i}].layer: a member is one feature set, one layer; got {f.layer}")
    keys = [json.dumps(asdict(f), sort_keys=True) for f in members]
    if len(members) < 2 or len(set(keys)) != len(keys):
        raise ConfigError(f"{where}members: a diverse ensemble needs two or more different feature sets, got "
                          f"{[asdict(f) for f in members]}")
    return list(members)


def split_heads(heads: int, sets: int) -> list[int]:
    """How many of ``heads`` heads each of ``sets`` feature sets gets: as even as possible, the first ones more."""
    if heads < sets:
        raise ConfigError(f"reward heads: {heads} heads cannot be split over {sets} feature sets; give heads >= {sets}")
    return [heads // sets + (m < heads % sets) for m in range(sets)]


def extract_sets(pairs: list[tuple[str, str]], sets: list[FeatureConfig], cache_dir: Path | None) -> list[np.ndarray]:
    """(n, d_m) features of ``pairs`` under each feature set, in order. Sets of a kind with layers that differ in
    their layer only are extracted together (``extract_layers``: one backbone pass gives every layer)."""
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(sets):
        layered = FEATURE_KINDS.get(f.kind).compute_layers is not None
        key = json.dumps({**asdict(f), "layer": None}, sort_keys=True) if layered else f"set {i}"
        groups.setdefault(key, []).append(i)
    out: list[np.ndarray | None] = [None] * len(sets)
    for idx in groups.values():
        first = sets[idx[0]]
        if FEATURE_KINDS.get(first.kind).compute_layers is None:
            out[idx[0]] = extract(pairs, first, cache_dir)
            continue
        layers = list(dict.fromkeys(sets[i].layer for i in idx))
        got = extract_layers(pairs, replace(first, layer=layers if len(layers) > 1 else layers[0]), cache_dir)
        for i in idx:
            out[i] = got[sets[i].layer]
    return out


@dataclass
class DiverseHeads:
    members: list  # per feature set, its heads (models.reward_heads.RewardHeads: theta (K_m, d_m), features, l2)
    info: dict  # training summary: pairs, weighted, accuracies, ...

    @property
    def size(self) -> int:
        """K: every head of every feature set."""
        return sum(m.size for m in self.members)

    @property
    def features(self) -> list[FeatureConfig]:
        return [m.features for m in self.members]

    def score_sets(self, X: list[np.ndarray]) -> np.ndarray:
        """(K, N) scores of N rows given their features under each set (``X[m]``: (N, d_m))."""
        return np.concatenate([m.scores(x) for m, x in zip(self.members, X)])

    def score_texts(self, pairs: list[tuple[str, str]], cache_dir: Path | None) -> np.ndarray:
        """(K, N) scores of (prompt text, response text) pairs: each feature set extracted once (the layers of
        one model from one pass), every head scoring on its own set."""
        return self.score_sets(extract_sets(pairs, self.features, cache_dir))

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        tensors = {}
        for i, m in enumerate(self.members):
            tensors[f"theta.{i}"], tensors[f"scale.{i}"] = np.ascontiguousarray(m.theta), np.ascontiguousarray(m.scale)
        with atomic_path(directory / "heads.safetensors") as tmp:
            save_file(tensors, str(tmp))
        members = [{"features": asdict(m.features), "heads": m.size, "l2": m.l2} for m in self.members]
        write_json_atomic(directory / "reward_heads.json", {"members": members, "heads": self.size, **self.info})

    @classmethod
    def from_saved(cls, directory: Path, meta: dict, tensors: dict, member: type) -> DiverseHeads:
        """The ensemble of a saved directory's ``meta`` (its json) and ``tensors``; ``member``: the class of
        heads on one feature set (``RewardHeads``), built as ``member(theta, scale, features, l2, {})``."""
        where = f"{Path(directory) / 'reward_heads.json'}: members"
        members = [member(tensors[f"theta.{i}"], tensors[f"scale.{i}"],
                          from_dict(FeatureConfig, m["features"], f"{where}[{i}].features"), float(m["l2"]), {})
                   for i, m in enumerate(meta["members"])]
        return cls(members, {k: v for k, v in meta.items() if k not in ("members", "heads")})
