"""``tsotools jitter-from-guidestar``: pointing jitter and antenna moves from FGS data.

Reads fine-guide files (``_gs-fg_..._cal.fits``, or ``_uncal`` turned into count rates as
``calwebb_guider``'s ``guider_cds`` does), joins them in time, measures the guide star in
every 16 Hz frame (from the ``FGS Centroid Packet`` table, or by fitting the 8x8 frames
in batches), finds antenna moves, and, given a science product, averages the offsets over
each science integration and maps them to that detector's pixels.

Memory: guider files are read in chunks of frames (a few MB), one file at a time; only a
handful of numbers per frame are kept (they make the output's per-frame series).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from .. import dqflags
from ..algorithms import guidestar as gs
from ..detector import FGS_PIXEL_SCALE_ARCSEC, PIXEL_SCALE_ARCSEC, is_longwave
from ..errors import OutputError, ProductError
from ..io import open_product, save_figure, write_fits_tables, write_table
from ..progress import progress_bar

__all__ = ["GuiderSeries", "read_guider_series", "run_jitter"]

log = logging.getLogger(__name__)

TOOL = "jitter-from-guidestar"
#: Frames read and fitted at once (cal: 8x8 float32 = 256 B per frame; uncal: 8 groups).
CHUNK_FRAMES = 4096
#: Science products whose INT_TIMES give the integrations to align with.
SCIENCE_KINDS = ("rateints", "calints", "cutout", "ramp", "uncal")
CENTROID_TABLE = "FGS CENTROID PACKET"
POINTING_TABLE = "POINTING"
_DAY_S = 86400.0


# =============================================================================== reading
class _GuideFile:
    """One open fine-guide file and what it says about its frames."""

    def __init__(self, path: str):
        self.prod = open_product(path, expect=("guider",), tool=TOOL)
        self.path = path
        h0 = self.prod.primary_header
        exp_type = str(h0.get("EXP_TYPE", "") or "").upper()
        if exp_type and exp_type != "FGS_FINEGUIDE":
            self.prod.close()
            raise ProductError(
                f"{path}: an {exp_type} file; {TOOL} needs fine-guide (_gs-fg_) files"
            )
        shape = self.prod.shape("SCI")
        datamodel = str(h0.get("DATAMODL", "") or "")
        self.raw = len(shape) == 4 or datamodel == "GuiderRawModel"
        if len(shape) != (4 if self.raw else 3):
            self.prod.close()
            raise ProductError(
                f"{path}: SCI has shape {shape}; expected (nframes, 8, 8) "
                "or (nframes, ngroups, 8, 8)"
            )
        self.nframes = shape[0]
        self.frame_shape = shape[-2:]
        self.tgroup = self.prod.info.tgroup_s
        if self.raw and not self.tgroup:
            self.prod.close()
            raise ProductError(
                f"{path}: raw fine-guide file without TGROUP; cannot make count rates"
            )
        self.start = _float(h0.get("DATASTRT"))
        self.end = _float(h0.get("DATAEND"))
        self.has_centroids = self.prod.has(CENTROID_TABLE)
        self.has_pointing = self.prod.has(POINTING_TABLE)
        sci = self.prod.header("SCI")
        self.v3yangle = _float(h0.get("V3I_YANG", sci.get("V3I_YANG")))
        self.vparity = h0.get("VPARITY", sci.get("VPARITY"))
        self.detector = str(h0.get("DETECTOR", "") or "GUIDER1").upper()
        self.gs_ideal = (_float(h0.get("GSIDL_X")), _float(h0.get("GSIDL_Y")))
        self._centroids = None
        self.sort_key = self.start if math.isfinite(self.start) else self._first_table_time()

    def _first_table_time(self) -> float:
        t = self.centroids()
        return float(t["mjd"][0]) if t is not None and len(t["mjd"]) else math.inf

    def frame_mjd(self) -> np.ndarray:
        """Return frame mid times, MJD.

        The centroid table's when it has one row per frame, else spread evenly over
        DATASTRT..DATAEND (as spelunker does).
        """
        cen = self.centroids()
        if cen is not None and len(cen["mjd"]) == self.nframes and np.all(np.isfinite(cen["mjd"])):
            return cen["mjd"]
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.end > self.start):
            raise ProductError(
                f"{self.path}: no DATASTRT/DATAEND and no centroid table; frame times unknown"
            )
        return gs.frame_times(self.nframes, self.start, self.end)

    def centroids(self) -> dict | None:
        """Read the FGS Centroid Packet as arrays (None without one).

        Keys: mjd, x_mas, y_mas (ideal-frame positions, mas), flux (DN/s), good (bool).
        """
        if not self.has_centroids:
            return None
        if self._centroids is None:
            tab = self.prod.read_table(CENTROID_TABLE)
            need = ["centroid_time", "guide_star_position_x", "guide_star_position_y"]
            missing = [c for c in need if c not in tab.colnames]
            if missing:
                raise ProductError(f"{self.path}: FGS Centroid Packet lacks {', '.join(missing)}")
            mjd = _parse_times(tab["centroid_time"], self.path)
            x = np.asarray(tab["guide_star_position_x"], dtype=float) * 1000.0
            y = np.asarray(tab["guide_star_position_y"], dtype=float) * 1000.0
            good = np.isfinite(x) & np.isfinite(y) & np.isfinite(mjd)
            if "bad_centroid_dq_flag" in tab.colnames:
                flag = np.char.upper(np.asarray(tab["bad_centroid_dq_flag"]).astype(str))
                good &= np.char.startswith(np.char.strip(flag), "NO")
            flux_col = "guide_star_instrument_counts_per_sec"
            flux = (
                np.asarray(tab[flux_col], dtype=float)
                if flux_col in tab.colnames
                else np.full(len(x), np.nan)
            )
            self._centroids = {"mjd": mjd, "x_mas": x, "y_mas": y, "flux": flux, "good": good}
        return self._centroids

    def pointing(self) -> dict | None:
        """Read the Pointing table's frame times (MJD) and HGA_motion flags, or None."""
        if not self.has_pointing:
            return None
        tab = self.prod.read_table(POINTING_TABLE)
        if "HGA_motion" not in tab.colnames or "time" not in tab.colnames:
            return None
        if not math.isfinite(self.start):
            return None
        mjd = self.start + np.asarray(tab["time"], dtype=float) / 1000.0 / _DAY_S
        motion = np.char.upper(np.char.strip(np.asarray(tab["HGA_motion"]).astype(str)))
        return {"mjd": mjd, "moving": motion == "MOVING"}

    def frames(self):
        """Yield (first frame index, rates (n, 8, 8) DN/s, err or None, bad pixel mask)."""
        bad = None
        if self.prod.has("DQ"):
            dq = self.prod.read("DQ")
            if dq.ndim == 2:
                bad = (dq & dqflags.DO_NOT_USE) != 0
        chunk = CHUNK_FRAMES // 8 if self.raw else CHUNK_FRAMES
        has_err = (
            self.prod.has("ERR")
            and not self.raw
            and self.prod.shape("ERR") == self.prod.shape("SCI")
        )
        for a in range(0, self.nframes, chunk):
            b = min(a + chunk, self.nframes)
            sci = self.prod.read("SCI", slice(a, b))
            if self.raw:
                sci, err = gs.fineguide_rates(sci, self.tgroup)
            else:
                err = self.prod.read("ERR", slice(a, b)) if has_err else None
            yield a, sci, err, bad

    def close(self):
        self.prod.close()


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _parse_times(column, path) -> np.ndarray:
    """MJD (UTC) of ISO time strings (``centroid_time``)."""
    from astropy.time import Time

    text = np.char.strip(np.asarray(column).astype(str))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(
                Time(np.char.replace(text, " ", "T"), format="isot", scale="utc").mjd, dtype=float
            )
    except ValueError as exc:
        raise ProductError(f"{path}: centroid_time is not an ISO time ({exc})") from None


