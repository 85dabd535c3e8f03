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
    """Print a run summary: one JSON object on stdout (with the command) when asked, else a log line."""
    if as_json:
        ctx = click.get_current_context(silent=True)
        if ctx is not None and "command" not in summary:
            summary = {"command": ctx.command_path.replace(ctx.find_root().info_name or "tsotools", "tsotools", 1),
                       **summary}
        click.echo(json.dumps(summary, default=_jsonable))
    elif summary.get("message"):
        log.info("%s", summary["message"])


def plot_option(what: str):
    """Add --plot PNG: also draw ``what`` with the same figure as ``tsotools plot``."""
    return click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
                        help=f"Also write a PNG of {what}.")


def _check_plot(plot, overwrite, *inputs):
    """Refuse --plot PNG before any work (exists without --overwrite, not .png, an input)."""
    if plot is not None:
        from .plots.render import check_plot_output

        check_plot_output(plot, overwrite=overwrite, inputs=[i for i in inputs if i])


def _add_plot(summary: dict, plot, kind: str, inputs, overwrite: bool) -> dict:
    """Draw --plot PNG from a command's outputs with ``tsotools plot KIND``; note it in the summary."""
    if plot is not None:
        from .plots.render import run_plot

        run_plot(kind, inputs, plot, overwrite=overwrite)
        summary["plot"] = str(plot)
        if summary.get("message"):
            summary["message"] += f"; plot {plot}"
    return summary


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

    Reads only headers and table extensions, so it is fast on files of any size. With
    --json: one object, the file's summary, or {"files": [...]} for several files.

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
        obj = {"command": "tsotools info", **summaries[0]} if len(summaries) == 1 else \
            {"command": "tsotools info", "files": summaries}
        click.echo(json.dumps(obj, default=_jsonable, indent=1))
    else:
        click.echo("\n\n".join(format_summary(s) for s in summaries))


# ------------------------------------------------------------------------ simulate
@main.group(cls=TsoGroup)
def simulate():
    """Write realistic synthetic NIRCam TSO products with a truth file.

    Each subcommand writes pipeline products (ramp, rateints, and a calints cutout for
    the grism; fine-guide files for the guider) plus <prefix>_truth.fits, the exact signal
    and noise that went in (layout in docs/simulator.md).

    Example:

        tsotools simulate grism -o sim/ --seed 1
    """


def _parse_segment(ctx, param, value):
    if value is None:
        return None
    try:
        k, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected K/N (segment K of N), got {value!r}") from None
    return (k, n)


class _ProductList(click.ParamType):
    """A comma-separated subset of the science products a simulation can write."""

    name = "LIST"

    def __init__(self, choices):
        self.choices = tuple(choices)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        bad = [v for v in items if v not in self.choices]
        if bad:
            self.fail(f"{', '.join(bad)}: expected a comma-separated subset of "
                      f"{','.join(self.choices)}", param, ctx)
        return tuple(items)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete)]


