"""Every shipped config (configs/, bench/shift/) loads under the command its header names
(``# Run: shiftalign <command> <file>``), with its method sections checked; every experiment's arms and
data files validate, and no two shipped configs write to the same output directory."""

import re
from pathlib import Path

import pytest
import yaml

from shiftalign.cli import load_for_command

ROOT = Path(__file__).parents[1]
FILES = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("configs/*.yaml"), *ROOT.glob("bench/shift/*.yaml")])
RUN = re.compile(r"shiftalign ((?:weights |heads )?[a-z]+) (\S+\.yaml)")


def named_command(path: str) -> str:
    header = [line for line in (ROOT / path).read_text().splitlines() if line.startswith("#")]
    commands = [cmd for line in header for cmd, file in RUN.findall(line) if file == path]
    assert commands, f"{path}: its header names no `shiftalign <command> {path}`"
    return commands[0]


@pytest.mark.parametrize("path", FILES)
def test_shipped_config_loads_under_its_command(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    command = named_command(path)
    cfg, _ = load_for_command(command, path, [])
    if command == "experiment":
        from shiftalign.experiment.engine import validate_inputs

        names = [a.name for a in validate_inputs(cfg)]
        assert cfg.baseline_arm in names and (cfg.oracle_arm is None or cfg.oracle_arm in names)


def test_shipped_configs_write_to_their_own_directories():
    outputs = {}
    for path in FILES:
        out = (yaml.safe_load((ROOT / path).read_text()) or {}).get("output_dir")
        if out:
            assert out not in outputs, f"{path} and {outputs[out]} both write to {out}"
            outputs[out] = path