class GuiderSeries:
    """The joined per-frame series of all fine-guide files.

    Attributes
    ----------
    mjd, x_mas, y_mas, flux : float64 (nframes,)
        Frame time (MJD UTC), guide-star offset in the FGS ideal frame (mas), flux (DN/s).
    method : str
        "table" or "fit": where the positions come from.
    moves : float64 (nmoves, 2), START_MJD, STOP_MJD; move_source : "table" or "series"
    agreement_mas : float or None
        RMS difference between fitted and table positions (auto), after calibrating the
        fits onto the table's scale and zero point.
    """

    def __init__(self):
        self.mjd = self.x_mas = self.y_mas = self.flux = np.empty(0)
        self.method = ""
        self.moves = np.empty((0, 2))
        self.move_source = ""
        self.agreement_mas = None
        self.calibration = None
        self.nfailed = 0
        self.fgs = {
            "v3yangle": gs.FGS1_V3IDLYANGLE_DEG,
            "vparity": gs.FGS_VIDLPARITY,
            "detector": "GUIDER1",
        }
        self.files: list[str] = []
        self.raw_files = 0


def read_guider_series(paths, params: gs.JitterParams, progress: bool = True) -> GuiderSeries:
    """Read, measure and join fine-guide files (see the module docstring).

    Returns
    -------
    GuiderSeries
    """
    files = []
    try:
        for p in paths:
            files.append(_GuideFile(str(p)))
        files.sort(key=lambda f: f.sort_key)
        return _measure(files, params, progress)
    finally:
        for f in files:
            f.close()