def _sim_options(kind):
    """Options of ``tsotools simulate KIND``; defaults read from its params dataclass."""
    from .simulate import params as sp

    cls = {"grism": sp.GrismParams, "imaging": sp.ImagingParams, "guider": sp.GuiderParams}[kind]
    # the calints cutout exists for grism scenes (a guider run's science may be either)
    made = sp.SCIENCE_PRODUCTS if kind != "imaging" else sp.SCIENCE_PRODUCTS[:2]

    def d(name):
        return cls.__dataclass_fields__[name].default

    opts = [
        click.option(
            "-o",
            "--outdir",
            required=True,
            type=click.Path(file_okay=False),
            help="Output directory (created if missing).",
        ),
        click.option(
            "--prefix", default=kind, show_default=True, help="File-name prefix of every output."
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=d("seed"),
            show_default=True,
            help="Random seed; the same seed writes identical files.",
        ),
        click.option(
            "--nints",
            type=click.IntRange(min=1),
            default=d("nints"),
            show_default=True,
            help="Integrations in the exposure.",
        ),
        click.option(
            "--ngroups",
            type=click.IntRange(min=2),
            default=d("ngroups"),
            show_default=True,
            help="Groups per integration (RAPID: one frame per group).",
        ),
    ]
    if kind == "grism":
        opts += [
            click.option(
                "--subarray",
                type=click.Choice(list(sp.GRISM_SUBARRAYS)),
                default=d("subarray"),
                show_default=True,
                help="Grism subarray (2048 px wide, at the bottom edge).",
            ),
            click.option(
                "--filter",
                "filter_",
                type=click.Choice(list(sp.GRISM_FILTERS)),
                default=d("filter"),
                show_default=True,
                help="Long-wave filter used with GRISMR.",
            ),
            click.option(
                "--noutputs",
                type=click.Choice(["1", "4"]),
                default=str(d("noutputs")),
                show_default=True,
                help="Number of detector outputs (amplifiers).",
            ),
        ]
    elif kind == "imaging":
        opts += [
            click.option(
                "--subarray",
                type=click.Choice(list(sp.IMAGING_SUBARRAYS)),
                default=d("subarray"),
                show_default=True,
                help="Weak-lens subarray (square, in a detector corner).",
            ),
            click.option(
                "--filter",
                "filter_",
                type=click.Choice(list(sp.IMAGING_FILTERS)),
                default=d("filter"),
                show_default=True,
                help="Short-wave filter used with the WLP8 pupil.",
            ),
            click.option(
                "--neighbour-ratio",
                type=click.FloatRange(min=0),
                default=d("neighbour_ratio"),
                show_default=True,
                help="Flux of a partly blended neighbour over the target's; 0 none.",
            ),
        ]
    else:
        opts += [
            click.option(
                "--science",
                type=click.Choice(["imaging", "grism"]),
                default=d("science"),
                show_default=True,
                help="Science exposure the guider data accompany.",
            ),
            click.option(
                "--subarray",
                default=None,
                help="Science subarray [default: SUB160P for imaging, SUBGRISM64 for grism].",
            ),
            click.option(
                "--filter",
                "filter_",
                default=None,
                help="Science filter [default: F210M for imaging, F322W2 for grism].",
            ),
            click.option(
                "--no-tables",
                "tables",
                is_flag=True,
                flag_value=False,
                default=True,
                help="Write guider files without the Pointing and FGS Centroid Packet tables.",
            ),
            click.option(
                "--frames-per-file",
                type=click.IntRange(min=16),
                default=d("frames_per_file"),
                show_default=True,
                help="16 Hz fine-guide frames per file (3072 = 192 s).",
            ),
            click.option(
                "--gs-mag",
                type=float,
                default=d("gs_mag"),
                show_default=True,
                help="Guide-star magnitude (GS_MAG); sets its count rate.",
            ),
        ]
    opts += [
        click.option(
            "--oneoverf",
            "oneoverf_scale",
            type=click.FloatRange(min=0),
            default=d("oneoverf_scale"),
            show_default=True,
            help="Scale of the injected 1/f + pre-amp offset + odd/even noise; 0 off.",
        ),
        click.option(
            "--shared-fraction",
            type=click.FloatRange(0, 1),
            default=d("shared_fraction"),
            show_default=True,
            help="Part of the 1/f variance common to all amplifiers.",
        ),
        click.option(
            "--no-oddeven",
            "oddeven",
            is_flag=True,
            flag_value=False,
            default=True,
            help="Leave out the odd/even column offsets.",
        ),
        click.option(
            "--no-cosmic-rays",
            "cosmic_rays",
            is_flag=True,
            flag_value=False,
            default=True,
            help="Leave out cosmic rays.",
        ),
        click.option(
            "--cr-rate",
            type=click.FloatRange(min=0),
            default=d("cr_rate"),
            show_default=True,
            help="Cosmic-ray hits per pixel per second.",
        ),
        click.option(
            "--jitter",
            "jitter_mas",
            type=click.FloatRange(min=0),
            default=d("jitter_mas"),
            show_default=True,
            help="Pointing jitter: mas rms per axis of each integration's mean.",
        ),
        click.option(
            "--drift",
            "drift_px",
            type=float,
            default=d("drift_px"),
            show_default=True,
            help="Linear pointing drift over the exposure, science pixels, along x and y.",
        ),
        click.option(
            "--drift-x",
            "drift_x_px",
            type=float,
            default=None,
            help="Drift along x over the exposure, pixels [default: --drift].",
        ),
        click.option(
            "--drift-y",
            "drift_y_px",
            type=float,
            default=None,
            help="Drift along y over the exposure, pixels [default: --drift].",
        ),
        click.option(
            "--no-hga",
            "hga",
            is_flag=True,
            flag_value=False,
            default=True,
            help="No high-gain-antenna move mid-exposure.",
        ),
        click.option(
            "--transit-depth",
            type=click.FloatRange(0, 0.5, max_open=True),
            default=d("transit_depth"),
            show_default=True,
            help="White-light transit depth (relative flux drop); 0 for none.",
        ),
        click.option(
            "--xref-offset",
            type=(float, float),
            default=d("xref_offset"),
            show_default=True,
            help="True star position minus XREF_SCI/YREF_SCI, pixels (X Y).",
        ),
        click.option(
            "--sky-rate",
            type=click.FloatRange(min=0),
            default=d("sky_rate"),
            show_default=d("sky_rate") is not None,
            help="Sky, DN/s per pixel"
            + (" [default: per science kind]." if kind == "guider" else "."),
        ),
        click.option(
            "--peak-dn",
            type=click.FloatRange(min=0, min_open=True),
            default=d("peak_dn"),
            show_default=True,
            help="Signal of the brightest star pixel in the last group, DN.",
        ),
        click.option(
            "--segment",
            callback=_parse_segment,
            metavar="K/N",
            default=None,
            help="Write segment K of N of the exposure (INTSTART..INTEND), e.g. 2/3.",
        ),
        click.option(
            "--no-truth",
            "truth",
            is_flag=True,
            flag_value=False,
            default=True,
            help="Do not write <prefix>_truth.fits (for large benchmark files).",
        ),
        click.option(
            "--products",
            type=_ProductList(made),
            default=None,
            help=f"Science products to write, comma-separated from {','.join(made)} (default: all "
                 "the scene makes; the others are not written).",
        ),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
        json_option,
        common_options,
    ]

    def decorate(func):
        for opt in reversed(opts):
            func = opt(func)
        return func

    return decorate


def _simulate(
    kind, outdir, prefix, truth, products, overwrite, as_json, filter_=None, noutputs=None,
    **fields,
):
    """Build the params, run the simulator with a progress bar, report the outputs."""
    from . import simulate as sim
    from .progress import progress_bar

    if filter_ is not None:
        fields["filter"] = filter_
    if noutputs is not None:
        fields["noutputs"] = int(noutputs)
    cls, run = {
        "grism": (sim.GrismParams, sim.simulate_grism),
        "imaging": (sim.ImagingParams, sim.simulate_imaging),
        "guider": (sim.GuiderParams, sim.simulate_guider),
    }[kind]
    try:
        params = cls(**fields)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    quiet = bool((click.get_current_context().find_root().obj or {}).get("quiet"))
    with progress_bar(f"simulate {kind}", total=params.nints, enabled=not quiet) as advance:
        try:
            paths = run(
                outdir, params, prefix=prefix, truth=truth, overwrite=overwrite, progress=advance,
                products=products,
            )
        except ValueError as exc:  # checked before anything is written (e.g. calints of imaging)
            raise TsoToolsError(f"invalid option: {exc}") from None
    outputs = {k: str(v) for k, v in paths.items()}
    summary = {"kind": kind, "seed": params.seed, "nints": params.nints, "ngroups": params.ngroups,
               "subarray": getattr(params, "subarray", None), "outputs": outputs,
               "message": f"wrote {len(outputs)} files: {', '.join(outputs.values())}"}
    report(summary, as_json)


