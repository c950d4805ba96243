"""Errors that stop a run with a message a user can act on (file, line, field, expectation)."""

from __future__ import annotations


class ShiftalignError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class ConfigError(ShiftalignError):
    """A configuration key or value is wrong."""


class DataError(ShiftalignError):
    """A data row is wrong. The message names the source, the line (1-based), the field and what was expected."""

    def __init__(self, source: str, line: int | None, field: str | None, expected: str, unit: str = "line"):
        self.source, self.line, self.field, self.expected = source, line, field, expected
        where = source if line is None else f"{source}, {unit} {line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{expected}")
