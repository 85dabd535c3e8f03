"""``tsotools spectra``: per-integration 1D grism spectra (x1dints) along a traced aperture.

Two passes over the file, each one integration at a time:

1. the median image: up to :data:`TEMPLATE_MAX_INTS` integrations spread over the exposure,
   averaged in :data:`TEMPLATE_GROUPS` groups whose per-pixel median is taken (robust to
   the odd cosmic ray, and every sampled integration counts); from it the trace polynomial,
   the spatial profile and the variance model;
2. per integration: background per column, the trace shift, box or optimal extraction, and
   one x1dints row (or EXTRACT1D extension); light-curve sums and the noise-versus-bin-width
   accumulators are updated. Only per-integration scalars and per-bin sums are kept, so
   memory does not grow with the number of integrations.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import __version__
from .. import dqflags as dqf
from ..algorithms import extraction as ex
from ..algorithms import lightcurves as lc
from ..algorithms.wavelengths import GRISMR_FILTERS, grismr_wavelength
from ..errors import OutputError, ProductError
from ..io import (
    TableSpec,
    asdf_extension,
    new_product,
    open_product,
    read_rows,
    save_figure,
    write_rows,
    write_table,
)
from ..progress import progress_bar

__all__ = ["LAYOUTS", "NOISE_MAX_WIDTH", "TEMPLATE_GROUPS", "TEMPLATE_MAX_INTS", "run_spectra"]

log = logging.getLogger(__name__)

#: x1dints layouts: "tso" (jwst >= 1.19 TSOMultiSpecModel, one row per integration) and
#: "per-integration" (the jwst <= 1.18 structure: one EXTRACT1D extension per integration).
LAYOUTS = ("tso", "per-integration")
#: Most integrations read to build the median image.
TEMPLATE_MAX_INTS = 200
#: Groups averaged before the per-pixel median of the median image.
TEMPLATE_GROUPS = 9
#: Default largest bin width of the noise report, columns.
NOISE_MAX_WIDTH = 128
#: Per-integration signal-to-noise a column needs to count in the white light, bins and noise report.
MIN_COLUMN_SNR = 3.0
#: Extra rows read around the aperture for trace shifts, pixels.
SHIFT_MARGIN_PX = 3
#: DQ bits that make a pixel unusable for extraction.
BAD_BITS = dqf.DO_NOT_USE | dqf.REFERENCE_PIXEL | dqf.NON_SCIENCE

_VECTOR_COLUMNS = (
    ("WAVELENGTH", "f8", "um"), ("FLUX", "f8", None), ("FLUX_ERROR", "f8", None),
    ("FLUX_VAR_POISSON", "f8", "sq"), ("FLUX_VAR_RNOISE", "f8", "sq"), ("FLUX_VAR_FLAT", "f8", "sq"),
    ("SURF_BRIGHT", "f8", "sb"), ("SB_ERROR", "f8", "sb"), ("SB_VAR_POISSON", "f8", "sbsq"),
    ("SB_VAR_RNOISE", "f8", "sbsq"), ("SB_VAR_FLAT", "f8", "sbsq"), ("DQ", "u4", ""),
    ("BACKGROUND", "f8", None), ("BKGD_ERROR", "f8", None), ("BKGD_VAR_POISSON", "f8", "sq"),
    ("BKGD_VAR_RNOISE", "f8", "sq"), ("BKGD_VAR_FLAT", "f8", "sq"), ("NPIXELS", "f8", ""),
)
_TIME_COLUMNS = ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END")


# ============================================================================ inputs
def _times(prod):
    """Per-integration INT_NUM and MJD UTC / TDB begin, mid, end (NaN when unknown)."""
    n = prod.nints
    out = {"INT_NUM": np.arange(prod.info.intstart, prod.info.intstart + n, dtype=np.int32)}
    for c in _TIME_COLUMNS:
        out[c] = np.full(n, np.nan)
    if not prod.has("INT_TIMES"):
        log.warning("%s: no INT_TIMES table; integration times are NaN", prod.path)
        return out, None
    tab = prod.read_table("INT_TIMES")
    try:
        num = np.asarray(tab["integration_number"], dtype=int)
    except KeyError:
        log.warning("%s: INT_TIMES has no integration_number column; times are NaN", prod.path)
        return out, tab
    lookup = {int(k): j for j, k in enumerate(num)}
    rows = np.array([lookup.get(int(k), -1) for k in out["INT_NUM"]])
    if (rows < 0).any():
        if len(tab) == n:
            rows = np.arange(n)
        else:
            log.warning("%s: INT_TIMES lacks some integrations of this file; their times are NaN", prod.path)
    names = dict(zip(_TIME_COLUMNS, ("int_start_MJD_UTC", "int_mid_MJD_UTC", "int_end_MJD_UTC",
                                     "int_start_BJD_TDB", "int_mid_BJD_TDB", "int_end_BJD_TDB")))
    for key, col in names.items():
        if col in tab.colnames:
            vals = np.asarray(tab[col], dtype=float)
            out[key] = np.where(rows >= 0, vals[np.clip(rows, 0, None)], np.nan)
    return out, tab


def _variance_extensions(prod):
    """Which variance extensions the file has: the VAR_* parts, else ERR."""
    if prod.has("VAR_POISSON") and prod.has("VAR_RNOISE"):
        return {"poisson": "VAR_POISSON", "rnoise": "VAR_RNOISE", "flat": "VAR_FLAT" if prod.has("VAR_FLAT") else None}
    if prod.has("ERR"):
        log.info("%s: no VAR_POISSON/VAR_RNOISE; errors propagated from ERR", prod.path)
        return {"total": "ERR"}
    raise ProductError(f"{prod.path}: no VAR_POISSON/VAR_RNOISE or ERR extension to propagate errors from")


def _read_var(prod, exts, i, r0, r1):
    out = {"poisson": None, "rnoise": None, "flat": None, "total": None}
    for key, name in exts.items():
        if name is None:
            continue
        arr = read_rows(prod, name, i, r0, r1)
        out[key] = np.square(arr, dtype=np.float64) if name == "ERR" else arr.astype(np.float64)
    return out


def _total_variance(prod, exts, i, r0, r1):
    """Variance of rows ``r0:r1``, float64: VAR_POISSON + VAR_RNOISE (+ VAR_FLAT), or ERR^2."""
    if "total" in exts:
        return np.square(read_rows(prod, exts["total"], i, r0, r1), dtype=np.float64)
    # float64(a) + float64(b): a cast then an in-place add is quicker than add(a, b, dtype=f8)
    tot = read_rows(prod, exts["poisson"], i, r0, r1).astype(np.float64)
    tot += read_rows(prod, exts["rnoise"], i, r0, r1)
    if exts["flat"] is not None:
        tot += read_rows(prod, exts["flat"], i, r0, r1)
    return tot


def _static_good(prod, ny, nx):
    """Pixels that are not reference pixels (from the subarray geometry), shape (ny, nx)."""
    info = prod.info
    good = np.ones((ny, nx), dtype=bool)
    geo = info.geometry
    if geo is not None:
        ox, oy = info.cutout_origin or (0, 0)
        ref = geo.reference_mask()
        if ref.shape[0] >= oy + ny and ref.shape[1] >= ox + nx:
            good &= ~ref[oy : oy + ny, ox : ox + nx]
    return good


def _median_image(prod, vexts, static_good, advance):
    """Median image, mean per-pixel variance and the fraction of good samples per pixel."""
    n = prod.nints
    ny, nx = prod.shape("SCI")[1:]
    take = np.unique(np.linspace(0, n - 1, min(n, TEMPLATE_MAX_INTS)).round().astype(int))
    groups = np.array_split(take, min(TEMPLATE_GROUPS, len(take)))
    means = np.full((len(groups), ny, nx), np.nan, dtype=np.float32)
    var_sum = np.zeros((ny, nx))
    var_n = np.zeros((ny, nx), dtype=np.int32)
    good_n = np.zeros((ny, nx), dtype=np.int32)
    has_dq = prod.has("DQ")
    s = np.empty((ny, nx))
    c = np.empty((ny, nx), dtype=np.int32)
    for g, members in enumerate(groups):
        s.fill(0.0)
        c.fill(0)
        for i in members:
            # sums in float64 of the float32 values, adding only the good pixels (in place:
            # no full-frame temporaries)
            sci = read_rows(prod, "SCI", int(i), 0, ny)
            ok = np.isfinite(sci)
            ok &= static_good
            if has_dq:
                ok &= (read_rows(prod, "DQ", int(i), 0, ny) & BAD_BITS) == 0
            np.add(s, sci, out=s, where=ok)
            c += ok
            tot = _total_variance(prod, vexts, int(i), 0, ny)
            ok &= np.isfinite(tot)
            np.add(var_sum, tot, out=var_sum, where=ok)
            var_n += ok
            advance()
        good_n += c
        with np.errstate(invalid="ignore", divide="ignore"):
            means[g] = np.where(c > 0, s / c, np.nan)
    median = _nanmedian_first_axis(means).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(var_n > 0, var_sum / var_n, np.nan)
    good = static_good & np.isfinite(median) & (good_n >= 0.5 * len(take)) & np.isfinite(var)
    return median, var, good, len(take)


def _nanmedian_first_axis(stack):
    """``np.nanmedian(stack, axis=0)`` without its masked-array path (4x faster), same values.

    Even counts give ``(low + high) / 2`` in the input's precision, as numpy does; pixels
    without a finite value are NaN.
    """
    s = np.sort(stack, axis=0)  # NaN sort to the end
    n = np.count_nonzero(~np.isnan(s), axis=0)
    h = n // 2
    low = np.take_along_axis(s, np.where(n % 2 == 1, h, h - 1)[None], axis=0)[0]
    high = np.take_along_axis(s, h[None], axis=0)[0]
    med = (low + high) / 2
    med[n == 0] = np.nan
    return med


def _column_wavelengths(prod, center, nx, wavelengths_from=None):
    """Wavelength (um) of each column at the trace, and where it came from."""
    info = prod.info
    if prod.has("WAVELENGTH"):
        wl = prod.read("WAVELENGTH").astype(float)
        if wl.ndim == 2 and wl.shape[1] == nx and np.isfinite(wl).any():
            r = np.clip(center, 0, wl.shape[0] - 1)
            r0 = np.floor(r).astype(int)
            r1 = np.minimum(r0 + 1, wl.shape[0] - 1)
            f = r - r0
            x = np.arange(nx)
            return (1 - f) * wl[r0, x] + f * wl[r1, x], "WAVELENGTH extension"
    filt = str(info.filter or "").upper()
    if filt in GRISMR_FILTERS:
        xstart = info.geometry.xstart if info.geometry is not None else 0
        ox = (info.cutout_origin or (0, 0))[0]
        return grismr_wavelength(np.arange(nx) + xstart + ox, filt), f"in-flight GRISMR {filt} polynomial"
    log.warning("%s: no WAVELENGTH extension and no in-flight solution for FILTER=%s; wavelengths are NaN",
                prod.path, info.filter)
    return np.full(nx, np.nan), "none"


# ============================================================================ outputs
def _units(bunit):
    """TUNIT strings (astropy-parseable: readers such as chromatic parse every column's unit)."""
    import astropy.units as u

    unit = u.Unit(bunit or "DN/s", parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit):
        return {None: str(bunit), "sq": "", "sb": "", "sbsq": "", "um": "um", "": ""}
    fmt = "generic"
    return {None: unit.to_string(fmt), "sq": (unit**2).to_string(fmt), "sb": (unit / u.pix).to_string(fmt),
            "sbsq": ((unit / u.pix) ** 2).to_string(fmt), "um": "um", "": ""}


def _tso_columns(nx, bunit):
    u = _units(bunit)
    cols = {"INT_NUM": ("i4",)}
    for name, dtype, unit in _VECTOR_COLUMNS:
        cols[name] = (dtype, (nx,), u[unit])
    cols["N_ALONGDISP"] = ("u4",)
    cols["SEGMENT"] = ("i4",)
    for name in _TIME_COLUMNS:
        cols[name] = ("f8", (), "d")
    return cols


def _legacy_columns(bunit):
    """Per-integration EXTRACT1D columns: the jwst <= 1.18 spectable ones first, then the TSO
    scalars (INT_NUM, N_ALONGDISP, SEGMENT, times) repeated on every row, so that
    MultiSpecModel, TSOMultiSpecModel (which match columns by name only when every one of
    theirs is present) and chromatic all read the same values."""
    u = _units(bunit)
    # DQ and N_ALONGDISP as plain int32: a pseudo-unsigned (TZERO) column makes stdatamodels
    # match columns by position instead of by name
    cols = {name: ("i4" if name == "DQ" else dtype, (), u[unit]) for name, dtype, unit in _VECTOR_COLUMNS}
    cols["INT_NUM"] = ("i4",)
    cols["N_ALONGDISP"] = ("i4",)
    cols["SEGMENT"] = ("i4",)
    for name in _TIME_COLUMNS:
        cols[name] = ("f8", (), "d")
    return cols


def _spec_header(prod, trace, params, nx, trace_rows):
    """EXTRACT1D keywords shared by every spectrum (stdatamodels specmeta)."""
    info = prod.info
    h = fits.Header()
    sci = prod.header("SCI")
    ox, oy = info.cutout_origin or (0, 0)
    h["SLTNAME"] = (str(sci.get("SLTNAME", f"{info.detector or 'NRC'}_TSGRISM")), "Slit name")
    h["SPORDER"] = (1, "Spectral order number")
    h["DISPAXIS"] = (1, "Dispersion direction")
    if info.detector:
        h["DETECTOR"] = info.detector
    xref = info.xref if info.xref is not None else nx / 2.0
    h["SRCXPOS"] = (float(xref), "Source position in slit (x-axis)")
    h["SRCYPOS"] = (float(trace.model(min(max(xref, 0), nx - 1))), "Source position in slit (y-axis)")
    h["EXTR_X"] = (float(xref), "X center of extraction region")
    h["EXTR_Y"] = (float(np.median(trace.center)), "Y center of extraction region")
    h["EXTRXSTR"] = (0.0, "X axis start of extraction region")
    h["EXTRXSTP"] = (float(nx - 1), "X axis end of extraction region")
    h["EXTRYSTR"] = (float(trace_rows[0]), "Y axis start of extraction region")
    h["EXTRYSTP"] = (float(trace_rows[-1]), "Y axis end of extraction region")
    h["SLTSTRT1"] = (ox + 1, "Slit starting pixel index along axis 1")
    h["SLTSTRT2"] = (oy + 1, "Slit starting pixel index along axis 2")
    h["TIMESYS"] = ("UTC", "principal time system for time-related keywords")
    h["TSEXTMET"] = (params.method, "tsotools spectra extraction method")
    h["TSBKGMET"] = (params.background, "tsotools spectra background method")
    return h


def _check_outputs(input_path, paths):
    """Every output distinct from the input and from each other."""
    seen = {str(Path(input_path).resolve())}
    for p in paths:
        if p is None:
            continue
        key = str(Path(p).resolve())
        if key in seen:
            raise OutputError(f"{p}: used twice (input or another output); choose distinct names")
        seen.add(key)


# ============================================================================ the run
def run_spectra(input_path, output_path, *, params: ex.ExtractionParams | None = None, layout: str = "tso",
                white_light=None, lightcurves=None, nbins: int | None = None, bin_width_um: float | None = None,
                wave_range: tuple[float, float] | None = None, noise_report=None, noise_max_width: int = NOISE_MAX_WIDTH,
                plot: bool = False, trace_table=None, overwrite: bool = False, progress: bool = True) -> dict:
    """Extract a 1D spectrum from every integration of a grism time series.

    Parameters
    ----------
    input_path : path-like
        Grism rateints, calints or cutout (SlitModel, any height).
    output_path : path-like
        The x1dints file.
    params : ExtractionParams
    layout : {"tso", "per-integration"}
        jwst >= 1.19 TSOMultiSpecModel (one row per integration) or jwst <= 1.18
        MultiSpecModel (one EXTRACT1D per integration, read by chromatic-lightcurves).
    white_light : path-like, optional
        ECSV/FITS white-light table (the pipeline's ``_whtlt.ecsv`` columns + an error).
    lightcurves : path-like, optional
        ECSV/FITS spectroscopic light curves; needs ``nbins`` or ``bin_width_um``.
    nbins, bin_width_um : int, float, optional
        Wavelength bins of the light curves.
    wave_range : (float, float), optional
        Wavelength range (micron) of the white light and bins.
    noise_report : path-like, optional
        ECSV/FITS table of scatter against bin width (1..``noise_max_width`` columns).
    plot : bool
        Also write the noise report as a PNG beside it (same name, ``.png``).
    trace_table : path-like, optional
        ECSV/FITS table of the per-integration trace shift (trace polynomial in its meta).
    overwrite, progress : bool

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or ex.ExtractionParams()
    if layout not in LAYOUTS:
        raise ValueError(f"layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if lightcurves is not None and nbins is None and bin_width_um is None:
        raise ProductError("--lightcurves needs --bins N or --bin-width UM")
    plot_path = Path(noise_report).with_suffix(".png") if (plot and noise_report is not None) else None
    if plot and noise_report is None:
        raise ProductError("--plot needs --noise-report FILE (the PNG is written beside it)")
    _check_outputs(input_path, [output_path, white_light, lightcurves, noise_report, trace_table, plot_path])
    t0 = time.perf_counter()

    with open_product(input_path, expect=("rateints", "calints", "cutout"), tool="spectra") as prod:
        info = prod.info
        if not info.is_grism:
            raise ProductError(f"{input_path}: EXP_TYPE={info.exp_type}; spectra needs grism data (NRC_TSGRISM)")
        n = prod.nints
        ny, nx = prod.shape("SCI")[1:]
        vexts = _variance_extensions(prod)
        bunit = str(prod.header("SCI").get("BUNIT", "DN/s")).strip() or "DN/s"
        times, int_times = _times(prod)
        static_good = _static_good(prod, ny, nx)

        # ------------------------------------------------------------ pass 1: template
        with progress_bar("spectra: median image", min(n, TEMPLATE_MAX_INTS), progress) as advance:
            median, var_med, good_med, ntemplate = _median_image(prod, vexts, static_good, advance)
        try:
            trace = ex.find_trace(median, good_med, params, var=var_med / max(ntemplate, 1))
        except ValueError as exc:
            raise ProductError(f"{input_path}: cannot trace the spectrum ({exc})") from None
        center = trace.center
        log.info("trace: order-%d polynomial through %d columns, rms %.4f px, rows %.2f-%.2f",
                 params.trace_order, int(trace.used.sum()), trace.rms_px, center.min(), center.max())

        rows_all = np.arange(ny)
        reach = params.reach_px + SHIFT_MARGIN_PX
        a0 = max(int(math.floor(center.min() - reach)), 0)
        a1 = min(int(math.ceil(center.max() + reach)) + 1, ny)
        ap_rows = np.arange(a0, a1)
        dist = np.abs(rows_all[:, None] - center[None, :])
        bkg_region = dist >= params.bkg_inner_px
        if params.bkg_outer_px is not None:
            bkg_region &= dist <= params.bkg_outer_px
        bkg_region &= static_good
        if params.background != "none":
            live = static_good.any(axis=0)
            if np.median(bkg_region.sum(axis=0)[live]) < 3:
                raise ProductError(
                    f"{input_path}: fewer than 3 background rows per column beyond {params.bkg_inner_px:g} px of "
                    f"the trace in {ny} rows; lower --bkg-inner, use --background none, or widen the cutout"
                )
            brows = np.flatnonzero(bkg_region.any(axis=1))
            s0, s1 = min(a0, int(brows.min())), max(a1, int(brows.max()) + 1)
        else:
            s0, s1 = a0, a1
        srows = np.arange(s0, s1)
        in_ap = slice(a0 - s0, a1 - s0)
        bkg_use_static = bkg_region[s0:s1]

        # template background, profile, weights
        tbkg = ex.fit_background(median[s0:s1], srows, bkg_use_static & good_med[s0:s1], ap_rows,
                                 method=params.background, order=params.bkg_order, nsigma=params.bkg_nsigma,
                                 trace=center)
        tsub = median[a0:a1] - np.nan_to_num(tbkg.level)
        good_ap_t = good_med[a0:a1]
        box_w = ex.fractional_weights(center, ap_rows, params.halfwidth_px)
        win_var = (box_w**2 * np.where(good_ap_t, var_med[a0:a1], 0)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            col_snr = (box_w * np.where(good_ap_t, tsub, 0)).sum(axis=0) / np.sqrt(win_var)
        valid = np.isfinite(col_snr) & (col_snr >= MIN_COLUMN_SNR)
        if not valid.any():
            raise ProductError(f"{input_path}: no column reaches a signal-to-noise of {MIN_COLUMN_SNR:g} per integration")
        try:
            template = ex.TemplateProfile.from_median(tsub, ap_rows, good_ap_t, center, var_med[a0:a1], params,
                                                      valid=valid)
        except ValueError as exc:
            raise ProductError(f"{input_path}: cannot build the extraction profile ({exc})") from None
        w0 = ex.smooth_weights(template, center, 0.0, params.optimal_halfwidth_px, params.weight_broadening)
        norm = (w0 * template.profile).sum(axis=0)
        ref_com, _ = ex.window_centroids(tsub, ap_rows, center, params.centroid_halfwidth_px, good=good_ap_t, iters=1)
        shift_w = np.where(trace.used & valid, np.nan_to_num(trace.snr) ** 2, 0.0)

        wavelength, wave_source = _column_wavelengths(prod, center, nx)
        light = valid.copy()
        if wave_range is not None:
            light &= (wavelength >= wave_range[0]) & (wavelength <= wave_range[1])
            if not light.any():
                raise ProductError(f"--wave-range {wave_range[0]:g},{wave_range[1]:g} um holds no valid column")
        bins = None
        if lightcurves is not None:
            try:
                bins = lc.make_bins(wavelength, light, nbins=nbins, bin_width_um=bin_width_um)
            except ValueError as exc:
                raise ProductError(f"cannot make wavelength bins: {exc}") from None
        noise = lc.NoiseAccumulator(light, noise_max_width) if noise_report is not None else None

        # ------------------------------------------------------------ outputs planned
        primary = prod.header("PRIMARY")
        primary["S_EXTR1D"] = ("COMPLETE", "Spectral Extraction")
        if "CAL_VER" not in primary:
            primary["CAL_VER"] = (f"tsotools-{__version__}", "Calibration software version number")
        primary["INTSTART"] = info.intstart
        primary["INTEND"] = info.intstart + n - 1
        exts = []
        if int_times is not None:
            exts.append(fits.BinTableHDU(int_times, name="INT_TIMES"))
        spec_hdr = _spec_header(prod, trace, params, nx, ap_rows)
        if layout == "tso":
            exts.append(TableSpec("EXTRACT1D", _tso_columns(nx, bunit), n, header=spec_hdr))
            datamodel = "TSOMultiSpecModel"
        else:
            for i in range(n):
                h = spec_hdr.copy()
                h["EXTNAME"] = "EXTRACT1D"
                h["EXTVER"] = i + 1
                h["INT_NUM"] = (int(times["INT_NUM"][i]), "Integration number")
                for key in _TIME_COLUMNS:
                    val = times[key][i]
                    if np.isfinite(val):
                        h[key] = float(val)
                exts.append(TableSpec(f"EXTRACT1D#{i}", _legacy_columns(bunit), nx, header=h))
            # DATAMODL TSOMultiSpecModel: stdatamodels 6 reads this layout correctly only as that model
            # (MultiSpecModel refuses the extra INT_NUM/time columns, and without them
            # TSOMultiSpecModel would match columns by position)
            datamodel = "TSOMultiSpecModel"
        exts.append(asdf_extension(datamodel))
        run_params = {
            "method": params.method, "halfwidth": params.halfwidth_px, "optimal_halfwidth": params.optimal_halfwidth_px,
            "background": params.background, "bkg_inner": params.bkg_inner_px, "bkg_outer": params.bkg_outer_px,
            "trace_order": params.trace_order, "layout": layout,
        }
        writer = new_product(output_path, primary, exts, tool="spectra", params=run_params, overwrite=overwrite,
                             inputs=(str(input_path),), datamodel=datamodel)

        # ------------------------------------------------------------ pass 2: extraction
        shifts = np.full(n, np.nan)
        shift_cols = np.zeros(n, dtype=np.int32)
        white = np.full(n, np.nan)
        white_err = np.full(n, np.nan)
        bin_flux = np.full((n, bins.nbins), np.nan) if bins is not None else None
        bin_err = np.full((n, bins.nbins), np.nan) if bins is not None else None
        nrejected = 0
        failed = []
        empty = np.full(nx, np.nan)
        has_dq = prod.has("DQ")
        good_ap_static = static_good[a0:a1]
        with writer, progress_bar(f"spectra ({params.method})", n, progress) as advance:
            for i in range(n):
                try:
                    # float32 as stored: the background works in float32 and the aperture
                    # rows become float64 when the background is subtracted
                    sci = read_rows(prod, "SCI", i, s0, s1)
                    # the static mask is in bkg_use_static and good_ap_static
                    good = np.isfinite(sci)
                    if has_dq:
                        good &= (read_rows(prod, "DQ", i, s0, s1) & BAD_BITS) == 0
                    bkg = ex.fit_background(sci, srows, bkg_use_static & good, ap_rows, method=params.background,
                                            order=params.bkg_order, nsigma=params.bkg_nsigma, trace=center)
                    level = bkg.level
                    if not np.isfinite(level).all():
                        fill = np.nanmedian(level) if np.isfinite(level).any() else 0.0
                        level = np.where(np.isfinite(level), level, fill)
                    data = sci[in_ap] - level
                    good_ap = good[in_ap] & good_ap_static
                    var = _read_var(prod, vexts, i, a0, a1)
                    shift, ncols = ex.measure_shift(data, ap_rows, good_ap, center, ref_com, shift_w,
                                                    params.centroid_halfwidth_px)
                    shifts[i], shift_cols[i] = shift, ncols
                    kw = dict(var_poisson=var["poisson"], var_rnoise=var["rnoise"], var_flat=var["flat"],
                              var_total=var["total"], background=level, bkg_var=bkg.var)
                    if params.method == "box":
                        res = ex.extract_box(data, good_ap, box_w, template.profile, **kw)
                    else:
                        d = shift if np.isfinite(shift) else 0.0
                        weights = ex.smooth_weights(template, center, d, params.optimal_halfwidth_px,
                                                    params.weight_broadening)
                        res = ex.extract_optimal(data, good_ap, weights, template, norm, template.shifted(d),
                                                 nsigma=params.outlier_nsigma, iters=params.outlier_iters,
                                                 profile_error=params.profile_error, **kw)
                    nrejected += int(res.nrejected.sum())
                    dqcol = np.where(np.isfinite(res.flux), 0, dqf.DO_NOT_USE).astype(np.uint32)
                    dqcol |= np.where(res.nrejected > 0, dqf.OUTLIER, 0).astype(np.uint32)
                    row = _row(res, wavelength, dqcol)
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    log.warning("integration %d: extraction failed (%s); its spectrum is NaN and flagged",
                                int(times["INT_NUM"][i]), exc)
                    failed.append(int(times["INT_NUM"][i]))
                    row = {k: empty for k, _d, _u in _VECTOR_COLUMNS}
                    row["WAVELENGTH"] = wavelength
                    row["DQ"] = np.full(nx, dqf.DO_NOT_USE, dtype=np.uint32)
                    row["NPIXELS"] = np.zeros(nx)
                    res = None
                _write_spectrum(writer, layout, i, row, times, nx, info)
                if res is not None:
                    if light.any():
                        white[i] = float(np.sum(res.flux[light]))
                        white_err[i] = float(np.sqrt(np.sum(res.var_total[light])))
                    if bins is not None:
                        bin_flux[i] = lc.sum_bins(res.flux, bins)
                        bin_err[i] = np.sqrt(lc.sum_bins(res.var_total, bins, variance=True))
                    if noise is not None:
                        noise.add(res.flux, res.var_total)
                advance()

    # ---------------------------------------------------------------- side products
    written = {"x1dints": str(output_path)}
    mjd, bjd = times["MJD-AVG"], times["TDB-MID"]
    meta_note = f"tsotools {__version__} spectra, method {params.method}, from {Path(input_path).name}"
    if white_light is not None:
        tab = Table({"MJD_UTC": mjd, "BJD_TDB": bjd, "whitelight_flux": white, "whitelight_flux_err": white_err})
        tab["MJD_UTC"].unit = tab["BJD_TDB"].unit = "d"
        tab["whitelight_flux"].unit = tab["whitelight_flux_err"].unit = bunit
        lam = wavelength[light]
        tab.meta.update({"COMMENT": meta_note, "WAVE_MIN": float(np.nanmin(lam)) if np.isfinite(lam).any() else None,
                         "WAVE_MAX": float(np.nanmax(lam)) if np.isfinite(lam).any() else None,
                         "NCOLUMNS": int(light.sum())})
        write_table(tab, white_light, tool="spectra", params=run_params, overwrite=overwrite, inputs=(str(input_path),))
        written["white_light"] = str(white_light)
    if bins is not None:
        nb = bins.nbins
        tab = Table({
            "INT_NUM": np.repeat(times["INT_NUM"], nb), "MJD_UTC": np.repeat(mjd, nb), "BJD_TDB": np.repeat(bjd, nb),
            "BIN": np.tile(np.arange(nb), n), "WAVE_LO": np.tile(bins.wave_lo, n), "WAVE_MID": np.tile(bins.wave_mid, n),
            "WAVE_HI": np.tile(bins.wave_hi, n), "X_LO": np.tile(bins.x_lo, n), "X_HI": np.tile(bins.x_hi, n),
            "NCOLS": np.tile(bins.ncols, n), "FLUX": bin_flux.ravel(), "FLUX_ERR": bin_err.ravel(),
        })
        for c in ("WAVE_LO", "WAVE_MID", "WAVE_HI"):
            tab[c].unit = "um"
        tab["MJD_UTC"].unit = tab["BJD_TDB"].unit = "d"
        tab["FLUX"].unit = tab["FLUX_ERR"].unit = bunit
        tab.meta.update({"COMMENT": meta_note, "NBINS": nb})
        write_table(tab, lightcurves, tool="spectra", params=run_params, overwrite=overwrite, inputs=(str(input_path),))
        written["lightcurves"] = str(lightcurves)
    noise_summary = None
    if noise is not None:
        tab = noise.table()
        tab.meta.update({
            "COMMENT": meta_note,
            "NOTE": "1/f noise runs along rows, i.e. along the GRISMR dispersion: binning N columns does not "
                    "lower it by sqrt(N) (JDox NIRCam TSO known issues). RATIO > 1 at large widths shows it.",
        })
        write_table(tab, noise_report, tool="spectra", params=run_params, overwrite=overwrite, inputs=(str(input_path),))
        written["noise_report"] = str(noise_report)
        last = tab[-1]
        noise_summary = {"max_width": int(last["WIDTH"]), "ratio_at_max_width": float(last["RATIO"]),
                         "ratio_at_width_1": float(tab[0]["RATIO"])}
        if np.isfinite(last["RATIO"]) and last["RATIO"] > 1.2:
            log.warning("binned over %d columns the scatter is %.2f times the 1/sqrt(N) expectation: correlated "
                        "(1/f) noise along the dispersion does not bin down; run tsotools oneoverf on the ramps",
                        int(last["WIDTH"]), float(last["RATIO"]))
        if plot_path is not None:
            from ..plots.spectra import noise_figure

            fig = noise_figure(tab, title=Path(input_path).name)
            save_figure(fig, plot_path, overwrite=overwrite, inputs=(str(input_path),))
            written["plot"] = str(plot_path)
    if trace_table is not None:
        tab = Table({"INT_NUM": times["INT_NUM"], "MJD_UTC": mjd, "BJD_TDB": bjd, "SHIFT_Y": shifts,
                     "NCOLS": shift_cols})
        tab["SHIFT_Y"].unit = "pix"
        tab.meta.update({"COMMENT": meta_note + "; SHIFT_Y is the trace offset from the median image, 0-based rows",
                         "TRC_ORDR": params.trace_order, "TRC_XMIN": 0, "TRC_XMAX": nx - 1, "TRC_RMS": trace.rms_px})
        for k, v in enumerate(trace.model.parameters):
            tab.meta[f"TRC_C{k}"] = float(v)
        write_table(tab, trace_table, tool="spectra", params=run_params, overwrite=overwrite, inputs=(str(input_path),))
        written["trace_table"] = str(trace_table)

    elapsed = time.perf_counter() - t0
    ok_shift = np.isfinite(shifts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wl_ppm = lc.p2p_ppm(white / np.nanmedian(white)) if np.isfinite(white).any() else float("nan")
    summary = {
        "input": str(input_path), "outputs": written, "nints": n, "method": params.method, "layout": layout,
        "background": params.background, "wavelengths": wave_source,
        "trace": {"order": params.trace_order, "rms_px": trace.rms_px, "columns": int(trace.used.sum()),
                  "row_at_xref": float(trace.model(info.xref)) if info.xref is not None and 0 <= info.xref < nx else None,
                  "coefficients": [float(v) for v in trace.model.parameters]},
        "shift_px": {"median": float(np.nanmedian(shifts)) if ok_shift.any() else None,
                     "rms": float(np.nanstd(shifts)) if ok_shift.any() else None,
                     "max_abs": float(np.nanmax(np.abs(shifts))) if ok_shift.any() else None},
        "columns": int(light.sum()), "rejected_pixels": nrejected, "failed_integrations": len(failed),
        "failed": failed, "white_light_p2p_ppm": wl_ppm, "noise": noise_summary,
        "seconds": elapsed, "integrations_per_s": n / elapsed if elapsed > 0 else None,
    }
    summary["message"] = (
        f"wrote {output_path}: {n} spectra ({params.method}, {layout} layout), trace rms {trace.rms_px:.3f} px, "
        f"shift rms {summary['shift_px']['rms'] or 0:.4f} px, white-light point-to-point {wl_ppm:.0f} ppm (robust)"
        + (f", {len(failed)} integrations failed" if failed else "")
    )
    return summary


def _row(res: ex.Extracted, wavelength, dq):
    with np.errstate(invalid="ignore", divide="ignore"):
        npix = np.where(res.npixels > 0, res.npixels, np.nan)
        return {
            "WAVELENGTH": wavelength, "FLUX": res.flux, "FLUX_ERROR": np.sqrt(res.var_total),
            "FLUX_VAR_POISSON": res.var_poisson, "FLUX_VAR_RNOISE": res.var_rnoise, "FLUX_VAR_FLAT": res.var_flat,
            "SURF_BRIGHT": res.flux / npix, "SB_ERROR": np.sqrt(res.var_total) / npix,
            "SB_VAR_POISSON": res.var_poisson / npix**2, "SB_VAR_RNOISE": res.var_rnoise / npix**2,
            "SB_VAR_FLAT": res.var_flat / npix**2, "DQ": dq, "BACKGROUND": res.background,
            "BKGD_ERROR": np.sqrt(res.bkg_var), "BKGD_VAR_POISSON": np.full_like(res.flux, np.nan),
            "BKGD_VAR_RNOISE": res.bkg_var, "BKGD_VAR_FLAT": np.full_like(res.flux, np.nan), "NPIXELS": res.npixels,
        }


def _write_spectrum(writer, layout, i, row, times, nx, info):
    if layout == "tso":
        rec = dict(row)
        rec["INT_NUM"] = int(times["INT_NUM"][i])
        rec["N_ALONGDISP"] = nx
        rec["SEGMENT"] = int(info.exsegnum or 1)
        for key in _TIME_COLUMNS:
            rec[key] = float(times[key][i])
        writer.write("EXTRACT1D", i, rec)
    else:
        extra = [("INT_NUM", "i4"), ("N_ALONGDISP", "i4"), ("SEGMENT", "i4")] + [(k, "f8") for k in _TIME_COLUMNS]
        tab = np.zeros(nx, dtype=[(name, "i4" if name == "DQ" else dtype) for name, dtype, _u in _VECTOR_COLUMNS]
                       + extra)
        for name, _d, _u in _VECTOR_COLUMNS:
            tab[name] = row[name]
        tab["INT_NUM"] = int(times["INT_NUM"][i])
        tab["N_ALONGDISP"] = nx
        tab["SEGMENT"] = int(info.exsegnum or 1)
        for key in _TIME_COLUMNS:
            tab[key] = float(times[key][i])
        write_rows(writer, f"EXTRACT1D#{i}", 0, tab)