@simulate.command("grism")
@_sim_options("grism")
def simulate_grism(**options):
    """Simulate a NIRCam grism time series (NRC_TSGRISM, NRCALONG, GRISMR).

    Writes <prefix>_ramp.fits (RampModel, post-superbias), <prefix>_rateints.fits
    (CubeModel), <prefix>_calints.fits (the pipeline's 64-row SlitModel cutout) and
    <prefix>_truth.fits.

    Example:

        tsotools simulate grism -o sim/ --seed 1 --subarray SUBGRISM256 --no-truth
    """
    _simulate("grism", **options)


@simulate.command("imaging")
@_sim_options("imaging")
def simulate_imaging(**options):
    """Simulate a weak-lens imaging time series (NRC_TSIMAGE, NRCA3, WLP8 donut).

    Writes <prefix>_ramp.fits, <prefix>_rateints.fits and <prefix>_truth.fits (with the
    neighbour's contamination fraction, CONTAM).

    Example:

        tsotools simulate imaging -o sim/ --seed 2 --subarray SUB64P
    """
    _simulate("imaging", **options)


@simulate.command("guider")
@_sim_options("guider")
def simulate_guider(**options):
    """Simulate fine-guide files (16 Hz) with the science exposure they cover.

    Writes <prefix>_gs-fg_<n>_cal.fits (GuiderCalModel; several files when the span is
    longer than --frames-per-file), the science ramp/rateints, and one truth file with
    the guider frame series, the per-integration pointing and the FGS-to-science transform.

    Example:

        tsotools simulate guider -o sim/ --seed 3 --prefix gs --nints 50
    """
    _simulate("guider", **options)