def _measure(files, params, progress) -> GuiderSeries:
    out = GuiderSeries()
    out.files = [f.path for f in files]
    out.raw_files = sum(f.raw for f in files)
    all_tables = all(f.has_centroids for f in files)
    method = params.method
    if method == "table" and not all_tables:
        lacking = next(f.path for f in files if not f.has_centroids)
        raise ProductError(f"{lacking}: no FGS Centroid Packet table; use --method fit (or auto)")
    if method == "auto":
        method = "table" if all_tables else "fit"
        if not all_tables and any(f.has_centroids for f in files):
            log.warning(
                "some guide-star files lack the centroid table: every file is measured by fitting"
            )
    need_fit = method == "fit" or (params.method == "auto" and all_tables)

    mjd, tx, ty, tflux, fx, fy, fflux = [], [], [], [], [], [], []
    total = sum(f.nframes for f in files)
    t0 = time.perf_counter()
    with progress_bar("guide-star frames", total, progress) as advance:
        for f in files:
            fmjd = f.frame_mjd()
            cen = f.centroids()
            if method == "table":
                good = cen["good"]
                mjd.append(cen["mjd"])
                tx.append(np.where(good, cen["x_mas"], np.nan))
                ty.append(np.where(good, cen["y_mas"], np.nan))
                tflux.append(np.where(good, cen["flux"], np.nan))
            else:
                mjd.append(fmjd)
            if need_fit:
                xs, ys, fl = (
                    np.full(f.nframes, np.nan),
                    np.full(f.nframes, np.nan),
                    np.full(f.nframes, np.nan),
                )
                for a, sci, err, bad in f.frames():
                    fit = gs.fit_frames(sci, err, bad, params.fit)
                    xs[a : a + len(sci)], ys[a : a + len(sci)], fl[a : a + len(sci)] = (
                        fit.x,
                        fit.y,
                        fit.flux,
                    )
                    advance(len(sci))
                if method == "table":  # match fitted frames to table rows by time
                    idx = _nearest(fmjd, cen["mjd"])
                    xs, ys, fl = xs[idx], ys[idx], fl[idx]
                fx.append(xs)
                fy.append(ys)
                fflux.append(fl)
            else:
                advance(f.nframes)
    elapsed = time.perf_counter() - t0
    out.mjd = np.concatenate(mjd)
    out.method = method
    if need_fit:
        fx, fy, fflux = np.concatenate(fx), np.concatenate(fy), np.concatenate(fflux)
    if method == "table":
        out.x_mas, out.y_mas, out.flux = (
            np.concatenate(tx),
            np.concatenate(ty),
            np.concatenate(tflux),
        )
        _reference_to_gsidl(out, files)
        if need_fit:
            try:
                free, _, _, _ = gs.calibrate_to_reference(fx, fy, out.x_mas, out.y_mas)
                matrix = gs.nearest_orientation(free)
                if not np.allclose(matrix, gs.PIXEL_TO_IDEAL):
                    log.warning(
                        "the fine-guide frames are oriented differently from the ideal frame than "
                        "assumed (measured %s mas/px against the table)",
                        np.round(free, 1).tolist(),
                    )
                matrix, offset, rms, nused = gs.calibrate_to_reference(
                    fx, fy, out.x_mas, out.y_mas, matrix
                )
                out.agreement_mas = rms
                out.calibration.update(
                    {"matrix": matrix, "offset": offset, "nused": nused, "measured": free}
                )
                log.info(
                    "fitted frames vs centroid table: %.3f mas rms over %d frames "
                    "(measured scale %.1f, "
                    "%.1f mas/px)",
                    rms,
                    nused,
                    float(np.hypot(*free[:, 0])),
                    float(np.hypot(*free[:, 1])),
                )
            except ValueError as exc:
                log.warning("cannot compare fitted and table positions: %s", exc)
    else:
        ok = np.isfinite(fx) & np.isfinite(fy)
        if not ok.any():
            raise ProductError(f"{files[0].path}: no guide star found in any frame")
        ref = (float(np.median(fx[ok])), float(np.median(fy[ok])))
        out.x_mas, out.y_mas = gs.pixels_to_ideal_mas(fx, fy, ref)
        out.flux = fflux
        out.calibration = {"reference_px": ref}
    # sort and drop frames repeated in overlapping files
    order = np.argsort(out.mjd, kind="stable")
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.diff(out.mjd[order]) > 0
    sel = order[keep]
    out.mjd, out.x_mas, out.y_mas, out.flux = (
        out.mjd[sel],
        out.x_mas[sel],
        out.y_mas[sel],
        out.flux[sel],
    )
    out.nfailed = int(np.count_nonzero(~(np.isfinite(out.x_mas) & np.isfinite(out.y_mas))))
    log.info(
        "%d guide-star frames from %d file(s) by %s in %.2f s (%d without a position)",
        len(out.mjd),
        len(files),
        method,
        elapsed,
        out.nfailed,
    )

    # antenna moves
    pointing = [f.pointing() for f in files]
    if all(p is not None for p in pointing):
        pm = np.concatenate([p["mjd"] for p in pointing])
        mv = np.concatenate([p["moving"] for p in pointing])
        order = np.argsort(pm, kind="stable")
        out.moves, out.move_source = gs.moves_from_flags(pm[order], mv[order]), "table"
    else:
        out.moves, out.move_source = (
            gs.detect_hga_moves(out.mjd, out.x_mas, out.y_mas, params.hga),
            "series",
        )

    f0 = files[0]
    if math.isfinite(f0.v3yangle) and f0.vparity in (1, -1):
        out.fgs = {"v3yangle": f0.v3yangle, "vparity": int(f0.vparity), "detector": f0.detector}
    else:
        default = gs.FGS2_V3IDLYANGLE_DEG if f0.detector == "GUIDER2" else gs.FGS1_V3IDLYANGLE_DEG
        out.fgs = {"v3yangle": default, "vparity": gs.FGS_VIDLPARITY, "detector": f0.detector}
        log.warning("%s: no V3I_YANG/VPARITY; using the SIAF values of %s", f0.path, f0.detector)
    return out


