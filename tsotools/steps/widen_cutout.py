"""``tsotools widen-cutout``: a taller grism cutout (SlitModel) from full-subarray rateints.

The pipeline's ``extract_2d`` keeps 64 rows from row 0 whatever the subarray (JDox NC-TS02);
this cuts ``--height`` rows (default: the whole subarray) centred on the measured trace,
copies SCI/ERR/DQ/VAR_* row for row, attaches a 2D WAVELENGTH and the INT_TIMES table, and
writes the SlitModel keywords (SLTSTRT/SLTSIZE, SRCXPOS/SRCYPOS, XREF_SCI/YREF_SCI in the
cutout frame). One integration is read and written at a time.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from astropy.io import fits

from .. import dqflags as dqf
from ..algorithms import extraction as ex
from ..algorithms.cutouts import CutoutParams, default_height, plan_cutout
from ..algorithms.wavelengths import GRISMR_FILTERS, wavelength_image
from ..errors import ProductError
from ..io import ImageSpec, new_product, open_product, read_rows
from ..progress import progress_bar

__all__ = ["TRACE_SAMPLE_INTS", "run_widen_cutout"]

log = logging.getLogger(__name__)

#: Integrations (spread over the exposure) whose median image locates the trace.
TRACE_SAMPLE_INTS = 25
_CUBES = ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


def _trace_row(prod, xref) -> float:
    """Trace centre row at column XREF (or the median over the traced columns)."""
    n = prod.nints
    take = np.unique(np.linspace(0, n - 1, min(n, TRACE_SAMPLE_INTS)).round().astype(int))
    frames = []
    for i in take:
        sci = prod.read("SCI", int(i)).astype(np.float32)
        if prod.has("DQ"):
            dq = prod.read("DQ", int(i))
            sci[(dq & (dqf.DO_NOT_USE | dqf.REFERENCE_PIXEL | dqf.NON_SCIENCE)) != 0] = np.nan
        frames.append(sci)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.stack(frames), axis=0)
    del frames
    good = np.isfinite(median)
    params = ex.ExtractionParams(bkg_inner_px=8.0, optimal_halfwidth_px=4.0)
    ny = median.shape[0]
    if ny < 24:
        params = ex.ExtractionParams(bkg_inner_px=min(8.0, ny / 3), halfwidth_px=1.0, optimal_halfwidth_px=1.0,
                                     centroid_halfwidth_px=min(4.0, ny / 4))
    try:
        trace = ex.find_trace(median, good, params)
    except ValueError as exc:
        raise ProductError(f"{prod.path}: cannot find the trace to centre on ({exc}); give --center ROW") from None
    nx = median.shape[1]
    if xref is not None and 0 <= xref < nx:
        return float(trace.model(xref))
    return float(np.median(trace.center[trace.used]))


def _wavelengths_from(path, out_rows, nx, x_origin, info):
    """WAVELENGTH (len(out_rows), nx) from a pipeline cutout or x1dints, in this cutout's frame."""
    with open_product(path, expect=("cutout", "x1dints", "rateints", "calints"), tool="widen-cutout") as src:
        sfilt = str(src.info.filter or "").upper()
        if sfilt and info.filter and sfilt != str(info.filter).upper():
            raise ProductError(f"{path}: FILTER={src.info.filter} but the input has FILTER={info.filter}")
        if src.kind == "x1dints":
            lam, start = _x1dints_wavelength(src)
            cols = np.arange(nx) + x_origin - start
            if start is None or len(lam) == 0:
                raise ProductError(f"{path}: no WAVELENGTH column to reuse")
            ok = (cols >= 0) & (cols < len(lam))
            row = np.where(ok, lam[np.clip(cols, 0, len(lam) - 1)], np.nan)
            return np.broadcast_to(row, (len(out_rows), nx)).astype(np.float32), f"x1dints {path}"
        if not src.has("WAVELENGTH"):
            raise ProductError(f"{path}: no WAVELENGTH extension to reuse")
        wl = src.read("WAVELENGTH")
        if wl.ndim == 3:
            wl = wl[0]
        sx, sy = src.info.cutout_origin or (0, 0)
        srows = np.clip(np.asarray(out_rows) - sy, 0, wl.shape[0] - 1)
        outside = int(np.sum((np.asarray(out_rows) - sy < 0) | (np.asarray(out_rows) - sy >= wl.shape[0])))
        cols = np.arange(nx) + x_origin - sx
        ok = (cols >= 0) & (cols < wl.shape[1])
        out = np.where(ok[None, :], wl[srows][:, np.clip(cols, 0, wl.shape[1] - 1)], np.nan).astype(np.float32)
        if outside:
            log.info("%d cutout rows lie outside %s; they take the nearest row's wavelengths (GRISMR wavelength "
                     "depends on the column only)", outside, path)
        return out, f"WAVELENGTH of {path}"