# ------------------------------------------------------------------------ oneoverf
def _oneoverf_options(func):
    """Options of ``oneoverf``; defaults from OneOverFParams and MaskParams."""
    from .algorithms.masks import MaskParams
    from .algorithms.oneoverf import METHODS, OneOverFParams

    d, m = OneOverFParams(), MaskParams()
    opts = [
        click.option("--method", type=click.Choice(METHODS), default=d.method, show_default=True,
                     help="timeseries: subtract a flux- and pointing-fitted temporal model so pixels on the star "
                          "carry the estimate too (rows crossed by the grism trace); background: source-masked "
                          "pixels only, rows without any take the other amplifiers' row model; refpix: reference "
                          "pixels only (the pipeline's refpix); auto: timeseries with at least "
                          f"{d.min_ints_timeseries} integrations, else background."),
        click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     metavar="FITS", help="Source mask to use (2-D FITS image, nonzero = source)  [default: made "
                                          "from the median image]."),
        click.option("--save-mask", type=click.Path(dir_okay=False), default=None, metavar="FITS",
                     help="Write the source mask used (uint8 FITS image, 1 = source)."),
        click.option("--mask-threshold", type=click.FloatRange(min=0, min_open=True), default=m.threshold_sigma,
                     show_default=True, metavar="SIGMA",
                     help="Automatic mask: pixels this many robust standard deviations above the median image's "
                          "background are the source."),
        click.option("--mask-dilation", type=click.FloatRange(min=0), default=m.dilation_px, show_default=True,
                     metavar="PX", help="Automatic mask: grow it by a disk of this radius, pixels."),
        click.option("--no-oddeven", "oddeven", is_flag=True, flag_value=False, default=d.oddeven,
                     help="Leave odd/even column offsets in."),
        click.option("--no-shrink", "shrink", is_flag=True, flag_value=False, default=d.shrink,
                     help="Subtract every row's measured 1/f in full instead of estimating noisy rows (bright "
                          "trace core) from their own pixels and the rows read just before and after."),
        click.option("--min-row-pixels", type=click.IntRange(min=1), default=d.min_row_pixels, show_default=True,
                     metavar="N", help="Usable pixels an amplifier row needs for its own estimate; fewer use the "
                                       "fall-backs (reference columns, other amplifiers, offset)."),
        click.option("--model-ints", type=click.IntRange(min=2), default=d.model_ints, show_default=True,
                     metavar="N", help="Integrations sampled for the median image (source mask, first scene "
                                       "model)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


@main.command()
@input_file()
@output_options
@_oneoverf_options
@plot_option("the first integration before and after, with its row profiles")
@json_option
@common_options
def oneoverf(input, output, overwrite, method, mask_path, save_mask, mask_threshold, mask_dilation, oddeven, shrink,
             min_row_pixels, model_ints, plot, as_json):
    """Remove pre-amplifier offsets and 1/f noise per amplifier (ramps, rateints).

    Per amplifier (512-px stripes with 4 outputs, the full width with 1) and per frame
    (every group of a post-superbias ramp, every integration of rateints/calints or a
    grism cutout): the amplifier offset, odd/even column offsets and each row's 1/f
    (the fast-read direction). The star is never subtracted: the default time-series
    method fits each integration's flux and pointing with a temporal model, so rows the
    grism trace crosses on every amplifier are corrected too; the uniform sky is kept.
    Reference pixels are used where the subarray has them. Output: the same product with
    SCI corrected and S_1OVERF = COMPLETE, ready for jump/ramp_fit (ramp) or spec2/tso3.

    Example:

    \b
        tsotools oneoverf jw_ramp.fits -o jw_1overf_ramp.fits --save-mask mask.fits &&
        tsotools rejump jw_1overf_ramp.fits -o jw_jump_ramp.fits
    """
    from .algorithms.masks import MaskParams
    from .algorithms.oneoverf import OneOverFParams
    from .steps.oneoverf import run_oneoverf

    try:
        params = OneOverFParams(method=method, oddeven=oddeven, shrink=shrink, min_row_pixels=min_row_pixels,
                                model_ints=model_ints)
        mparams = MaskParams(threshold_sigma=mask_threshold, dilation_px=mask_dilation)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    _check_plot(plot, overwrite, input, output)
    summary = run_oneoverf(input, output, params=params, mask_params=mparams, mask_path=mask_path,
                           save_mask=save_mask, overwrite=overwrite, progress=not _quiet())
    report(_add_plot(summary, plot, "oneoverf", [input, output], overwrite), as_json)


# -------------------------------------------------------------------------- rejump
def _noise_options(func):
    """--gain and --readnoise of rejump and rampfit (a number or a CRDS reference file)."""
    func = click.option("--readnoise", metavar="DN|FILE", default=None,
                        help="Read noise in DN, CRDS READNOISE convention (correlated double sample: sqrt(2) "
                             "x one read's noise), or a CRDS READNOISE reference FITS (cut to the subarray)  "
                             "[default: NIRCam 14.1 DN, with a warning].")(func)
    func = click.option("--gain", metavar="E/DN|FILE", default=None,
                        help="Gain in e-/DN, or a CRDS GAIN reference FITS (cut to the subarray)  "
                             "[default: NIRCam 1.8 long-wave, 2.05 short-wave, with a warning].")(func)
    return func


def _rejump_options(func):
    """Options of ``rejump``; defaults from JumpParams."""
    from .algorithms.jumps import JUMP_METHODS, JumpParams

    d = JumpParams()
    func = click.option("--flag-neighbors/--no-flag-neighbors", default=d.flag_neighbors, show_default=True,
                        help=f"Also flag the 4 side neighbours of jumps of {d.min_neighbor_sigma:g}-"
                             f"{d.max_neighbor_sigma:g} sigma (temporal: only those above "
                             f"{d.neighbor_threshold:g} sigma themselves).")(func)
    func = click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                        help="Write the --sweep table here (.ecsv or .fits).")(func)
    func = click.option("--sweep", metavar="T1,T2,...", default=None,
                        help="Compare thresholds (sigma): fraction of pixel-groups and pixels flagged and the "
                             "noise of the per-integration white light (grism, ppm) or rate images (imaging, "
                             "DN/s), as a table on stderr; the lowest noise is marked best.")(func)
    func = click.option("--method", type=click.Choice(JUMP_METHODS), default=d.method, show_default=True,
                        help="two-point: the pipeline's algorithm (same flags as 'strun jump'); temporal: each "
                             "group difference against its flux-scaled median over integrations, immune to "
                             f"1/f residuals and transits; auto: temporal from {d.min_temporal_ints} "
                             "integrations on.")(func)
    func = click.option("--threshold", default=f"{d.threshold:g}", show_default=True, metavar="SIGMA|best",
                        help="Rejection threshold in sigma, or 'best' (with --sweep) for the lowest-noise "
                             "one.")(func)
    return func


@main.command()
@input_file()
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Ramp to write with the new flags (never the input); optional with --sweep.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT/--report if they exist (never the input).")
@_rejump_options
@_noise_options
@plot_option("the --sweep: light-curve noise and flagged pixels per threshold")
@json_option
@common_options
def rejump(input, output, overwrite, threshold, method, sweep, report_path, flag_neighbors, gain, readnoise,
           plot, as_json):
    """Re-flag cosmic-ray jumps in a ramp with a chosen threshold, or sweep thresholds.

    Clears the ramp's JUMP_DET bits in GROUPDQ (every other bit is kept), detects jumps
    again and writes the ramp with the new flags (S_REJUMP, method and threshold in
    HISTORY). The pipeline's jump step over-flags TSO subarrays whose 1/f noise was not
    removed (NC-TS03); clean the ramp with 'oneoverf' first, and use --sweep to pick
    the threshold that gives the lowest light-curve noise.

    Example:

    \b
        tsotools oneoverf jw_ramp.fits -o jw_1overf_ramp.fits &&
        tsotools rejump jw_1overf_ramp.fits --sweep 4,5,6,8,10,15 --report sweep.ecsv \\
            --threshold best -o jw_jump_ramp.fits &&
        tsotools rampfit jw_jump_ramp.fits -o jw_rateints.fits
    """
    from .algorithms.jumps import JumpParams
    from .steps.rejump import run_rejump

    use_best = str(threshold).strip().lower() == "best"
    value = JumpParams().threshold if use_best else _parse_numbers(threshold, "--threshold", 1)[0]
    levels = _parse_numbers(sweep, "--sweep") if sweep is not None else None
    try:
        params = JumpParams(method=method, threshold=value, flag_neighbors=flag_neighbors)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    if plot is not None and levels is None:
        raise TsoToolsError("--plot draws the threshold sweep: give --sweep T1,T2,...")
    _check_plot(plot, overwrite, input, output, report_path)
    summary = run_rejump(input, output, params=params, sweep=levels, use_best=use_best, report_path=report_path,
                         gain=gain, readnoise=readnoise, overwrite=overwrite, progress=not _quiet())
    if plot is not None and report_path is None:  # no table file: plot the sweep rows themselves
        from .plots.render import save_sweep_plot

        save_sweep_plot(summary["sweep"], plot, overwrite=overwrite, title=click.format_filename(input))
        summary["plot"] = str(plot)
        summary["message"] = summary.get("message", "") + f"; plot {plot}"
    elif plot is not None:
        _add_plot(summary, plot, "sweep", [report_path], overwrite)
    report(summary, as_json)