def _nearest(t, ref):
    """Index into ``t`` of the nearest element to each of ``ref`` (both sorted)."""
    if len(t) == 1:
        return np.zeros(len(ref), dtype=int)
    j = np.clip(np.searchsorted(t, ref), 1, len(t) - 1)
    return np.where(np.abs(t[j - 1] - ref) <= np.abs(t[j] - ref), j - 1, j)


def _reference_to_gsidl(series, files):
    """Table positions are absolute ideal-frame coordinates: subtract GSIDL_X/Y."""
    gx, gy = files[0].gs_ideal
    if math.isfinite(gx) and math.isfinite(gy):
        series.x_mas = series.x_mas - gx * 1000.0
        series.y_mas = series.y_mas - gy * 1000.0
        series.calibration = {"reference": "GSIDL_X/Y", "gsidl_arcsec": (gx, gy)}
    else:
        ok = np.isfinite(series.x_mas) & np.isfinite(series.y_mas)
        mx, my = float(np.median(series.x_mas[ok])), float(np.median(series.y_mas[ok]))
        series.x_mas, series.y_mas = series.x_mas - mx, series.y_mas - my
        series.calibration = {"reference": "median position"}
        log.warning("%s: no GSIDL_X/GSIDL_Y; offsets are from the median position", files[0].path)