def _x1dints_wavelength(src):
    """WAVELENGTH vector of an x1dints (either layout) and its first column (0-based)."""
    tab = src.read_table("EXTRACT1D")
    lam = np.asarray(tab["WAVELENGTH"], dtype=float)
    if lam.ndim == 2:
        nvalid = int(tab["N_ALONGDISP"][0]) if "N_ALONGDISP" in tab.colnames else lam.shape[1]
        lam = lam[0, :nvalid]
    hdr = src.header("EXTRACT1D")
    start = int(hdr.get("SLTSTRT1", 1)) - 1
    return lam, start


def run_widen_cutout(input_path, output_path, *, params: CutoutParams | None = None, wavelengths_from=None,
                     overwrite: bool = False, progress: bool = True) -> dict:
    """Write a grism cutout of ``params.height`` rows centred on the trace (or a given row).

    Parameters
    ----------
    input_path : path-like
        Full-subarray grism rateints or calints (3D CubeModel).
    output_path : path-like
        The cutout (SlitModel layout).
    params : CutoutParams
    wavelengths_from : path-like, optional
        A pipeline cutout or x1dints whose wavelengths are reused exactly.
    overwrite, progress : bool

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or CutoutParams()
    t0 = time.perf_counter()
    inputs = (str(input_path),) + ((str(wavelengths_from),) if wavelengths_from else ())
    with open_product(input_path, expect=("rateints", "calints", "cutout"), tool="widen-cutout") as prod:
        info = prod.info
        if prod.kind == "cutout":
            raise ProductError(f"{input_path}: already a cutout (SLTSTRT2={info.cutout_origin[1] + 1}); widen-cutout "
                               "needs the full-subarray rateints or calints it was cut from")
        if not info.is_grism:
            raise ProductError(f"{input_path}: EXP_TYPE={info.exp_type}; widen-cutout needs grism data (NRC_TSGRISM)")
        n = prod.nints
        ny, nx = prod.shape("SCI")[1:]
        height = params.height if params.height is not None else default_height(ny)
        if height > ny:
            raise ProductError(f"--height {height} does not fit: {input_path} has {ny} rows")
        if params.center is not None:
            center, how = float(params.center), "given"
            if not 0 <= center < ny:
                raise ProductError(f"--center {center:g} is outside the subarray's rows 0..{ny - 1}")
        else:
            center, how = _trace_row(prod, info.xref), "measured trace"
        y0, clamped = plan_cutout(ny, height, center)
        clamped = clamped and height < ny  # the whole subarray is never "moved"
        if clamped:
            log.warning("a %d-row cutout centred on row %.2f runs past the subarray edge; it was moved to rows %d-%d",
                        height, center, y0, y0 + height - 1)
        rows = np.arange(y0, y0 + height)

        if wavelengths_from is not None:
            wave, wave_source = _wavelengths_from(wavelengths_from, rows, nx, 0, info)
        elif prod.has("WAVELENGTH") and len(prod.shape("WAVELENGTH")) == 2:
            wave, wave_source = prod.read("WAVELENGTH")[y0 : y0 + height].astype(np.float32), "input WAVELENGTH"
        elif str(info.filter or "").upper() in GRISMR_FILTERS:
            xstart = info.geometry.xstart if info.geometry is not None else 0
            wave = wavelength_image((height, nx), str(info.filter).upper(), x_origin=xstart)
            wave_source = f"in-flight GRISMR {str(info.filter).upper()} polynomial"
        else:
            log.warning("no wavelengths for FILTER=%s (no --wavelengths-from, no in-flight solution); WAVELENGTH is NaN",
                        info.filter)
            wave, wave_source = np.full((height, nx), np.nan, dtype=np.float32), "none (NaN)"

        sci_hdr = prod.header("SCI")
        xref_fits = None if info.xref is None else info.xref + 1.0  # validated numbers, FITS 1-based
        yref_fits = None if info.yref is None else info.yref + 1.0
        slt = fits.Header()
        slt["SLTNAME"] = (str(sci_hdr.get("SLTNAME", f"{info.detector or 'NRC'}_GRISM{height}_{info.filter or ''}")),
                          "Slit name")
        slt["SLTSTRT1"] = (1, "Slit starting pixel index along axis 1")
        slt["SLTSIZE1"] = (nx, "Slit size along axis 1")
        slt["SLTSTRT2"] = (y0 + 1, "Slit starting pixel index along axis 2")
        slt["SLTSIZE2"] = (height, "Slit size along axis 2")
        slt["DISPAXIS"] = (1, "Dispersion direction")
        slt["SPORDER"] = (1, "Spectral order number")
        if xref_fits is not None:
            slt["SRCXPOS"] = (float(xref_fits) - 1.0, "Source position in slit (x-axis)")
        if yref_fits is not None:
            slt["YREF_SCI"] = (float(yref_fits) - y0, "Aperture Y reference point in SCI frame")
            slt["SRCYPOS"] = (float(yref_fits) - 1.0 - y0, "Source position in slit (y-axis)")
        else:
            slt["SRCYPOS"] = (center - y0, "Source position in slit (y-axis)")

        planes = [name for name in _CUBES if prod.has(name) and len(prod.shape(name)) == 3]
        specs = []
        for name in planes:
            hdr = prod.header(name)
            if name == "SCI":
                for card in slt.cards:
                    hdr[card.keyword] = (card.value, card.comment)
            specs.append(ImageSpec(name, (n, height, nx), prod.dtype(name), hdr))
            if name == "DQ":
                specs.append(ImageSpec("WAVELENGTH", (height, nx), np.float32,
                                       fits.Header([("EXTNAME", "WAVELENGTH"), ("BUNIT", "um")]), data=wave))
        if "DQ" not in planes:
            specs.append(ImageSpec("WAVELENGTH", (height, nx), np.float32,
                                   fits.Header([("EXTNAME", "WAVELENGTH"), ("BUNIT", "um")]), data=wave))
        if prod.has("INT_TIMES"):
            specs.append(fits.BinTableHDU(prod.read_table("INT_TIMES"), name="INT_TIMES"))
        primary = prod.header("PRIMARY")
        primary["S_EXTR2D"] = ("COMPLETE", "2-D Spectral Extraction")
        run_params = {"height": height, "center": round(center, 3), "center_from": how, "rows": f"{y0}-{y0 + height - 1}",
                      "wavelengths": wave_source}
        writer = new_product(output_path, primary, specs, tool="widen-cutout", params=run_params,
                             overwrite=overwrite, inputs=inputs, datamodel="SlitModel")
        with writer, progress_bar("widen-cutout", n, progress) as advance:
            for i in range(n):
                for name in planes:
                    writer.write(name, i, read_rows(prod, name, i, y0, y0 + height))
                advance()

    elapsed = time.perf_counter() - t0
    summary = {
        "input": str(input_path), "output": str(output_path), "nints": n, "height": height, "rows": [y0, y0 + height - 1],
        "center": center, "center_from": how, "clamped": clamped, "sltstrt2": y0 + 1,
        "yref_sci": None if yref_fits is None else float(yref_fits) - y0, "wavelengths": wave_source,
        "extensions": planes + ["WAVELENGTH"] + (["INT_TIMES"] if "INT_TIMES" in info.extensions else []),
        "seconds": elapsed,
    }
    summary["message"] = (f"wrote {output_path}: rows {y0}-{y0 + height - 1} of {ny} ({height} rows, centred on the "
                          f"{how} at row {center:.2f}{', clamped at the edge' if clamped else ''}), wavelengths from "
                          f"{wave_source}")
    return summary
