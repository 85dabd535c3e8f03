"""``tsotools centroid``: the star's position in every integration, and the XREF check.

The per-integration loop: a median template is built from a bounded sample of
integrations, then each integration is read, measured and dropped, so memory does not
grow with the number of integrations. :class:`PositionTracker` is shared with
``tsotools photometry``, which measures positions in the same pass as its apertures.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
from astropy.table import Table

from .. import dqflags
from ..algorithms import centroids as cen
from ..errors import ProductError
from ..io import open_product, write_table
from ..progress import progress_bar

__all__ = ["PositionTracker", "integration_table_times", "run_centroid"]

log = logging.getLogger(__name__)

#: DQ bits that make a pixel unusable for positions and photometry.
BAD_PIXEL_BITS = dqflags.DO_NOT_USE | dqflags.NON_SCIENCE | dqflags.REFERENCE_PIXEL
#: Rows on each side of the grism trace summed into the 1D spectrum (half height, pixels).
SPECTRUM_HALFWIDTH_PX = 2.5
#: Rows on each side of the trace used for the cross-dispersion (trace offset) fit, pixels.
TRACE_BOX_HALFWIDTH_PX = 8
#: Margin around the donut in the automatic box, pixels.
DONUT_MARGIN_PX = 10
_MEASURE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


def _bad_mask(dq, sci):
    return ((dq & BAD_PIXEL_BITS) != 0) | ~np.isfinite(sci)


def _is_weak_lens(info) -> bool:
    pupil = (info.pupil or "").upper()
    return pupil.startswith("WL") or (info.filter or "").upper() == "WLP4"


def integration_table_times(prod):
    """MJD (UTC) and BJD_TDB mid-times and 1-based INT_NUM of every integration in a file."""
    n = prod.nints
    times = prod.integration_times()
    if times is None:
        log.warning("%s: no usable INT_TIMES table; MJD and BJD_TDB are NaN", prod.path)
        return np.arange(prod.info.intstart, prod.info.intstart + n), np.full(n, np.nan), np.full(n, np.nan)
    return (np.asarray(times["int_num"], dtype=np.int32), np.asarray(times["mjd_mid"], dtype=float),
            np.asarray(times["bjd_mid"], dtype=float))


class PositionTracker:
    """Measure the star's position integration by integration (imaging or grism).

    Parameters
    ----------
    prod : Product
        Open rateints, calints or grism cutout.
    params : CentroidParams
    guess : tuple of float, optional
        Starting (x, y), 0-based pixels of the file's frame; default XREF_SCI/YREF_SCI,
        else the brightest part of the median frame.

    Attributes
    ----------
    template : float64 ndarray, shape (ny, nx)
        Median of the sampled integrations (flagged pixels NaN), DN/s.
    method : str
        Method used ("xcorr", "com", "gauss2d"; "xcorr" for grism).
    x0, y0 : float
        Absolute position of the star in the template (imaging), 0-based pixels; for
        grism, XREF and the trace centre at column XREF.
    donut_radius : float or None
        Outer radius of the weak-lens donut, pixels (xcorr on imaging).
    """

    def __init__(self, prod, params: cen.CentroidParams, guess=None):
        self.prod = prod
        self.params = params
        info = prod.info
        self.info = info
        self.grism = info.is_grism
        if info.kind not in ("rateints", "calints", "cutout"):
            raise ProductError(f"{prod.path}: this is a {info.kind} product; centroid needs rateints, calints or a cutout")
        self.shape = prod.shape("SCI")[1:]
        self.origin = info.cutout_origin or (0, 0)
        self.has_err = prod.has("ERR")
        self.has_dq = prod.has("DQ")
        self.donut_radius = None
        self._build_template()
        if self.grism:
            if params.method in ("com", "gauss2d"):
                raise ProductError(
                    f"{prod.path}: grism positions are measured by cross-correlation; use --method auto or xcorr")
            self.method = "xcorr"
            self._prepare_grism()
        else:
            self._prepare_imaging(guess)

    # ------------------------------------------------------------------ reading
    def read(self, i):
        """Integration ``i``: (sci, err, bad) with flagged pixels NaN in ``sci``."""
        sci = self.prod.read("SCI", i).astype(np.float64)
        dq = self.prod.read("DQ", i) if self.has_dq else np.zeros(sci.shape, np.uint32)
        err = self.prod.read("ERR", i).astype(np.float64) if self.has_err else None
        bad = _bad_mask(dq, sci)
        if err is not None:
            bad |= ~np.isfinite(err)
        sci[bad] = np.nan
        return sci, err, bad

    def _build_template(self):
        n = self.prod.nints
        k = min(self.params.template_ints, n)
        idx = np.unique(np.linspace(0, n - 1, k).round().astype(int))
        frames = np.empty((idx.size,) + self.shape)
        variances = np.empty_like(frames)
        for j, i in enumerate(idx):
            sci, err, bad = self.read(int(i))
            frames[j] = sci
            variances[j] = err**2 if err is not None else np.nan
        self.template = cen.median_frame(frames)
        self.template_var = cen.median_frame(variances) if self.has_err else None
        self.template_ints = idx.size
        if not np.isfinite(self.template).any():
            raise ProductError(f"{self.prod.path}: every pixel is flagged; nothing to measure")
        log.debug("template: median of %d integration(s)", idx.size)

    def _weights(self, sl):
        if self.template_var is None:
            return None
        v = self.template_var[sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(v) & (v > 0), 1.0 / v, 0.0)

    # ------------------------------------------------------------------ imaging
    def _prepare_imaging(self, guess):
        info, p = self.info, self.params
        tmpl = self.template
        ny, nx = self.shape
        bkg = float(np.nanmedian(tmpl))
        sub = np.nan_to_num(tmpl - bkg)
        if guess is not None:
            gx, gy = (float(v) - o for v, o in zip(guess, self.origin))
            source = "--guess"
        elif info.xref is not None and info.yref is not None and 0 <= info.xref - self.origin[0] < nx \
                and 0 <= info.yref - self.origin[1] < ny:
            gx, gy = info.xref - self.origin[0], info.yref - self.origin[1]
            source = "XREF_SCI/YREF_SCI"
        else:
            from scipy import ndimage

            smooth = ndimage.uniform_filter(sub, size=5)
            gy, gx = (float(v) for v in np.unravel_index(np.argmax(smooth), smooth.shape))
            source = "the brightest part of the median frame"
        if not (0 <= gx < nx and 0 <= gy < ny):
            raise ProductError(f"{self.prod.path}: starting position ({gx:.1f}, {gy:.1f}) is outside the "
                               f"{nx} x {ny} frame; give --guess X,Y")
        method = p.method
        extended = _is_weak_lens(info)
        if method == "auto":
            method = "xcorr" if extended else "gauss2d"
        self.method = method
        log.debug("start at (%.2f, %.2f) from %s; method %s", gx, gy, source, method)
        if extended:
            # the centre of mass of the whole frame lands within a few pixels of the donut centre
            yy, xx = np.indices(sub.shape)
            pos = np.clip(sub, 0, None)
            half = 0.25 * min(nx, ny) if p.box is None else p.box / 2
            near = (np.abs(xx - gx) <= half * 2) & (np.abs(yy - gy) <= half * 2)
            wsum = float(np.sum(pos * near))
            if wsum > 0:
                gx, gy = float(np.sum(pos * near * xx) / wsum), float(np.sum(pos * near * yy) / wsum)
            x0, y0, radius, xe, ye = cen.donut_center(tmpl, (gx, gy))
            if not np.isfinite(x0):
                raise ProductError(f"{self.prod.path}: no weak-lens donut edge found near ({gx:.1f}, {gy:.1f}) in the "
                                   f"{nx} x {ny} frame (a donut larger than the subarray cannot be centred); "
                                   "give --guess X,Y if the star is elsewhere")
            self.donut_radius = radius
            box = p.box or 2 * int(math.ceil(radius + DONUT_MARGIN_PX)) + 1
        else:
            side = p.box or 15
            sl = self._box_slices(gx, gy, side)
            res = cen.centroid_gauss2d(tmpl[sl], None, ~np.isfinite(tmpl[sl]))
            if not res.ok:
                res = cen.centroid_com(tmpl[sl], None, ~np.isfinite(tmpl[sl]))
            if not res.ok:
                raise ProductError(f"{self.prod.path}: no star found near ({gx:.1f}, {gy:.1f}); give --guess X,Y")
            x0, y0 = res.x + sl[1].start, res.y + sl[0].start
            width = max(res.width_x, res.width_y, 0.5)
            box = p.box or max(2 * int(math.ceil(4 * width)) + 1, 11)
        self.x0, self.y0 = float(x0), float(y0)
        self.box = int(box)
        self.slices = self._box_slices(self.x0, self.y0, self.box)
        if method == "xcorr":
            self._shift = cen.TemplateShift(self.template[self.slices], self._weights(self.slices))

    def _box_slices(self, x, y, side):
        ny, nx = self.shape
        half = side // 2
        ix, iy = int(round(x)), int(round(y))
        return (slice(max(iy - half, 0), min(iy + half + 1, ny)), slice(max(ix - half, 0), min(ix + half + 1, nx)))

    def _measure_imaging(self, sci, err, bad):
        sl = self.slices
        box = sci[sl]
        oy, ox = sl[0].start, sl[1].start
        if self.method == "xcorr":
            res = self._shift.fit(box)
            if not res.converged or not np.all(np.isfinite(res.shift)):
                return cen.CentroidResult.failed()
            x, y = self.x0 + res.shift[0], self.y0 + res.shift[1]
            sub = box - res.offset
            wx, wy = cen.moment_widths(sub, x - ox, y - oy, bad[sl])
            return cen.CentroidResult(x, y, res.shift_err[0], res.shift_err[1], wx, wy, float(np.nanmax(box)))
        errbox = err[sl] if err is not None else None
        func = cen.centroid_gauss2d if self.method == "gauss2d" else cen.centroid_com
        res = func(box, errbox, bad[sl])
        if not res.ok:
            return res
        return cen.CentroidResult(res.x + ox, res.y + oy, res.x_err, res.y_err, res.width_x, res.width_y, res.peak)

    # -------------------------------------------------------------------- grism
    def _prepare_grism(self):
        info = self.info
        tmpl = self.template
        ny, nx = self.shape
        mask = ~np.isfinite(tmpl)
        try:
            self.trace = cen.fit_trace(tmpl, mask=mask)
        except ValueError as exc:
            raise ProductError(f"{self.prod.path}: {exc}") from None
        self.xref_local = (info.xref - self.origin[0]) if info.xref is not None else None
        if self.xref_local is None or not 0 <= self.xref_local < nx:
            self.xref_local = float(self.trace.x0)
            log.warning("no usable XREF_SCI; grism positions refer to column %.0f", self.xref_local)
        cols = np.arange(nx, dtype=float)
        yc = self.trace.y_at(cols)
        rows = np.arange(ny, dtype=float)[:, None]
        h = SPECTRUM_HALFWIDTH_PX
        self._rowweights = np.clip(np.minimum(rows + 0.5, yc + h) - np.maximum(rows - 0.5, yc - h), 0.0, 1.0)
        filled = np.nan_to_num(tmpl)
        spec = np.sum(filled * self._rowweights, axis=0)
        ref = np.percentile(spec, 95)
        lit = np.flatnonzero(spec > 0.02 * ref)
        if lit.size < 16:
            raise ProductError(f"{self.prod.path}: the grism spectrum covers too few columns")
        geo = info.geometry
        refcols = set()
        if geo is not None and self.origin == (0, 0) and geo.nx == nx:
            refcols = set(int(c) for c in geo.reference_columns)
        c0, c1 = max(int(lit[0]) - 10, 0), min(int(lit[-1]) + 11, nx)
        while c0 in refcols:
            c0 += 1
        while (c1 - 1) in refcols:
            c1 -= 1
        self._cols = slice(c0, c1)
        if geo is not None and geo.nx >= nx:
            amp = geo.amplifier_map()[self.origin[0] : self.origin[0] + nx]
        else:
            amp = np.zeros(nx, dtype=int)
        labels = amp[c0:c1]
        var = self.template_var
        if var is not None:
            colvar = np.sum(np.where(np.isfinite(var), var, np.inf) * self._rowweights**2, axis=0)[c0:c1]
            with np.errstate(divide="ignore"):
                w1 = np.where(np.isfinite(colvar) & (colvar > 0), 1.0 / colvar, 0.0)
        else:
            w1 = None
        self._shift1d = cen.TemplateShift(spec[c0:c1], w1, offset_labels=labels)
        r0 = max(int(math.floor(yc[c0:c1].min())) - TRACE_BOX_HALFWIDTH_PX, 0)
        r1 = min(int(math.ceil(yc[c0:c1].max())) + TRACE_BOX_HALFWIDTH_PX + 1, ny)
        self.slices = (slice(r0, r1), slice(c0, c1))
        self._shift2d = cen.TemplateShift(tmpl[self.slices], self._weights(self.slices),
                                          offset_labels=np.broadcast_to(labels, (r1 - r0, c1 - c0)))
        self.x0 = float(self.xref_local)
        self.y0 = float(self.trace.y_at(self.xref_local))
        self.box = int(r1 - r0)
        self._trace_rows = yc

    def _measure_grism(self, sci, err, bad):
        spec = np.sum(np.where(bad, 0.0, sci) * self._rowweights, axis=0)[self._cols]
        # columns with a flagged pixel inside the spectrum rows are left out of the 1D fit
        badcol = np.any(bad & (self._rowweights > 0), axis=0)[self._cols]
        spec = np.where(badcol, np.nan, spec)
        r1 = self._shift1d.fit(spec)
        r2 = self._shift2d.fit(sci[self.slices])
        if not (r1.converged and np.isfinite(r1.shift[0]) and np.isfinite(r2.shift[1])):
            return cen.CentroidResult.failed()
        x = self.x0 + r1.shift[0]
        y = self.y0 + r2.shift[1]
        sl = self.slices
        rows = np.arange(sl[0].start, sl[0].stop, dtype=float)[:, None]
        box = np.where(bad[sl], 0.0, sci[sl] - r2.offset)
        pos = np.clip(box, 0, None)
        yc = self._trace_rows[sl[1]][None, :] + r2.shift[1]
        total = pos.sum()
        width_y = math.sqrt(float(np.sum(pos * (rows - yc) ** 2) / total)) if total > 0 else np.nan
        return cen.CentroidResult(x, y, r1.shift_err[0], r2.shift_err[1], np.nan, width_y, float(np.nanmax(sci[sl])))

    # ------------------------------------------------------------------- public
    def measure(self, sci, err, bad) -> cen.CentroidResult:
        """Position of the star in one integration, in the file's science frame.

        ``sci`` has flagged pixels NaN (see :meth:`read`). Returns NaNs on failure.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = self._measure_grism(sci, err, bad) if self.grism else self._measure_imaging(sci, err, bad)
        if not res.ok:
            return res
        ox, oy = self.origin
        return cen.CentroidResult(res.x + ox, res.y + oy, res.x_err, res.y_err, res.width_x, res.width_y, res.peak)

    @property
    def reference_xy(self):
        """XREF/YREF (0-based, file's science frame) or None."""
        if self.info.xref is None or self.info.yref is None:
            return None
        return self.info.xref, self.info.yref


