"""Exceptions a user can cause, and how the command line reports them.

Pure algorithm functions raise :class:`ValueError`; the I/O module and the per-tool runners
raise these. ``cli.py`` prints one line for each and exits with :attr:`TsoToolsError.exit_code`.
"""

__all__ = ["NotBuiltError", "OutputError", "ProcessingError", "ProductError", "TsoToolsError"]


class TsoToolsError(Exception):
    """Base class of every error tsotools reports to the user in one line."""

    #: Exit status of the command line for this error.
    exit_code = 2


class ProductError(TsoToolsError):
    """An input file is not a product this command can read (kind, keyword, shape)."""


class OutputError(TsoToolsError):
    """An output cannot be written as asked (exists without --overwrite, is the input)."""


class NotBuiltError(TsoToolsError):
    """The subcommand exists in the plan but is not implemented yet."""


class ProcessingError(TsoToolsError):
    """Valid input failed while being processed (I/O error, disk full)."""

    exit_code = 1