# ------------------------------------------------------------------------- rampfit
@main.command()
@input_file()
@output_options
@_noise_options
@json_option
@common_options
def rampfit(input, output, overwrite, gain, readnoise, as_json):
    """Fit ramps between jumps into per-integration rates (rateints).

    Each integration's ramp is fitted by least squares in the segments between jump
    flags, saturated and DO_NOT_USE groups left out, segments combined by inverse
    variance; the output is a CubeModel (SCI in DN/s, ERR, DQ, VAR_POISSON, VAR_RNOISE,
    INT_TIMES, the ramp's metadata) with the exact variances of that fit, so the toolkit
    runs ramp -> spectra without CRDS.

    Example:

    \b
        tsotools rejump jw_1overf_ramp.fits -o jw_jump_ramp.fits &&
        tsotools rampfit jw_jump_ramp.fits -o jw_rateints.fits --gain 1.8
    """
    from .steps.rampfit import run_rampfit

    summary = run_rampfit(input, output, gain=gain, readnoise=readnoise, overwrite=overwrite,
                          progress=not _quiet())
    report(summary, as_json)


# -------------------------------------------------------------------- widen-cutout
def _parse_center(ctx, param, value):
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a row number, got {value!r}") from None


@main.command("widen-cutout")
@input_file()
@output_options
@click.option("--height", type=click.IntRange(min=1), default=None, metavar="ROWS",
              help="Cutout height, pixels  [default: the whole subarray: 64, 128 or 256; 256 for FULL].")
@click.option("--center", callback=_parse_center, default="auto", show_default=True, metavar="auto|ROW",
              help="Centre on the trace measured in the data (auto) or on this 0-based row; a cutout that runs "
                   "past the subarray edge is moved inside with a warning.")
@click.option("--wavelengths-from", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="Reuse the wavelengths (um) of a pipeline cutout (WAVELENGTH) or x1dints  [default: the "
                   "input's WAVELENGTH, else the in-flight F322W2/F444W polynomial, else NaN].")
@plot_option("the input's first integration and the cutout at its subarray rows")
@json_option
@common_options
def widen_cutout(input, output, overwrite, height, center, wavelengths_from, plot, as_json):
    """Cut a taller grism cutout (SlitModel) from full-subarray rateints.

    The pipeline's extract_2d keeps 64 rows from row 0 whatever the subarray (JDox NC-TS02),
    leaving few background pixels. This keeps the whole subarray (or --height rows) centred
    on the measured trace, with SCI/ERR/DQ/VAR_* copied row for row, a 2D WAVELENGTH, the
    INT_TIMES table and SLTSTRT/SLTSIZE, SRCYPOS and YREF_SCI in the cutout's frame, so
    'spectra' or the pipeline's extract_1d read it.

    Example:

    \b
        tsotools widen-cutout jw_rateints.fits -o jw_cutout.fits --height 128 &&
        tsotools spectra jw_cutout.fits -o jw_x1dints.fits
    """
    from .algorithms.cutouts import CutoutParams
    from .steps.widen_cutout import run_widen_cutout

    try:
        params = CutoutParams(height=height, center=center)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    _check_plot(plot, overwrite, input, output)
    summary = run_widen_cutout(input, output, params=params, wavelengths_from=wavelengths_from,
                               overwrite=overwrite, progress=not _quiet())
    report(_add_plot(summary, plot, "frame", [input, output], overwrite), as_json)