def measure_all(tracker: PositionTracker, progress=True, description="centroid"):
    """Measure every integration; returns arrays and the count of failures.

    Returns
    -------
    dict of float ndarray, shape (nints,)
        X, Y, X_ERR, Y_ERR, WIDTH_X, WIDTH_Y, PEAK; and ``failed`` (bool).
    """
    n = tracker.prod.nints
    out = {k: np.full(n, np.nan) for k in ("X", "Y", "X_ERR", "Y_ERR", "WIDTH_X", "WIDTH_Y", "PEAK")}
    failed = np.zeros(n, dtype=bool)
    with progress_bar(description, n, progress) as advance:
        for i in range(n):
            sci, err, bad = tracker.read(i)
            try:
                res = tracker.measure(sci, err, bad)
            except _MEASURE_ERRORS as exc:
                log.debug("integration %d: %s", i + 1, exc)
                res = cen.CentroidResult.failed()
            if res.ok:
                for key, value in zip(out, (res.x, res.y, res.x_err, res.y_err, res.width_x, res.width_y, res.peak)):
                    out[key][i] = value
            else:
                failed[i] = True
                log.warning("integration %d: no position measured (NaN, FLAG %d)", tracker.info.intstart + i,
                            cen.FLAG_FAILED)
            advance()
    out["failed"] = failed
    return out


