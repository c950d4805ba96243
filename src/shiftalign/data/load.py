"""Load rows from JSONL / JSON / Parquet / CSV files, or a Hugging Face dataset (hub name or local
directory; offline works from a local directory), validate them and join optional per-example weights.

Text files are read as UTF-8; a byte-order mark is skipped and CRLF line ends are accepted. Invalid
UTF-8, a directory or an unreadable file where a file is expected, an empty source, and a weights
file whose ids are missing from the data or absent from it all stop with a :class:`DataError`
naming the file, the line and the field.

Usage::

    examples = load_examples("prefs.jsonl", kind="paired")
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from ..io import read_jsonl_lines, read_text
from .schema import Example, validate_row

_JSON_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages")


def _rows_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    return read_jsonl_lines(path)


def _rows_json(path: Path) -> Iterator[tuple[int, object]]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(str(path), e.lineno, None, f"malformed JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise DataError(str(path), None, None, "a JSON array of row objects")
    yield from enumerate(data, 1)


def _csv_value(key: str, value: str):
    if key in _JSON_FIELDS and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if key == "label":
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
    if key == "weight":
        try:
            return float(value) if value.strip() else None
        except ValueError:
            return value
    return value


def _rows_csv(path: Path) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    for row in reader:
        yield reader.line_num, {k: _csv_value(k, v) for k, v in row.items() if k is not None}


def _rows_table(records) -> Iterator[tuple[int, object]]:
    for n, row in enumerate(records, 1):
        yield n, {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _rows_parquet(path: Path):
    import pyarrow.parquet as pq

    return _rows_table(pq.read_table(path).to_pylist())


def _rows_hf(name: str, split: str):
    import datasets

    local = Path(name)
    if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
        ds = datasets.load_from_disk(name)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(name, split=split)
    return _rows_table(ds)


READERS = {".jsonl": _rows_jsonl, ".json": _rows_json, ".csv": _rows_csv, ".parquet": _rows_parquet}


def read_rows(source: str | os.PathLike, split: str = "train") -> tuple[Iterator[tuple[int, object]], str]:
    """Raw rows with their 1-based line (JSONL, CSV) or row (JSON, Parquet, HF) number, and the unit's name."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in READERS and path.is_dir():
        raise DataError(str(path), None, None, "a file (got a directory)")
    if path.is_file():
        if suffix not in READERS:
            raise DataError(str(path), None, None, f"a file ending in one of {', '.join(READERS)}")
        return READERS[suffix](path), "line" if suffix in (".jsonl", ".csv") else "row"
    if suffix in READERS:
        raise DataError(str(path), None, None, "an existing file (not found)")
    return _rows_hf(str(source), split), "row"


def load_examples(source, kind: str, split: str = "train") -> list[Example]:
    """Read and validate every row. Given ids must be unique within a source; a row without an id
    whose content repeats an earlier row's gets the content hash plus ``-2``, ``-3``... (stable for a
    given file)."""
    rows, unit = read_rows(source, split)
    out, seen = [], {}
    for n, row in rows:
        ex = validate_row(row, kind, str(source), n, unit)
        if ex.id in seen and isinstance(row, dict) and row.get("id") is None:
            k = 2
            while f"{ex.id}-{k}" in seen:
                k += 1
            ex.id = f"{ex.id}-{k}"
        if ex.id in seen:
            raise DataError(str(source), n, "id", f"a unique id ('{ex.id}' already at {unit} {seen[ex.id]})", unit=unit)
        seen[ex.id] = n
        out.append(ex)
    if not out:
        raise DataError(str(source), None, None, "at least one row (the source is empty)")
    return out


def load_weights(path) -> dict[str, float]:
    """A weights file: JSONL rows ``{"id": ..., "weight": ...}`` (as written by ``shiftalign weights fit``)."""
    weights = {}
    for n, row in _rows_jsonl(Path(path)):
        if not isinstance(row, dict) or "id" not in row:
            raise DataError(str(path), n, "id", "a row {'id': ..., 'weight': ...}")
        w = row.get("weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise DataError(str(path), n, "weight", f"a finite number >= 0 (got {w!r})")
        weights[str(row["id"])] = float(w)
    return weights


def attach_weights(examples: list[Example], weights: dict[str, float], source: str, missing: str = "error") -> list[Example]:
    """Join weights on id. ``missing``: 'error' (default), 'one' (weight 1) or 'drop' (drop the example).
    Ids in the weights file that are not in the data are an error: the file was fitted on other data."""
    ids = {ex.id for ex in examples}
    extra = [i for i in weights if i not in ids]
    if extra:
        raise DataError(source, None, "id", f"ids of the data: {len(extra)} of its {len(weights)} ids are not in it "
                        f"(e.g. '{extra[0]}'); were these weights fitted on another file?")
    out = []
    for ex in examples:
        if ex.id in weights:
            ex.weight = weights[ex.id]
        elif missing == "error":
            raise DataError(source, None, "id", f"a weight for every example; none for id '{ex.id}' (line {ex.line}); "
                            "set data.missing_weight to 'one' or 'drop' to allow this")
        elif missing == "drop":
            continue
        elif missing == "one":
            ex.weight = 1.0
        else:
            raise ValueError(missing)
        out.append(ex)
    return out