# =============================================================================== science clock
def _science_frame(path):
    """Integration times, detector and ideal-frame orientation of a science product."""
    with open_product(path, expect=SCIENCE_KINDS, tool=TOOL) as prod:
        times = prod.integration_times()
        if times is None:
            raise ProductError(
                f"{path}: no usable INT_TIMES table; cannot align integrations with the guider"
            )
        sci = prod.header("SCI") if prod.has("SCI") else prod.header()
        h0 = prod.primary_header
        detector = str(h0.get("DETECTOR", "") or "")
        info = prod.info
    scale = PIXEL_SCALE_ARCSEC["LW" if is_longwave(detector) else "SW"]
    angle = _float(sci.get("V3I_YANG", h0.get("V3I_YANG")))
    parity = sci.get("VPARITY", h0.get("VPARITY"))
    if not math.isfinite(angle) or parity not in (1, -1):
        log.warning(
            "%s: no V3I_YANG/VPARITY in the SCI header; assuming 0 deg and parity -1 (NIRCam)", path
        )
        angle, parity = 0.0, -1
    return {
        "times": times,
        "detector": detector,
        "scale": scale,
        "v3yangle": angle,
        "vparity": int(parity),
        "intstart": info.intstart,
    }


def _integration_table(series, sci, params) -> tuple[Table, int]:
    times = sci["times"]
    start = np.asarray(times["mjd_start"], dtype=float)
    end = np.asarray(times["mjd_end"], dtype=float)
    offs = gs.integration_offsets(series.mjd, series.x_mas, series.y_mas, start, end)
    pix = sci["matrix"] @ np.vstack([offs.dx_mas, offs.dy_mas])
    flag = gs.flag_near_moves(start, end, series.moves, params.hga_margin_s)
    missing = ~np.isfinite(offs.dx_mas)
    tab = Table()
    tab["INT_NUM"] = np.asarray(times["int_num"], dtype=np.int32)
    tab["MJD"] = np.asarray(times["mjd_mid"], dtype=float)
    tab["MJD"].unit = "d"
    tab["BJD_TDB"] = np.asarray(times["bjd_mid"], dtype=float)
    tab["BJD_TDB"].unit = "d"
    for name, values, unit in (
        ("DX_MAS", offs.dx_mas, "mas"),
        ("DY_MAS", offs.dy_mas, "mas"),
        ("DX_PIX", pix[0], "pix"),
        ("DY_PIX", pix[1], "pix"),
        ("JITTER_RMS_MAS", offs.rms_mas, "mas"),
    ):
        tab[name] = values
        tab[name].unit = unit
    tab["NFRAMES"] = offs.nframes
    tab["HGA_FLAG"] = flag
    tab.meta["COMMENT"] = [
        "DX_MAS, DY_MAS: mean guide-star offset over the integration (INT_TIMES start..end),",
        "  FGS ideal frame",
        "DX_PIX, DY_PIX: the same pointing offset in science-detector pixels along its x and y",
        "JITTER_RMS_MAS: RMS distance of the 16 Hz positions from that mean",
        "HGA_FLAG: the integration lies within HGAMARGN s of an antenna move (HGA_MOVES)",
    ]
    return tab, int(missing.sum())