def offsets_from_reference(tracker: PositionTracker, x, y):
    """Median position and its offset from XREF/YREF (dx NaN for grism: not measured)."""
    xm = float(np.nanmedian(x)) if np.isfinite(x).any() else np.nan
    ym = float(np.nanmedian(y)) if np.isfinite(y).any() else np.nan
    ref = tracker.reference_xy
    if ref is None:
        return xm, ym, np.nan, np.nan
    dx = np.nan if tracker.grism else xm - ref[0]
    return xm, ym, dx, ym - ref[1]


def run_centroid(input_path, output_path, *, params: cen.CentroidParams | None = None, guess=None,
                 excursion: cen.ExcursionParams | None = None, overwrite=False, progress=True) -> dict:
    """Measure the star's position in every integration and write a table.

    Parameters
    ----------
    input_path : path-like
        Imaging or grism rateints/calints, or a grism cutout.
    output_path : path-like
        ``.ecsv`` or ``.fits`` table: INT_NUM, MJD, BJD_TDB, X, Y, X_ERR, Y_ERR,
        WIDTH_X, WIDTH_Y, PEAK, FLAG (0-based pixels in the file's science frame).
    params : CentroidParams
    guess : tuple of float, optional
        Starting (x, y), 0-based pixels.
    excursion : ExcursionParams
        Settings of the antenna-move flagging.
    overwrite : bool
        Replace an existing output.
    progress : bool
        Show a progress bar on a terminal.

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or cen.CentroidParams()
    excursion = excursion or cen.ExcursionParams()
    t0 = time.perf_counter()
    with open_product(input_path, expect=("rateints", "calints", "cutout"), tool="centroid") as prod:
        tracker = PositionTracker(prod, params, guess)
        int_num, mjd, bjd = integration_table_times(prod)
        res = measure_all(tracker, progress)
        unit = str(prod.header("SCI").get("BUNIT", "DN/s")).strip() or "DN/s"
        info = prod.info
    n = len(int_num)
    flags = np.where(res["failed"], cen.FLAG_FAILED, 0).astype(np.int16)
    excursions = cen.flag_excursions(res["X"], res["Y"], excursion)
    flags[excursions & ~res["failed"]] |= cen.FLAG_EXCURSION
    xm, ym, dx, dy = offsets_from_reference(tracker, res["X"], res["Y"])
    table = Table()
    table["INT_NUM"] = np.asarray(int_num, dtype=np.int32)
    table["MJD"] = mjd
    table["MJD"].unit = "d"
    table["BJD_TDB"] = bjd
    table["BJD_TDB"].unit = "d"
    for key in ("X", "Y", "X_ERR", "Y_ERR", "WIDTH_X", "WIDTH_Y"):
        table[key] = res[key]
        table[key].unit = "pix"
    table["PEAK"] = res["PEAK"]
    table["PEAK"].unit = unit
    table["FLAG"] = flags
    meta = {
        "INPUT": str(info.path).rsplit("/", 1)[-1],
        "MODE": "grism" if tracker.grism else "imaging",
        "METHOD": tracker.method,
        "BOXSIZE": tracker.box,
        "TEMPLINT": tracker.template_ints,
        "XMEDIAN": xm,
        "YMEDIAN": ym,
        "TOLERANC": params.tolerance_px,
    }
    ref = tracker.reference_xy
    exceeded = False
    if ref is not None:
        meta["XREF"], meta["YREF"] = ref
        if np.isfinite(dx):
            meta["XOFFSET"] = dx
        if np.isfinite(dy):
            meta["YOFFSET"] = dy
        exceeded = bool(any(np.isfinite(v) and abs(v) > params.tolerance_px for v in (dx, dy)))
        meta["OFFSETOK"] = not exceeded
    if tracker.donut_radius is not None:
        meta["DONUTRAD"] = tracker.donut_radius
    if tracker.grism:
        meta["TRWIDTH"] = tracker.trace.width
        meta["COMMENT"] = [
            "X: XREF plus the spectrum shift along dispersion relative to the median spectrum",
            "Y: trace centre at column XREF; WIDTH_Y: rms cross-dispersion width",
        ]
    for bit, (name, text) in cen.FLAG_BITS.items():
        meta[f"FLAG{bit}"] = f"{name}: {text}"
    meta = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in meta.items()}
    table.meta.update(meta)
    write_table(table, output_path, tool="centroid", overwrite=overwrite, inputs=(str(input_path),),
                params={"method": tracker.method, "box": tracker.box, "tolerance": params.tolerance_px,
                        "guess": "none" if guess is None else guess})
    nfail = int(res["failed"].sum())
    nexc = int(np.count_nonzero(flags & cen.FLAG_EXCURSION))
    if ref is None:
        offset_text = "no XREF_SCI/YREF_SCI to compare with"
    elif tracker.grism:
        offset_text = f"trace at column XREF is {dy:+.3f} px from YREF_SCI"
    else:
        offset_text = f"median position is ({dx:+.3f}, {dy:+.3f}) px from XREF_SCI/YREF_SCI"
    if exceeded:
        log.warning("%s, more than --tolerance %.2f px: the pipeline's fixed aperture would be off the star",
                    offset_text, params.tolerance_px)
    message = (f"{n} integration(s), {tracker.method}: median ({xm:.3f}, {ym:.3f}); {offset_text}; "
               f"{nexc} in position excursions, {nfail} failed; wrote {output_path}")
    summary = {
        "input": str(input_path),
        "output": str(output_path),
        "nints": n,
        "mode": meta["MODE"],
        "method": tracker.method,
        "box": tracker.box,
        "median_x": xm,
        "median_y": ym,
        "xref": None if ref is None else ref[0],
        "yref": None if ref is None else ref[1],
        "x_offset": None if not np.isfinite(dx) else dx,
        "y_offset": None if not np.isfinite(dy) else dy,
        "tolerance": params.tolerance_px,
        "offset_exceeds_tolerance": exceeded,
        "n_excursion": nexc,
        "n_failed": nfail,
        "seconds": round(time.perf_counter() - t0, 3),
        "message": message,
    }
    return summary