# ------------------------------------------------------------------------- spectra
def _spectra_options(func):
    """Options of ``spectra``; defaults from ExtractionParams and the step's constants."""
    from .algorithms.extraction import BACKGROUND_METHODS, EXTRACTION_METHODS, ExtractionParams
    from .steps.spectra import LAYOUTS, NOISE_MAX_WIDTH

    d = ExtractionParams()
    opts = [
        click.option("--method", type=click.Choice(EXTRACTION_METHODS), default=d.method, show_default=True,
                     help="optimal: Horne (1986) weights from the median image's profile, outliers rejected; box: "
                          "fractional-pixel edges following the trace."),
        click.option("--halfwidth", "halfwidth_px", type=click.FloatRange(min=0, min_open=True),
                     default=d.halfwidth_px, show_default=True, metavar="PX",
                     help="Box half-height around the trace centre, pixels."),
        click.option("--optimal-halfwidth", "optimal_halfwidth_px", type=click.FloatRange(min=0, min_open=True),
                     default=d.optimal_halfwidth_px, show_default=True, metavar="PX",
                     help="Rows within this distance of the trace enter the optimal extraction, pixels."),
        click.option("--background", type=click.Choice(BACKGROUND_METHODS), default=d.background, show_default=True,
                     help="Per-column background: sigma-clipped median or clipped polynomial in row (DN/s per "
                          "pixel), or none."),
        click.option("--bkg-inner", "bkg_inner_px", type=click.FloatRange(min=0), default=d.bkg_inner_px,
                     show_default=True, metavar="PX", help="Background rows start this far from the trace, pixels."),
        click.option("--bkg-outer", "bkg_outer_px", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="PX", help="Background rows end this far from the trace, pixels  [default: the edge]."),
        click.option("--bkg-order", type=click.IntRange(0, 5), default=d.bkg_order, show_default=True,
                     help="Polynomial order in row for --background poly."),
        click.option("--trace-order", type=click.IntRange(0, 7), default=d.trace_order, show_default=True,
                     help="Order of the trace polynomial in column."),
        click.option("--layout", type=click.Choice(LAYOUTS), default="tso", show_default=True,
                     help="tso: jwst >= 1.19 x1dints (one row per integration); per-integration: jwst <= 1.18 "
                          "(one EXTRACT1D per integration; read by chromatic-lightcurves 0.5)."),
        click.option("--white-light", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Write the white-light curve (MJD_UTC, BJD_TDB, whitelight_flux, whitelight_flux_err; "
                          "flux in the input's unit, e.g. DN/s) as ECSV or FITS by extension."),
        click.option("--lightcurves", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Write spectroscopic light curves (one row per integration and bin) as ECSV or FITS."),
        click.option("--bins", "nbins", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Number of equal-width wavelength bins for --lightcurves."),
        click.option("--bin-width", "bin_width_um", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="UM", help="Wavelength bin width for --lightcurves, micron."),
        click.option("--wave-range", default=None, metavar="LO,HI",
                     help="Wavelengths (micron) used by the white light and the bins  [default: every column "
                          "with signal-to-noise >= 3 per integration]."),
        click.option("--noise-report", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Write the scatter of binned light curves against bin width (1..N columns) next to "
                          "the 1/sqrt(N) expectation, in ppm, as ECSV or FITS."),
        click.option("--noise-max-width", type=click.IntRange(min=1), default=NOISE_MAX_WIDTH, show_default=True,
                     metavar="N", help="Largest bin width of --noise-report, columns."),
        plot_option("the spectra as a time x wavelength image with the white light"),
        click.option("--trace-table", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Write each integration's trace shift (pixels, + towards higher rows) and the trace "
                          "polynomial as ECSV or FITS."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


@main.command()
@input_file()
@output_options
@_spectra_options
@json_option
@common_options
def spectra(input, output, overwrite, method, halfwidth_px, optimal_halfwidth_px, background, bkg_inner_px,
            bkg_outer_px, bkg_order, trace_order, layout, white_light, lightcurves, nbins, bin_width_um, wave_range,
            noise_report, noise_max_width, plot, trace_table, as_json):
    """Extract per-integration 1D grism spectra (x1dints) along a traced aperture.

    Reads rateints, calints or a cutout of any height. The trace is fitted on the median
    image; each integration gets a per-column background from rows away from the trace,
    its own trace shift, and a box or optimal (Horne 1986) extraction with errors from
    VAR_POISSON/VAR_RNOISE (or ERR). Writes the jwst >= 1.19 x1dints layout, or the
    per-integration one; optionally the white light, binned light curves and a noise report
    showing whether binning beats the noise down as 1/sqrt(N) (1/f noise does not).

    Example:

    \b
        tsotools widen-cutout jw_rateints.fits -o jw_cutout.fits &&
        tsotools spectra jw_cutout.fits -o jw_x1dints.fits --white-light jw_whtlt.ecsv \\
            --lightcurves jw_lc.ecsv --bin-width 0.05 --noise-report jw_noise.ecsv --plot jw_spectra.png
    """
    from .algorithms.extraction import ExtractionParams
    from .steps.spectra import run_spectra

    if nbins is not None and bin_width_um is not None:
        raise TsoToolsError("give --bins or --bin-width, not both")
    rng = _parse_numbers(wave_range, "--wave-range", 2) if wave_range is not None else None
    if rng is not None and not rng[0] < rng[1]:
        raise TsoToolsError(f"invalid value for --wave-range: {wave_range!r} (LO must be below HI)")
    try:
        params = ExtractionParams(method=method, halfwidth_px=halfwidth_px, optimal_halfwidth_px=optimal_halfwidth_px,
                                  background=background, bkg_inner_px=bkg_inner_px, bkg_outer_px=bkg_outer_px,
                                  bkg_order=bkg_order, trace_order=trace_order)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    _check_plot(plot, overwrite, input, output)
    summary = run_spectra(input, output, params=params, layout=layout, white_light=white_light, lightcurves=lightcurves,
                          nbins=nbins, bin_width_um=bin_width_um, wave_range=rng, noise_report=noise_report,
                          noise_max_width=noise_max_width, plot=False, trace_table=trace_table, overwrite=overwrite,
                          progress=not _quiet())
    report(_add_plot(summary, plot, "spectra", [output], overwrite), as_json)


# ------------------------------------------------------------------------ centroid
def _parse_numbers(text, option, count=None):
    """'1.5,2' -> (1.5, 2.0); a one-line TsoToolsError naming the option otherwise."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count):
        what = f"{count} comma-separated numbers" if count else "comma-separated numbers"
        raise TsoToolsError(f"invalid value for {option}: expected {what}, got {text!r}")
    return values


def _quiet() -> bool:
    return bool((click.get_current_context().find_root().obj or {}).get("quiet"))


def _centroid_options(func):
    """Options of ``centroid`` (and the centroid part of ``photometry``); defaults from the dataclass."""
    from .algorithms.centroids import CENTROID_METHODS, CentroidParams

    d = CentroidParams()
    func = click.option("--tolerance", type=float, default=d.tolerance_px, show_default=True, metavar="PX",
                        help="Warn when the median position is further than this from XREF_SCI/YREF_SCI, "
                             "pixels.")(func)
    func = click.option("--guess", metavar="X,Y", default=None,
                        help="Starting position, 0-based pixels  [default: XREF_SCI/YREF_SCI].")(func)
    func = click.option("--box", type=int, default=d.box, metavar="N",
                        help="Side of the square box measured around the star, pixels  [default: sized from "
                             "the median frame].")(func)
    func = click.option("--method", type=click.Choice(CENTROID_METHODS), default=d.method, show_default=True,
                        help="xcorr: sub-pixel cross-correlation with the median frame (weak-lens donut); "
                             "gauss2d/com: compact PSFs; auto: xcorr for weak lenses, else gauss2d. Grism "
                             "data always use cross-correlation.")(func)
    return func


def _centroid_params(method, box, tolerance):
    from .algorithms.centroids import CentroidParams

    try:
        return CentroidParams(method=method, box=box, tolerance_px=tolerance)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None


@main.command()
@input_file()
@output_options
@_centroid_options
@plot_option("the position per integration against XREF_SCI/YREF_SCI")
@json_option
@common_options
def centroid(input, output, overwrite, method, box, guess, tolerance, plot, as_json):
    """Measure the star's position in every integration and check XREF_SCI/YREF_SCI.

    Imaging: x, y (0-based pixels) with errors, widths and peak, by cross-correlation
    with the median frame (weak-lens donut) or a Gaussian fit (compact PSF). Grism: the
    trace centre at column XREF (Y) and the spectrum's shift along dispersion (X).
    Integrations in a sudden position step (antenna move) get FLAG bit 2; the median
    offset from XREF_SCI/YREF_SCI is logged, written in the table header, and warned
    about beyond --tolerance. Writes ECSV or FITS by the output's extension.

    Example:

    \b
        tsotools centroid jw_rateints.fits -o centroids.ecsv &&
        tsotools photometry jw_rateints.fits --centroids centroids.ecsv -o phot.ecsv
    """
    from .steps.centroid import run_centroid

    params = _centroid_params(method, box, tolerance)
    xy = _parse_numbers(guess, "--guess", 2) if guess is not None else None
    _check_plot(plot, overwrite, input, output)
    summary = run_centroid(input, output, params=params, guess=xy, overwrite=overwrite, progress=not _quiet())
    report(_add_plot(summary, plot, "centroids", [output], overwrite), as_json)


# ---------------------------------------------------------------------- photometry
def _photometry_options(func):
    """Options of ``photometry``; defaults from PhotometryParams."""
    from .algorithms.photometry import BACKGROUND_METHODS, POSITION_MODES, PhotometryParams

    d = PhotometryParams()
    func = click.option("--dilution", type=float, default=d.dilution, show_default=True, metavar="F",
                        help="Fraction of the out-of-transit aperture flux from a neighbour (0-1); removed "
                             "from the 'flux' column so depths are undiluted.")(func)
    func = click.option("--background", type=click.Choice(BACKGROUND_METHODS), default=d.background,
                        show_default=True,
                        help="Sky per pixel from the annulus: sigma-clipped median or mean, or a fitted "
                             "plane (DN/s per pixel).")(func)
    func = click.option("--centroids", "centroids_path", type=click.Path(exists=True, dir_okay=False),
                        default=None, metavar="TABLE",
                        help="Take positions from a 'tsotools centroid' table instead of measuring "
                             "them.")(func)
    func = click.option("--position", type=click.Choice(POSITION_MODES), default=d.position, show_default=True,
                        help="moving: follow each integration's centroid; fixed: their median; xref: "
                             "XREF_SCI/YREF_SCI (the pipeline's old behaviour).")(func)
    func = click.option("--annulus", metavar="RIN,ROUT", default=None,
                        help="Sky annulus radii, pixels  [default: 5 px outside the largest aperture, "
                             "max(10 px, 30% of it) wide].")(func)
    func = click.option("--radius", metavar="R[,R...]|auto", default="auto", show_default=True,
                        help="Aperture radii in pixels (a column set each; the first is the main one), "
                             "or auto: try radii around the median frame's 97% flux radius and keep "
                             "the lowest point-to-point scatter.")(func)
    return func


@main.command()
@input_file()
@output_options
@_photometry_options
@_centroid_options
@plot_option("the light curve (flux) with binned points")
@json_option
@common_options
def photometry(input, output, overwrite, radius, annulus, position, centroids_path, background, dilution,
               method, box, guess, tolerance, plot, as_json):
    """Aperture photometry per integration that follows the star.

    photutils exact-overlap circular apertures, several radii in one pass, a sigma-clipped
    annulus sky whose error enters the totals, positions that follow the star (or are
    fixed, or at XREF_SCI/YREF_SCI for comparison), and an optional neighbour-dilution
    correction. The table has the pipeline's _phot.ecsv columns (MJD, BJD_TDB,
    aperture_sum, net_aperture_sum, centroid_x...) for the main radius, a column set per
    radius (suffix _r<R>), the corrected light curve 'flux', and a FLAG column.

    Example:

    \b
        tsotools photometry jw_rateints.fits -o phot.ecsv --radius auto --dilution 0.016
    """
    from .algorithms.photometry import PhotometryParams
    from .steps.photometry import run_photometry

    radii = None if str(radius).strip().lower() == "auto" else _parse_numbers(radius, "--radius")
    ann = _parse_numbers(annulus, "--annulus", 2) if annulus is not None else None
    try:
        params = PhotometryParams(radii=radii, annulus=ann, position=position, background=background,
                                  dilution=dilution)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    cparams = _centroid_params(method, box, tolerance)
    xy = _parse_numbers(guess, "--guess", 2) if guess is not None else None
    _check_plot(plot, overwrite, input, output)
    summary = run_photometry(input, output, params=params, centroid_params=cparams, centroids_path=centroids_path,
                             guess=xy, overwrite=overwrite, progress=not _quiet())
    report(_add_plot(summary, plot, "lightcurve", [output], overwrite), as_json)


# ----------------------------------------------------------- jitter-from-guidestar
def _jitter_options(func):
    """Options of ``jitter-from-guidestar``; defaults from JitterParams."""
    from .algorithms.guidestar import JITTER_METHODS, JitterParams

    d = JitterParams()
    func = click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
                        help="Also write a PNG of the offsets with antenna moves shaded and the "
                             "science integrations marked.")(func)
    func = click.option("--hga-margin", "hga_margin_s", type=click.FloatRange(min=0), default=d.hga_margin_s,
                        show_default=True, metavar="SECONDS",
                        help="Set HGA_FLAG on integrations within this many seconds of an antenna move.")(func)
    func = click.option("--method", type=click.Choice(JITTER_METHODS), default=d.method, show_default=True,
                        help="table: the FGS Centroid Packet positions; fit: Gaussian fits to every 8x8 "
                             "frame (batched); auto: the table when every file has one, with the fits "
                             "compared against it, else the fits.")(func)
    func = click.option("--science", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
                        help="Science rateints/calints/ramp whose integrations (INT_TIMES) the offsets "
                             "are averaged over and whose detector pixels they are given in.")(func)
    return func


@main.command("jitter-from-guidestar")
@click.argument("gsfiles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@output_options
@_jitter_options
@json_option
@common_options
def jitter_from_guidestar(gsfiles, output, overwrite, science, method, hga_margin_s, plot, as_json):
    """Measure pointing jitter and antenna moves from FGS guide-star files, on the science clock.

    Reads fine-guide files (_gs-fg_..._cal, or _uncal made into count rates as the guider
    pipeline does), joins them in time, and gives the guide star's offset (mas, FGS ideal
    frame) in every 16 Hz frame, from the FGS Centroid Packet table or from Gaussian fits
    to the 8x8 frames. Antenna moves come from the Pointing table's HGA_motion, or are
    found as a step and its settling in the positions. With --science the JITTER table
    has one row per science integration (INT_NUM, MJD, BJD_TDB, DX_MAS, DY_MAS, DX_PIX,
    DY_PIX in that detector's pixels, JITTER_RMS_MAS, NFRAMES, HGA_FLAG), ready for
    decorrelation; without it the per-frame series (MJD, X_MAS, Y_MAS, FLUX). A .fits
    output also has an HGA_MOVES table (START_MJD, STOP_MJD, SOURCE); an .ecsv output
    lists the moves in its header.

    Example:

    \b
        tsotools jitter-from-guidestar jw*_gs-fg_*_cal.fits --science jw_rateints.fits \\
            -o jitter.fits --plot jitter.png &&
        tsotools photometry jw_rateints.fits -o phot.ecsv
    """
    from .algorithms.guidestar import JitterParams
    from .steps.jitter import run_jitter

    try:
        params = JitterParams(method=method, hga_margin_s=hga_margin_s)
    except ValueError as exc:
        raise TsoToolsError(f"invalid option: {exc}") from None
    summary = run_jitter(gsfiles, output, science=science, params=params, plot=plot, overwrite=overwrite,
                         progress=not _quiet())
    report(summary, as_json)


# ---------------------------------------------------------------------------- plot
#: tsotools.plots.render.KINDS (kept here so that --help does not import matplotlib)
PLOT_KINDS = ("lightcurve", "spectra", "centroids", "jitter", "oneoverf", "sweep", "noise", "frame")


@main.command()
@click.argument("kind", type=click.Choice(PLOT_KINDS), metavar="KIND")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="PNG",
              help="PNG to write (never an input).")
@click.option("--overwrite", is_flag=True, help="Replace PNG if it exists.")
@click.option("--bin", "bin_size", type=click.IntRange(min=1), default=None, metavar="N",
              help="lightcurve: integrations per binned point  [default: about 30 binned points].")
@click.option("--integration", type=click.IntRange(min=1), default=None, metavar="N",
              help="oneoverf, frame: 1-based integration to show  [default: 1].")
@click.option("--title", default=None, help="Figure title  [default: the file name].")
@json_option
@common_options
def plot(kind, files, output, overwrite, bin_size, integration, title, as_json):
    """Draw a PNG from tsotools or pipeline outputs (no display needed).

    KIND is one of: lightcurve (white light, photometry or x1dints; spectroscopic light
    curves offset per bin), spectra (x1dints as a time x wavelength image), centroids
    (centroid table), jitter (jitter-from-guidestar table), oneoverf BEFORE AFTER (one
    frame of a ramp or rateints before and after 1/f removal), sweep (rejump --report
    table), noise (spectra --noise-report table), frame FILE... (one integration of up to
    4 products at their subarray rows: a cutout against its subarray, a neighbour star).
    The --plot PNG option of each command draws the same figure during the run.

    Example:

    \b
        tsotools spectra jw_cutout.fits -o jw_x1dints.fits --white-light jw_whtlt.ecsv &&
        tsotools plot lightcurve jw_whtlt.ecsv -o lightcurve.png --bin 10 &&
        tsotools plot oneoverf jw_ramp.fits jw_1overf_ramp.fits -o oneoverf.png
    """
    from .plots.render import run_plot

    summary = run_plot(kind, files, output, overwrite=overwrite, bin_size=bin_size, integration=integration,
                       title=title)
    report(summary, as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
