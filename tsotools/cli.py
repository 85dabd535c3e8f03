"""The ``tsotools`` command line: parse options, call one function, report.

No arithmetic and no file access here: each command calls a ``run_*`` function of
:mod:`tsotools.steps` (or the simulator, or :mod:`tsotools.info`) and reports what it
returns. User errors print one line on stderr and exit 2; failures while processing valid
input exit 1; anything else is a bug, reported in one line (traceback with ``--debug``).
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import traceback

import click

from . import __version__
from .errors import NotBuiltError, TsoToolsError
from .progress import configure_logging

log = logging.getLogger("tsotools")

EXIT_CODES_HELP = "Exit status: 0 success, 1 processing failure, 2 bad input or usage."


# ============================================================================ framework
def _terminate(signum, frame):
    raise SystemExit(128 + signum)


class TsoGroup(click.Group):
    """Group that reports errors in one line and keeps commands in the order written."""

    def list_commands(self, ctx):
        return list(self.commands)

    def invoke(self, ctx):
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except TsoToolsError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: one line unless --debug
            if _debug(ctx):
                traceback.print_exc()
            text = str(exc).splitlines()[0] if str(exc) else ""
            _fail(ctx, f"internal error: {type(exc).__name__}: {text}; rerun with --debug", 1)


def _debug(ctx) -> bool:
    obj = ctx.find_root().obj or {}
    return bool(obj.get("debug"))


def _fail(ctx, message: str, code: int):
    if _debug(ctx) and code != 1:
        traceback.print_exc()
    click.echo(f"tsotools: error: {message}", err=True)
    ctx.exit(code)


def _set_verbosity(ctx, quiet: bool, verbose: int, debug: bool):
    obj = ctx.find_root().ensure_object(dict)
    obj["debug"] = obj.get("debug") or debug
    level = obj.get("verbosity", 0)
    if quiet:
        level = -1
    elif verbose or debug:
        level = max(verbose, 1 if debug else 0)
    obj["verbosity"] = level
    obj["quiet"] = level < 0
    configure_logging(level)


def common_options(func):
    """Add -q/--quiet, -v/--verbose and --debug to a command."""

    @click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (and requested data).")
    @click.option("-v", "--verbose", count=True, help="More log detail on stderr; repeat for debug.")
    @click.option("--debug", is_flag=True, help="Show a traceback on errors.")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx, *args, quiet, verbose, debug, **kwargs):
        _set_verbosity(ctx, quiet, verbose, debug)
        return ctx.invoke(func, *args, **kwargs)

    return wrapper


def output_options(func):
    """Add -o/--output (required) and --overwrite."""
    func = click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (never the input).")(func)
    func = click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output file (never the input)."
    )(func)
    return func


def json_option(func):
    """Add --json: print a one-object summary on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary on stdout.")(func)


def input_file(name="input"):
    return click.argument(name, type=click.Path(exists=True, dir_okay=False))


def report(summary: dict, as_json: bool):
    """Print a run summary: JSON on stdout when asked, else one log line."""
    if as_json:
        click.echo(json.dumps(summary, default=_jsonable))
    elif summary.get("message"):
        log.info("%s", summary["message"])


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def not_built(command: str, issue: int):
    raise NotBuiltError(f"'{command}' is not built yet (tracked in issue #{issue}); no output was written")


# ============================================================================== the app
@click.group(cls=TsoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="tsotools")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def main(ctx, debug):
    """Fix what the JWST pipeline leaves undone for NIRCam time series.

    Each command reads pipeline FITS products and writes products (or FITS/ECSV tables)
    that the pipeline and community tools read back, so commands chain.

    Example:

        tsotools simulate grism -o sim/ && tsotools info sim/grism_ramp.fits

    Exit status: 0 success, 1 processing failure, 2 bad input or usage.
    """
    ctx.ensure_object(dict)["debug"] = debug
    configure_logging(0)


