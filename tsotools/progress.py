"""Logging and progress reporting on stderr, set up once by the command line.

Library code logs with ``logging.getLogger(__name__)`` and reports progress through a
:class:`Progress`-like callable it is given; it never prints.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

__all__ = ["configure_logging", "progress_bar"]

_console = None


def _stderr_console():
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def configure_logging(verbosity: int) -> None:
    """Send log records to stderr: -1 quiet (errors only), 0 info, 1+ debug.

    On a terminal the records go through rich so that they print above a progress bar;
    otherwise they are plain ``tsotools: message`` lines, one per record.
    """
    level = {-1: logging.ERROR, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("tsotools")
    root.handlers.clear()
    root.setLevel(level)
    root.propagate = False
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=_stderr_console(), show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tsotools: %(levelname)s: %(message)s" if level <= logging.DEBUG else "tsotools: %(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)
    warn_logger = logging.getLogger("py.warnings")
    warn_logger.handlers = [handler]
    warn_logger.propagate = False
    warn_logger.setLevel(logging.ERROR if verbosity < 0 else logging.WARNING)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """Yield an ``advance()`` callable that moves a progress bar on stderr.

    The bar shows only when stderr is a terminal and ``enabled``; otherwise ``advance``
    does nothing (the per-tool runners log a summary line instead).
    """
    if not (enabled and sys.stderr.isatty()):
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)
