"""``tsotools photometry``: aperture photometry per integration that follows the star.

One pass over the integrations (two for ``--position fixed`` without a centroid table):
each integration is read, its position measured (or taken from ``--centroids``), its
flagged pixels inside the apertures filled from the median frame, and every radius
measured; only per-integration numbers are kept, so memory does not grow with NINTS.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
from astropy.table import Table

from ..algorithms import centroids as cen
from ..algorithms import photometry as ph
from ..errors import ProductError
from ..io import open_product, read_table, write_table
from ..progress import progress_bar
from .centroid import PositionTracker, integration_table_times, measure_all

__all__ = ["run_photometry"]

log = logging.getLogger(__name__)

#: Multiples of the median frame's 97% encircled-flux radius tried by ``--radius auto``.
AUTO_RADIUS_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5)
#: Gap between the largest aperture and the automatic annulus, pixels.
ANNULUS_GAP_PX = 5.0
#: Smallest width of the automatic annulus, pixels.
ANNULUS_MIN_WIDTH_PX = 10.0
_SUM_COLUMNS = ("aperture_sum", "aperture_sum_err", "aperture_bkg", "aperture_bkg_err",
                "net_aperture_sum", "net_aperture_sum_err")
_SKY_COLUMNS = ("annulus_sum", "annulus_sum_err", "annulus_mean", "annulus_mean_err")


def _read_centroids(path, prod):
    """X, Y (0-based) per integration of ``prod`` from a centroid table, and its FLAG."""
    tab = read_table(path)
    missing = [c for c in ("X", "Y") if c not in tab.colnames]
    if missing:
        raise ProductError(f"{path}: not a centroid table (no {', '.join(missing)} column)")
    n = prod.nints
    if "INT_NUM" in tab.colnames:
        wanted = np.arange(prod.info.intstart, prod.info.intstart + n)
        nums = np.asarray(tab["INT_NUM"], dtype=int)
        lookup = {int(k): j for j, k in enumerate(nums)}
        absent = [int(k) for k in wanted if int(k) not in lookup]
        if absent:
            raise ProductError(f"{path}: no row for integration {absent[0]} of {prod.path}")
        rows = np.array([lookup[int(k)] for k in wanted])
    elif len(tab) == n:
        rows = np.arange(n)
    else:
        raise ProductError(f"{path}: {len(tab)} rows but {prod.path} has {n} integrations")
    x = np.asarray(tab["X"], dtype=float)[rows]
    y = np.asarray(tab["Y"], dtype=float)[rows]
    flag = np.asarray(tab["FLAG"], dtype=int)[rows] if "FLAG" in tab.colnames else np.zeros(n, dtype=int)
    wx = np.asarray(tab["WIDTH_X"], dtype=float)[rows] if "WIDTH_X" in tab.colnames else np.full(n, np.nan)
    wy = np.asarray(tab["WIDTH_Y"], dtype=float)[rows] if "WIDTH_Y" in tab.colnames else np.full(n, np.nan)
    return x, y, flag, wx, wy


def _per_pixel(unit: str):
    """``unit`` per pixel as an astropy unit (the string itself if astropy cannot parse it)."""
    import astropy.units as u

    try:
        return u.Unit(unit) / u.pix
    except ValueError:
        return f"({unit}) / pix"


def _auto_radii(tracker: PositionTracker, x, y):
    tmpl = tracker.template
    sub = tmpl - float(np.nanmedian(tmpl))
    ny, nx = tmpl.shape
    edge = min(x + 0.5, y + 0.5, nx - 0.5 - x, ny - 0.5 - y)
    try:
        r97 = ph.curve_of_growth_radius(sub, x, y, 0.97, rmax=edge)
    except ValueError as exc:
        raise ProductError(f"{tracker.prod.path}: cannot size the apertures ({exc}); give --radius") from None
    if tracker.donut_radius is not None:  # the donut edge is sharper than its faint wings
        r97 = min(r97, tracker.donut_radius + 2.0)
    radii = [round(f * r97, 1) for f in AUTO_RADIUS_FACTORS if f * r97 + ANNULUS_GAP_PX + 3 < edge]
    if not radii:
        radii = [round(min(r97, edge - ANNULUS_GAP_PX - 3), 1)]
    if radii[0] <= 0:
        raise ProductError(f"{tracker.prod.path}: the star is too close to the frame edge for an aperture")
    return tuple(dict.fromkeys(radii))


def _auto_annulus(rmax, shape, x, y):
    rin = rmax + ANNULUS_GAP_PX
    rout = rin + max(ANNULUS_MIN_WIDTH_PX, 0.3 * rmax)
    return rin, rout


def run_photometry(input_path, output_path, *, params: ph.PhotometryParams | None = None,
                   centroid_params: cen.CentroidParams | None = None, centroids_path=None, guess=None,
                   overwrite=False, progress=True) -> dict:
    """Aperture photometry of every integration of an imaging time series.

    Parameters
    ----------
    input_path : path-like
        Imaging rateints or calints (NRC_TSIMAGE).
    output_path : path-like
        ``.ecsv`` or ``.fits`` table with the pipeline's ``_phot.ecsv`` columns plus a
        column set per radius (suffix ``_r<radius>``) and ``flux``/``flux_err``.
    params : PhotometryParams
    centroid_params : CentroidParams
        How positions are measured when no ``centroids_path`` is given.
    centroids_path : path-like, optional
        A ``tsotools centroid`` table to take positions from.
    guess : tuple of float, optional
        Starting (x, y) for the centroids, 0-based pixels.
    overwrite, progress : bool

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or ph.PhotometryParams()
    centroid_params = centroid_params or cen.CentroidParams()
    t0 = time.perf_counter()
    inputs = (str(input_path),) + ((str(centroids_path),) if centroids_path else ())
    with open_product(input_path, expect=("rateints", "calints"), tool="photometry") as prod:
        info = prod.info
        if info.is_grism:
            raise ProductError(f"{input_path}: grism data; photometry is for imaging (use spectra for grism)")
        n = prod.nints
        tracker = PositionTracker(prod, centroid_params, guess)
        int_num, mjd, bjd = integration_table_times(prod)
        unit = str(prod.header("SCI").get("BUNIT", "DN/s")).strip() or "DN/s"

        # ---------------------------------------------------------------- positions
        given = None
        if centroids_path is not None:
            given = _read_centroids(centroids_path, prod)
            source = f"centroids from {centroids_path}"
        elif params.position == "fixed":
            res = measure_all(tracker, progress, description="centroid")
            excursion = cen.flag_excursions(res["X"], res["Y"])
            flag = np.where(res["failed"], cen.FLAG_FAILED, 0) | np.where(excursion, cen.FLAG_EXCURSION, 0)
            given = (res["X"], res["Y"], flag, res["WIDTH_X"], res["WIDTH_Y"])
            source = "centroids measured in a first pass"
        else:
            source = f"centroids measured per integration ({tracker.method})"
        if params.position == "xref":
            ref = tracker.reference_xy
            if ref is None:
                raise ProductError(f"{input_path}: no XREF_SCI/YREF_SCI in the SCI header; use --position moving")
            fixed_xy = ref
        elif params.position == "fixed":
            gx, gy = given[0], given[1]
            if not np.isfinite(gx).any():
                raise ProductError(f"{input_path}: no centroid measured; cannot place a fixed aperture")
            fixed_xy = (float(np.nanmedian(gx)), float(np.nanmedian(gy)))
        else:
            fixed_xy = None
        start_xy = fixed_xy or (tracker.x0, tracker.y0)

        radii = params.radii or _auto_radii(tracker, *start_xy)
        annulus = params.annulus or _auto_annulus(max(radii), tracker.shape, *start_xy)
        if annulus[0] < max(radii):
            raise ProductError(f"--annulus inner radius {annulus[0]:g} is inside the largest aperture ({max(radii):g})")
        log.info("apertures %s px, annulus %g-%g px, position %s (%s)",
                 ", ".join(f"{r:g}" for r in radii), annulus[0], annulus[1], params.position, source)

        # ---------------------------------------------------------------- photometry
        nr = len(radii)
        cols = {k: np.full((nr, n), np.nan) for k in _SUM_COLUMNS}
        sky = {k: np.full(n, np.nan) for k in _SKY_COLUMNS}
        cx, cy = np.full(n, np.nan), np.full(n, np.nan)
        wx, wy = np.full(n, np.nan), np.full(n, np.nan)
        ax, ay = np.full(n, np.nan), np.full(n, np.nan)
        flags = np.zeros(n, dtype=np.int16)
        nfilled = np.zeros(n, dtype=np.int32)
        template = np.nan_to_num(tracker.template)
        template_err = np.sqrt(np.nan_to_num(tracker.template_var)) if tracker.template_var is not None else None
        rbig = max(radii)
        with progress_bar("photometry", n, progress) as advance:
            for i in range(n):
                sci, err, bad = tracker.read(i)
                if given is not None:
                    pos = (given[0][i], given[1][i])
                    widths = (given[3][i], given[4][i])
                    if given[2][i] & cen.FLAG_EXCURSION:
                        flags[i] |= ph.FLAG_EXCURSION
                else:
                    try:
                        res = tracker.measure(sci, err, bad)
                    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                        res = cen.CentroidResult.failed()
                    pos, widths = (res.x, res.y), (res.width_x, res.width_y)
                cx[i], cy[i] = pos
                wx[i], wy[i] = widths
                x, y = fixed_xy if fixed_xy is not None else pos
                if not (np.isfinite(x) and np.isfinite(y)):
                    flags[i] |= ph.FLAG_FAILED
                    log.warning("integration %d: no position; photometry NaN (FLAG %d)", int_num[i], ph.FLAG_FAILED)
                    advance()
                    continue
                ax[i], ay[i] = x, y
                # fill flagged pixels inside the largest aperture from the median frame
                sl, w = ph.aperture_weights(sci.shape, x, y, rbig)
                if w is not None:
                    fill = bad[sl] & (w > 0)
                    if fill.any():
                        nfilled[i] = int(fill.sum())
                        box = sci[sl]
                        box[fill] = template[sl][fill]
                        if err is not None:
                            eb = err[sl]
                            eb[fill] = template_err[sl][fill]
                        flags[i] |= ph.FLAG_FILLED
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        out = ph.measure_apertures(sci, x, y, radii, annulus, err=err, mask=bad,
                                                   background=params.background, clip_sigma=params.clip_sigma)
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    flags[i] |= ph.FLAG_FAILED
                    log.warning("integration %d: photometry failed (%s); NaN, FLAG %d", int_num[i], exc,
                                ph.FLAG_FAILED)
                    advance()
                    continue
                for k, r in enumerate(out):
                    for key in _SUM_COLUMNS:
                        cols[key][k, i] = getattr(r, key)
                for key in _SKY_COLUMNS:
                    sky[key][i] = getattr(out[0], key)
                advance()
        if given is None:
            excursion = cen.flag_excursions(cx, cy)
            flags[excursion & ((flags & ph.FLAG_FAILED) == 0)] |= ph.FLAG_EXCURSION

    # -------------------------------------------------------------------- choose
    scatter = [ph.point_to_point_scatter(f) for f in cols["net_aperture_sum"]]
    if params.radii is None:
        best = ph.choose_radius(cols["net_aperture_sum"])
    else:
        best = 0
    radius = radii[best]
    flux, flux_err, reference = ph.correct_dilution(cols["net_aperture_sum"][best],
                                                    cols["net_aperture_sum_err"][best], params.dilution)

    table = Table()
    table["INT_NUM"] = np.asarray(int_num, dtype=np.int32)
    table["MJD"] = mjd
    table["BJD_TDB"] = bjd
    for key in ("aperture_sum", "aperture_sum_err"):
        table[key] = cols[key][best]
    for key in _SKY_COLUMNS:
        table[key] = sky[key]
    for key in ("aperture_bkg", "aperture_bkg_err", "net_aperture_sum", "net_aperture_sum_err"):
        table[key] = cols[key][best]
    table["aperture_x"], table["aperture_y"] = ax, ay
    table["centroid_x"], table["centroid_y"] = cx, cy
    table["psf_width_x"], table["psf_width_y"] = wx, wy
    table["flux"], table["flux_err"] = flux, flux_err
    for k, r in enumerate(radii):
        suffix = ph.radius_label(r)
        for key in _SUM_COLUMNS:
            table[f"{key}_{suffix}"] = cols[key][k]
    table["filled_pixels"] = nfilled
    table["FLAG"] = flags
    for name in table.colnames:
        if name in ("MJD", "BJD_TDB"):
            table[name].unit = "d"
        elif name.startswith(("aperture_x", "aperture_y", "centroid_", "psf_width")):
            table[name].unit = "pix"
        elif name.startswith(("aperture_sum", "aperture_bkg", "net_aperture", "annulus_sum", "flux")):
            table[name].unit = unit
        elif name.startswith("annulus_mean"):
            table[name].unit = _per_pixel(unit)
    table.meta.update({
        "INPUT": str(input_path).rsplit("/", 1)[-1],
        "RADIUS": float(radius),
        "RADII": ",".join(f"{r:g}" for r in radii),
        "RADAUTO": params.radii is None,
        "ANN_IN": float(annulus[0]),
        "ANN_OUT": float(annulus[1]),
        "POSITION": params.position,
        "POSSRC": "table" if centroids_path else tracker.method,
        "BKGMETH": params.background,
        "DILUTION": float(params.dilution),
        "SCATTER": ",".join(f"{s * 1e6:.1f}" if np.isfinite(s) else "nan" for s in scatter),
    })
    if params.dilution:
        table.meta["DILREF"] = float(reference)
    for bit, (name, text) in ph.FLAG_BITS.items():
        table.meta[f"FLAG{bit}"] = f"{name}: {text}"
    write_table(table, output_path, tool="photometry", overwrite=overwrite, inputs=inputs,
                params={"radius": radius, "radii": list(radii), "annulus": list(annulus),
                        "position": params.position, "background": params.background,
                        "dilution": params.dilution})
    nfail = int(np.count_nonzero(flags & ph.FLAG_FAILED))
    nexc = int(np.count_nonzero(flags & ph.FLAG_EXCURSION))
    best_ppm = scatter[best] * 1e6 if np.isfinite(scatter[best]) else math.nan
    if params.radii is None:
        choice = f"radius {radius:g} px chosen by --radius auto (lowest point-to-point scatter, {best_ppm:.0f} ppm)"
    else:
        choice = f"radius {radius:g} px (point-to-point scatter {best_ppm:.0f} ppm)"
    if params.dilution:
        choice += f"; dilution {params.dilution:g} removed ({params.dilution * reference:.6g} {unit})"
    message = f"{n} integration(s), {params.position} aperture: {choice}; {nexc} in excursions, {nfail} failed; wrote {output_path}"
    return {
        "input": str(input_path),
        "output": str(output_path),
        "nints": n,
        "position": params.position,
        "radius": float(radius),
        "radii": [float(r) for r in radii],
        "scatter_ppm": {f"{r:g}": (s * 1e6 if np.isfinite(s) else None) for r, s in zip(radii, scatter)},
        "annulus": [float(a) for a in annulus],
        "background": params.background,
        "dilution": float(params.dilution),
        "n_excursion": nexc,
        "n_failed": nfail,
        "n_filled": int(np.count_nonzero(nfilled)),
        "seconds": round(time.perf_counter() - t0, 3),
        "message": message,
    }