# ---------------------------------------------------------------------------- info
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of summaries on stdout.")
@common_options
def info(files, as_json):
    """Summarize pipeline products: kind, mode, subarray, segment, steps applied.

    Reads only headers and table extensions, so it is fast on files of any size.

    Example:

        tsotools info jw01366_nrcalong_ramp.fits --json | jq .amplifiers
    """
    from .info import format_summary, summarize
    from .io import open_product

    summaries = []
    for path in files:
        with open_product(path) as prod:
            summaries.append(summarize(prod))
    if as_json:
        click.echo(json.dumps(summaries if len(summaries) > 1 else summaries[0], default=_jsonable, indent=1))
    else:
        click.echo("\n\n".join(format_summary(s) for s in summaries))


# ------------------------------------------------------------------------ simulate
# (filled in by the simulator: tsotools/simulate)
@main.group(cls=TsoGroup)
def simulate():
    """Write realistic synthetic NIRCam TSO products with a truth file.

    Example:

        tsotools simulate grism -o sim/ --seed 1
    """


# ------------------------------------------------------------------------ oneoverf
@main.command()
@input_file()
@output_options
@json_option
@common_options
def oneoverf(input, output, overwrite, as_json):
    """Remove pre-amplifier offsets and 1/f noise per amplifier (ramps, rateints).

    Example:

        tsotools oneoverf jw_ramp.fits -o jw_1overf_ramp.fits
    """
    not_built("oneoverf", 3)


# -------------------------------------------------------------------------- rejump
@main.command()
@input_file()
@output_options
@json_option
@common_options
def rejump(input, output, overwrite, as_json):
    """Re-flag cosmic-ray jumps in a ramp with a chosen threshold.

    Example:

        tsotools rejump jw_1overf_ramp.fits -o jw_jump_ramp.fits --threshold 6
    """
    not_built("rejump", 4)


# ------------------------------------------------------------------------- rampfit
@main.command()
@input_file()
@output_options
@json_option
@common_options
def rampfit(input, output, overwrite, as_json):
    """Fit ramps between jumps into per-integration rates (rateints).

    Example:

        tsotools rampfit jw_jump_ramp.fits -o jw_rateints.fits
    """
    not_built("rampfit", 4)


# -------------------------------------------------------------------- widen-cutout
@main.command("widen-cutout")
@input_file()
@output_options
@json_option
@common_options
def widen_cutout(input, output, overwrite, as_json):
    """Cut a taller grism cutout (SlitModel) from full-subarray rateints.

    Example:

        tsotools widen-cutout jw_rateints.fits -o jw_cutout.fits --height 128
    """
    not_built("widen-cutout", 5)


# ------------------------------------------------------------------------- spectra
@main.command()
@input_file()
@output_options
@json_option
@common_options
def spectra(input, output, overwrite, as_json):
    """Extract per-integration 1D grism spectra (x1dints) along a traced aperture.

    Example:

        tsotools spectra jw_cutout.fits -o jw_x1dints.fits --method optimal
    """
    not_built("spectra", 5)


# ------------------------------------------------------------------------ centroid
@main.command()
@input_file()
@output_options
@json_option
@common_options
def centroid(input, output, overwrite, as_json):
    """Measure the star's position in every integration and check XREF_SCI/YREF_SCI.

    Example:

        tsotools centroid jw_rateints.fits -o centroids.ecsv
    """
    not_built("centroid", 6)


# ---------------------------------------------------------------------- photometry
@main.command()
@input_file()
@output_options
@json_option
@common_options
def photometry(input, output, overwrite, as_json):
    """Aperture photometry per integration that follows the star.

    Example:

        tsotools photometry jw_rateints.fits -o phot.ecsv --radius auto
    """
    not_built("photometry", 6)


# ----------------------------------------------------------- jitter-from-guidestar
@main.command("jitter-from-guidestar")
@click.argument("gsfiles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@output_options
@json_option
@common_options
def jitter_from_guidestar(gsfiles, output, overwrite, as_json):
    """Pointing jitter and antenna moves from FGS guide-star files, on the science clock.

    Example:

        tsotools jitter-from-guidestar jw*_gs-fg_*_cal.fits --science jw_rateints.fits -o jitter.fits
    """
    not_built("jitter-from-guidestar", 7)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
