"""Per-tool runners: open products, loop over integrations, call the algorithms, write.

Each module holds one ``run_<tool>(...)`` function; the command line calls it and reports
the summary dict it returns. The per-integration loop lives here, never in ``cli.py``
and never in the pure algorithm modules of :mod:`tsotools.algorithms`.
"""
