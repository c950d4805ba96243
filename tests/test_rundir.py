"""Run directories as provenance: a directory belongs to one configuration; a run under another one,
or one whose input fails validation, leaves it byte-identical; --restart starts over; a finished run
keeps its model, not its optimiser state, and is not trained twice."""

import json
from pathlib import Path

import pytest
import yaml

from shiftalign.cli import main

from conftest import pref_rows, write_jsonl


def _cfg(tmp_path, tiny_dir, data, name="cfg.yaml", **train):
    cfg = {"recipe": "preference", "output_dir": str(tmp_path / "run"), "model": {"path": tiny_dir},
           "data": {"train": data}, "loss": {"name": "dpo", "beta": 0.1},
           "train": {"batch_size": 8, "micro_batch_size": 4, "lr": 1e-3, "progress": False, **train}}
    (tmp_path / name).write_text(yaml.safe_dump(cfg))
    return str(tmp_path / name)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_finished_run_keeps_its_model_only_and_is_not_trained_twice(tmp_path, tiny_dir, prefs, capsys):
    cfg = _cfg(tmp_path, tiny_dir, prefs)
    assert main(["train", cfg]) == 0
    run = tmp_path / "run"
    assert (run / "model").is_dir() and (run / "run.json").is_file()
    assert not (run / "checkpoints").exists()  # optimiser state dropped by default
    before = _snapshot(run)
    assert main(["train", cfg]) == 0  # same config: nothing to do
    assert "finished earlier" in capsys.readouterr().out
    assert _snapshot(run) == before
    # keep_optimizer_state keeps the last checkpoint
    assert main(["train", cfg, "output_dir=" + str(tmp_path / "kept"), "train.keep_optimizer_state=true"]) == 0
    assert list((tmp_path / "kept" / "checkpoints").glob("step-*"))


def test_another_config_is_refused_and_the_directory_stays_identical(tmp_path, tiny_dir, prefs, capsys):
    cfg = _cfg(tmp_path, tiny_dir, prefs)
    assert main(["train", cfg]) == 0
    run = tmp_path / "run"
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", cfg, "loss.beta=0.5", "train.lr=1e-4"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("shiftalign: error")]
    assert len(errors) == 1 and "loss.beta 0.1 -> 0.5" in errors[0] and "train.lr" in errors[0] and "--restart" in errors[0]
    assert _snapshot(run) == before
    # keys that cannot change results do not count
    assert main(["train", cfg, "train.log_every=5", "train.progress=true"]) == 0
    assert _snapshot(run) == before
    # --restart empties the directory and trains under the new config
    assert main(["train", cfg, "--restart", "loss.beta=0.5"]) == 0  # the flag before or after the overrides
    stored = json.loads((run / "run.json").read_text())
    assert stored["config"]["loss.beta"] == 0.5
    assert yaml.safe_load((run / "config.yaml").read_text())["loss"]["beta"] == 0.5
    assert _snapshot(run)["model/model.safetensors"] != before["model/model.safetensors"]


def test_a_run_that_fails_validation_writes_nothing(tmp_path, tiny_dir, prefs):
    assert main(["train", _cfg(tmp_path, tiny_dir, prefs)]) == 0
    run = tmp_path / "run"
    before = _snapshot(run)
    rows = pref_rows(8)
    rows[3]["chosen"] = ""
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["train", _cfg(tmp_path, tiny_dir, bad, name="bad.yaml")]) == 2
    assert _snapshot(run) == before
    # and into a new directory: not even the directory is made
    assert main(["train", _cfg(tmp_path, tiny_dir, bad, name="bad.yaml"), f"output_dir={tmp_path / 'new'}"]) == 2
    assert not (tmp_path / "new").exists()


def test_a_directory_of_foreign_files_is_refused(tmp_path, tiny_dir, prefs):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(["train", _cfg(tmp_path, tiny_dir, prefs)]) == 2
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("interrupt_at", [1])
def test_resume_continues_only_the_same_config(tmp_path, tiny_dir, interrupt_at):
    from shiftalign.train.loop import Trainer

    data = write_jsonl(tmp_path / "p.jsonl", pref_rows(16))
    cfg = _cfg(tmp_path, tiny_dir, data, batch_size=4, micro_batch_size=2, save_every=1, epochs=1)
    orig, calls = Trainer.train_step, {"n": 0}

    def dying(self, idx):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return orig(self, idx)

    Trainer.train_step = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            main(["train", cfg])
    finally:
        Trainer.train_step = orig
    run = tmp_path / "run"
    assert list((run / "checkpoints").glob("step-*"))
    before = _snapshot(run)
    assert main(["train", cfg, "train.lr=5e-4"]) == 2  # another config may not continue this run
    assert _snapshot(run) == before
    assert main(["train", cfg]) == 0  # the same config resumes
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_a_directory_from_before_a_new_field_is_the_same_configuration_at_that_fields_default(tmp_path):
    """A claim recorded before a field existed resumes when the field has its default (and is brought up to
    date); a non-default value of the new field, or any other difference, is still refused."""
    from dataclasses import dataclass

    from shiftalign.errors import ConfigError
    from shiftalign.rundir import MARKER, claim, flat_config

    @dataclass
    class Old:
        lr: float = 1e-5

    @dataclass
    class New:
        lr: float = 1e-5
        max_seeds: int | None = None

    assert claim(tmp_path / "a", Old()) is False
    assert claim(tmp_path / "a", New()) is True
    assert json.loads((tmp_path / "a" / MARKER).read_text())["config"] == flat_config(New())
    claim(tmp_path / "b", Old())
    stored_old = json.loads((tmp_path / "b" / MARKER).read_text())
    for changed in (New(max_seeds=2), New(lr=1e-4)):
        with pytest.raises(ConfigError, match="another configuration"):
            claim(tmp_path / "b", changed)
    assert json.loads((tmp_path / "b" / MARKER).read_text()) == stored_old


def test_under_several_processes_every_process_reads_before_the_main_one_writes(tmp_path):
    """The claim two processes make of one new directory: each reads it before the barrier and only the main
    process writes after it, so the other never reads a directory that is half-made (a bare directory holding
    the marker's temporary file used to read as foreign files, and stopped that process)."""
    from dataclasses import dataclass

    from shiftalign.rundir import MARKER, claim

    @dataclass
    class Cfg:
        lr: float = 1e-5

    root = tmp_path / "run"
    seen = []

    def barrier_then_main_writes():  # the other process reached the barrier; the main one then writes
        seen.append(root.exists())
        assert claim(root, Cfg(), is_main=True, wait=lambda: seen.append(root.exists())) is False

    assert claim(root, Cfg(), is_main=False, wait=barrier_then_main_writes) is False
    assert seen == [False, False] and (root / MARKER).is_file() and [p.name for p in root.iterdir()] == [MARKER]
    assert claim(root, Cfg(), is_main=False, wait=lambda: None) is True  # later: the same config resumes
