"""The package's one logger: ``logging.getLogger("shiftalign")``, printed to standard output as
``[shiftalign] message``. In a run of several processes only the main one prints (``main_process_only``).

    from shiftalign.log import log
    log("weights: 96 source pairs")
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("shiftalign")


class _Stdout(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time (so redirections and test capture see it),
    above any progress bar (``tqdm.write``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # a logging handler must not raise
            self.handleError(record)


if not any(isinstance(h, _Stdout) for h in logger.handlers):
    _handler = _Stdout()
    _handler.setFormatter(logging.Formatter("[shiftalign] %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def log(message: str) -> None:
    logger.info(message)


def warn(message: str) -> None:
    logger.warning(f"WARNING: {message}")


def main_process_only(is_main: bool) -> None:
    """Other processes keep warnings and errors only."""
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