# =============================================================================== the step
def run_jitter(
    gsfiles,
    output,
    *,
    science=None,
    params: gs.JitterParams | None = None,
    plot=None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Pointing jitter and antenna moves from fine-guide files, on the science clock.

    Parameters
    ----------
    gsfiles : sequence of path-like
        ``_gs-fg_`` cal or uncal files, in any order.
    output : path-like
        ``.fits`` (tables JITTER and HGA_MOVES) or ``.ecsv`` (JITTER; the moves in its
        header as HGA_MOVES).
    science : path-like, optional
        A rateints/calints/cutout/ramp/uncal product whose INT_TIMES give the integrations.
    params : JitterParams, optional
    plot : path-like, optional
        PNG of the series with the moves shaded and the integrations marked.

    Returns
    -------
    dict
        JSON-ready summary with a human "message".
    """
    params = gs.JitterParams() if params is None else params
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".fits", ".fit", ".fts", ".ecsv"):
        raise OutputError(f"{output}: the jitter table ends in .fits (JITTER + HGA_MOVES) or .ecsv")
    inputs = tuple(str(p) for p in gsfiles) + ((str(science),) if science else ())
    for target in (output, Path(plot) if plot else None):  # refuse before the work, not after
        if target is not None and target.exists() and not overwrite:
            raise OutputError(f"{target}: exists; use --overwrite to replace it")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise OutputError(f"{plot}: plots are written as .png")
    sci = _science_frame(science) if science else None  # refuse a wrong product before the work
    series = read_guider_series(gsfiles, params, progress)
    if sci is not None:
        sci["matrix"] = gs.guider_to_science(
            series.fgs["v3yangle"],
            series.fgs["vparity"],
            sci["v3yangle"],
            sci["vparity"],
            sci["scale"],
        )

    moves = Table()
    moves["START_MJD"] = series.moves[:, 0] if len(series.moves) else np.empty(0)
    moves["STOP_MJD"] = series.moves[:, 1] if len(series.moves) else np.empty(0)
    moves["START_MJD"].unit = moves["STOP_MJD"].unit = "d"
    moves["SOURCE"] = np.array([series.move_source] * len(series.moves), dtype="U6")
    for start, stop in series.moves:
        log.info(
            "antenna move %.6f..%.6f MJD (%.1f s, from the %s)",
            start,
            stop,
            (stop - start) * _DAY_S,
            series.move_source,
        )

    nmissing = 0
    if sci is not None:
        table, nmissing = _integration_table(series, sci, params)
        if nmissing:
            log.warning(
                "%d of %d integrations have no guide-star frame: NaN offsets", nmissing, len(table)
            )
    else:
        table = Table()
        table["MJD"] = series.mjd
        table["MJD"].unit = "d"
        table["X_MAS"] = series.x_mas
        table["Y_MAS"] = series.y_mas
        table["X_MAS"].unit = table["Y_MAS"].unit = "mas"
        table["FLUX"] = series.flux
        table["FLUX"].unit = "DN/s"
    meta = _header(series, sci, params)
    table.meta.update(meta)
    run_params = {
        "method": params.method,
        "hga_margin_s": params.hga_margin_s,
        "files": len(series.files),
        "science": Path(science).name if science else None,
    }
    if suffix == ".ecsv":
        table.meta["HGA_MOVES"] = [
            {"START_MJD": float(a), "STOP_MJD": float(b), "SOURCE": series.move_source}
            for a, b in series.moves
        ]
        write_table(table, output, tool=TOOL, params=run_params, overwrite=overwrite, inputs=inputs)
    else:
        write_fits_tables(
            {"JITTER": table, "HGA_MOVES": moves},
            output,
            tool=TOOL,
            params=run_params,
            overwrite=overwrite,
            inputs=inputs,
        )
    if plot is not None:
        from ..plots.jitter import jitter_figure

        fig = jitter_figure(
            series.mjd,
            series.x_mas,
            series.y_mas,
            series.moves,
            integrations=table if sci is not None else None,
            title=f"{Path(series.files[0]).name} ({len(series.files)} file(s), {series.method})",
        )
        save_figure(fig, plot, overwrite=overwrite, inputs=inputs + (str(output),))

    ok = np.isfinite(series.x_mas) & np.isfinite(series.y_mas)
    jitter = (
        float(np.sqrt(np.var(series.x_mas[ok]) + np.var(series.y_mas[ok])))
        if ok.any()
        else math.nan
    )
    summary = {
        "output": str(output),
        "plot": str(plot) if plot else None,
        "files": len(series.files),
        "uncal_files": series.raw_files,
        "frames": int(len(series.mjd)),
        "failed_frames": series.nfailed,
        "method": series.method,
        "fit_table_rms_mas": series.agreement_mas,
        "jitter_rms_mas": jitter,
        "hga_moves": [{"start_mjd": float(a), "stop_mjd": float(b)} for a, b in series.moves],
        "hga_source": series.move_source,
        "nints": int(len(table)) if sci is not None else None,
        "hga_flagged": int(np.count_nonzero(table["HGA_FLAG"])) if sci is not None else None,
        "missing_integrations": nmissing,
    }
    what = (
        f"{len(table)} integrations ({summary['hga_flagged']} near an antenna move)"
        if sci is not None
        else f"{len(table)} frames"
    )
    agree = (
        f", fit vs table {series.agreement_mas:.2f} mas rms"
        if series.agreement_mas is not None
        else ""
    )
    summary["message"] = (
        f"wrote {output}: {what}; {len(series.moves)} antenna move(s) from the "
        f"{series.move_source}; jitter {jitter:.2f} mas rms per frame ({series.method}{agree})"
    )
    return summary


def _header(series, sci, params) -> dict:
    """Keywords describing how the table was made (FITS extension header / ECSV meta)."""
    meta = {
        "METHOD": series.method,
        "NGSFILES": len(series.files),
        "NFRAMES": int(len(series.mjd)),
        "NFAILED": series.nfailed,
        "HGASRC": series.move_source,
        "HGAMARGN": params.hga_margin_s,
        "FGS_DET": series.fgs["detector"],
        "FGS_V3YA": series.fgs["v3yangle"],
        "FGS_VPAR": series.fgs["vparity"],
        "FGS_SCAL": FGS_PIXEL_SCALE_ARCSEC,
    }
    cal = series.calibration or {}
    if series.method == "table":
        meta["ZEROPT"] = "GSIDL_X/Y" if cal.get("reference") == "GSIDL_X/Y" else "median position"
    else:
        meta["ZEROPT"] = "median fitted position"
        meta["REFX_PX"], meta["REFY_PX"] = cal.get("reference_px", (math.nan, math.nan))
    if series.agreement_mas is not None:
        meta["FITAGREE"] = series.agreement_mas
    if sci is not None:
        m = sci["matrix"]
        meta.update(
            {
                "SCI_DET": sci["detector"],
                "SCI_V3YA": sci["v3yangle"],
                "SCI_VPAR": sci["vparity"],
                "SCI_SCAL": sci["scale"],
                "G2S_11": m[0, 0],
                "G2S_12": m[0, 1],
                "G2S_21": m[1, 0],
                "G2S_22": m[1, 1],
            }
        )
    return meta
