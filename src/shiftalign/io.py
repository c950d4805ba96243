"""Reading and writing the project's files.

Writes are atomic: write to a temporary file beside the target, fsync, then rename, so a reader (or a
resumed run) sees either the old file or the complete new one, never half of one. Reads decode UTF-8
(a byte-order mark dropped, CRLF / CR made LF) and name the file and line of anything malformed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import DataError


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success it replaces `path` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_text(path: str | os.PathLike) -> str:
    """The file's text: UTF-8, a leading byte-order mark dropped, CRLF / CR line ends made LF."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise DataError(str(path), None, None, "a file (got a directory)") from None
    except OSError as e:
        raise DataError(str(path), None, None, f"a readable file ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(str(path), line, None, f"UTF-8 text (byte 0x{raw[e.start]:02x} at column {col} is not valid "
                        "UTF-8; re-save the file as UTF-8)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_jsonl_lines(path: str | os.PathLike):
    """(line number, parsed value) of every non-blank line."""
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), n, None, f"malformed JSON ({e.msg} at column {e.colno})") from None


def read_jsonl(path: str | os.PathLike) -> list:
    """Every row of a JSON-lines file."""
    return [row for _, row in read_jsonl_lines(path)]
