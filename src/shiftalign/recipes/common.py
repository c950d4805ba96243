"""Steps shared by the offline recipes: accelerator, data, loss, reference log-probs, training, saving."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import RunConfig, dump_config, from_dict
from ..data.batching import visited_rows
from ..data.load import attach_weights, load_examples, load_weights
from ..data.tokenize import add_mismatched_branch, tokenize_examples
from ..errors import ConfigError
from ..io import atomic_path, write_json_atomic, write_text_atomic
from ..log import log, main_process_only
from ..losses import LOSSES, LossSpec
from ..models.load import mixed_precision
from ..models.packaged import cache_root
from ..rundir import claim
from ..runtime import reuse_freed_memory
from ..train import checkpoint, sharding
from ..train.loop import Task, Trainer
from ..train.reference import cached_reference_logps, frozen_reference
from . import reuse

ROW_KIND = {"paired": "paired", "reward": "paired", "unpaired": "unpaired", "sft": "sft"}


@dataclass
class TrainResult:
    """What a training run (any recipe, offline or RL) produced; also its ``summary.json``."""

    model: str  # the final model's directory
    steps: int  # optimiser steps (RL: iterations)
    train: dict  # the last training record (loss, lr, ...; RL: reward_mean, kl, ...)
    eval: dict = field(default_factory=dict)  # the final evaluation (eval/loss, eval/kl_to_reference, ...)
    data: dict = field(default_factory=dict)  # train_examples, truncation counts
    snapshots: list[str] = field(default_factory=list)  # train.snapshots' models, in step order (snapshots/step-N)

    @classmethod
    def read(cls, run_dir: Path) -> TrainResult:
        return cls(**json.loads((Path(run_dir) / "summary.json").read_text()))


def make_accelerator(cfg):
    """The run's Accelerator (devices, mixed precision, trackers) for any recipe's config; an engine the loop does
    not support (``train.sharding``, accelerate's DeepSpeed or FSDP) is refused first."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    sharding.check(cfg)
    reuse_freed_memory()
    trackers = cfg.train.report_to or None
    acc = Accelerator(mixed_precision=mixed_precision(cfg.model), cpu=not torch.cuda.is_available(),
                      log_with=trackers, project_dir=cfg.output_dir)
    set_seed(cfg.seed)
    main_process_only(acc.is_main_process)
    if trackers:
        acc.init_trackers(Path(cfg.output_dir).name)
    return acc


def resolve_loss(cfg: RunConfig, allowed_kinds: tuple[str, ...]) -> tuple[LossSpec, object]:
    knobs = dict(cfg.loss)
    if "name" not in knobs:
        raise ConfigError("loss.name is required")
    spec = LOSSES.get(knobs.pop("name"))
    if spec.kind not in allowed_kinds:
        ok = [n for n in LOSSES.names() if LOSSES.get(n).kind in allowed_kinds]
        raise ConfigError(f"loss '{spec.name}' does not fit recipe '{cfg.recipe}'; use one of {', '.join(ok)}")
    return spec, from_dict(spec.params, knobs, "loss")


def check_data(cfg: RunConfig, spec: LossSpec) -> None:
    """Read and validate the training (and evaluation) rows and join the weights file, before any model is
    loaded: a bad row, an unreadable file or weights that do not join stop the run here with the file, line
    and field (CONTRIBUTING.md, rules 10 and 12). Tokenisation, which needs the tokenizer, comes later."""
    d = cfg.data
    examples = load_examples(d.train, ROW_KIND[spec.kind], d.split)
    if d.weights:
        attach_weights(examples, load_weights(d.weights), d.weights, d.missing_weight)
    if d.eval:
        load_examples(d.eval, ROW_KIND[spec.kind], d.eval_split)


def prepare_items(cfg: RunConfig, spec: LossSpec, tokenizer, source: str, split: str, weights=True):
    d = cfg.data
    examples = load_examples(source, ROW_KIND[spec.kind], split)
    if weights and d.weights:
        examples = attach_weights(examples, load_weights(d.weights), d.weights, d.missing_weight)
    items, report = tokenize_examples(examples, tokenizer, d.max_length, d.max_prompt_length, d.truncation,
                                      d.wrap_text_as_chat)
    log(f"{source}: {len(items)} examples; {report.summary()}")
    if not items:
        raise ConfigError(f"{source}: no example is left after truncation (max_length={d.max_length})")
    if spec.kind == "unpaired":
        try:
            add_mismatched_branch(items, d.max_length, cfg.seed)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    for i, it in enumerate(items):
        it.index = i
    return items, report


def reference_for(cfg: RunConfig, spec: LossSpec, model, items, pad_id, acc, rows: list[int] | None = None):
    """``(N, k)`` reference log-probs of ``items``; with ``rows``, computed for those rows only (the ones
    the training steps visit) and NaN elsewhere, so that a row read without its log-probs cannot pass
    unnoticed. A run of 40 steps of 8 on 1,040 pairs thus computes 320 rows, not 1,040."""
    if not spec.needs_reference or items is None:
        return None
    if rows is not None and len(rows) < len(items):
        sub = reference_for(cfg, spec, model, [items[i] for i in rows], pad_id, acc)
        full = torch.full((len(items), sub.shape[1]), float("nan"), dtype=sub.dtype)
        full[torch.tensor(rows, dtype=torch.long)] = sub
        return full
    d = cfg.data
    settings = {"max_length": d.max_length, "max_prompt_length": d.max_prompt_length, "truncation": d.truncation,
                "precision": mixed_precision(cfg.model)}
    cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root() / "reference"
    if cfg.reference is not None:
        model = frozen_reference(cfg.model, cfg.reference, acc.device)
    with acc.autocast():  # the reference in the same precision as the policy's forward in training
        return cached_reference_logps(model, items, pad_id, cfg.train.reference_batch_size, cache, settings,
                                      acc.device, acc.process_index, acc.num_processes)


def start_output(cfg, acc) -> TrainResult | None:
    """Claim ``output_dir`` for this config (``rundir.claim``; call after the config and the data are
    validated) and record the resolved config. Returns the result of a run that already finished
    under this config (nothing is left to do), else None."""
    out = Path(cfg.output_dir)
    resumed = claim(out, cfg, acc.is_main_process, wait=acc.wait_for_everyone)
    acc.wait_for_everyone()
    if resumed and (out / "summary.json").is_file() and (out / "model").is_dir():
        return TrainResult.read(out)
    if acc.is_main_process:
        write_text_atomic(out / "config.yaml", dump_config(cfg))
    return None


def save_model(cfg: RunConfig, path: Path, hf_model, tokenizer, state_dict: dict | None = None) -> None:
    """A loadable model directory (weights, tokenizer, the config that made it), written atomically; a sharded
    model's weights are given as ``state_dict`` (``sharding.full_state_dict``)."""
    with atomic_path(path) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        write_text_atomic(tmp / "shiftalign_config.yaml", dump_config(cfg))


def save_final(cfg: RunConfig, acc, hf_model, tokenizer, result: TrainResult) -> Path:
    """The final model (LoRA: the adapter and the merged model) and ``summary.json``."""
    out = Path(cfg.output_dir)
    state = sharding.full_state_dict(hf_model)  # every process: gathers a sharded model's weights (else None)
    if acc.is_main_process:
        if hasattr(hf_model, "merge_and_unload"):  # LoRA, never sharded
            with atomic_path(out / "adapter") as tmp:
                hf_model.save_pretrained(tmp)
            hf_model = hf_model.merge_and_unload()
        save_model(cfg, out / "model", hf_model, tokenizer, state)
        write_json_atomic(out / "summary.json", asdict(result))
    acc.wait_for_everyone()
    return out / "model"


def snapshot_saver(cfg: RunConfig, tokenizer, acc):
    """The loop's ``snapshot`` hook: the model at a step of ``train.snapshots`` into snapshots/step-N."""
    if not cfg.train.snapshots:
        return None
    if cfg.model.lora is not None:
        raise ConfigError("train.snapshots: saving frontier snapshots of a LoRA run is not supported; train the "
                          "full model, or leave snapshots empty")

    def save(step: int, scorer) -> None:
        state = sharding.full_state_dict(scorer.model)
        if acc.is_main_process:
            save_model(cfg, Path(cfg.output_dir) / "snapshots" / f"step-{step:08d}", scorer.model, tokenizer, state)
        acc.wait_for_everyone()

    return save


def snapshot_dirs(run_dir: Path) -> list[str]:
    """A run's frontier snapshots, in step order."""
    return [str(p) for p in sorted((Path(run_dir) / "snapshots").glob("step-*")) if p.is_dir()]


def run(cfg: RunConfig, spec: LossSpec, params, model, tokenizer, scorer, acc, eval_extra=None) -> TrainResult:
    train_items, report = prepare_items(cfg, spec, tokenizer, cfg.data.train, cfg.data.split)
    eval_items = None
    if cfg.data.eval:
        eval_items, _ = prepare_items(cfg, spec, tokenizer, cfg.data.eval, cfg.data.eval_split, weights=False)
    finished = start_output(cfg, acc)
    if finished is not None:
        log(f"{cfg.output_dir}: finished earlier under this configuration; nothing to do")
        return finished
    key = reuse.run_key(cfg) if cfg.reuse else None
    if key is not None:
        if acc.is_main_process:
            reuse.lookup(cfg, key)
        acc.wait_for_everyone()
        if (Path(cfg.output_dir) / "summary.json").is_file():  # linked from the same run done before
            return TrainResult.read(Path(cfg.output_dir))
    model.to(acc.device)
    dynamic = None
    if cfg.policy_ratio is not None:
        if spec.kind != "paired" or not getattr(scorer, "per_pair_logps", False):
            raise ConfigError("policy_ratio weights need a paired preference loss (recipe preference)")
        from ..reweight.policy_ratio import policy_ratio_weights

        def dynamic(out):
            return policy_ratio_weights(out, cfg.policy_ratio)
    task = Task(scorer=scorer, spec=spec, params=params, train_items=train_items, pad_id=tokenizer.pad_token_id,
                eval_items=eval_items, eval_extra=eval_extra, dynamic_weights=dynamic,
                snapshot=snapshot_saver(cfg, tokenizer, acc),
                ref_train=reference_for(cfg, spec, model, train_items, tokenizer.pad_token_id, acc,
                                        visited_rows(len(train_items), cfg.train.batch_size, cfg.seed,
                                                     cfg.train.epochs, cfg.train.max_steps)),
                ref_eval=reference_for(cfg, spec, model, eval_items, tokenizer.pad_token_id, acc))
    trainer = Trainer(cfg, task, acc)
    fitted = trainer.fit()
    result = TrainResult(model=str(Path(cfg.output_dir) / "model"), steps=fitted["steps"], train=fitted["train"],
                         eval=fitted["eval"], data={"train_examples": len(train_items),
                                                    "truncated_prompts": report.truncated_prompts,
                                                    "truncated_responses": report.truncated_responses,
                                                    "skipped": report.skipped},
                         snapshots=snapshot_dirs(Path(cfg.output_dir)) if cfg.train.snapshots else [])
    path = save_final(cfg, acc, acc.unwrap_model(trainer.model).model, tokenizer, result)
    if not cfg.train.keep_optimizer_state and acc.is_main_process:
        checkpoint.remove_all(Path(cfg.output_dir) / "checkpoints")
    if key is not None and acc.is_main_process:
        reuse.record(cfg, key)
    log(f"model: {path}; metrics: {Path(cfg.output_dir) / 'metrics.jsonl'}; "
        f"config: {Path(cfg.output_dir) / 'config.yaml'}")
    return result


def run_simple(cfg: RunConfig, kinds: tuple[str, ...], load, wrap) -> TrainResult:
    """A recipe with no extra evaluation: accelerator, loss, model (``load(cfg.model)``), train."""
    acc = make_accelerator(cfg)
    spec, params = resolve_loss(cfg, kinds)
    check_data(cfg, spec)
    model, tokenizer = load(cfg.model)
    return run(cfg, spec, params, model, tokenizer, wrap(model), acc)
