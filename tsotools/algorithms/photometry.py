"""Aperture photometry of one frame at a time: exact circular apertures and an annulus sky.

Pure functions on numpy arrays (no file I/O, inputs never modified). Pixel coordinates are
0-based ``(x, y)``; pixel ``[j, i]`` covers ``i - 0.5 <= x < i + 0.5``.

Apertures use photutils' exact circle-pixel overlap (``photutils.geometry.
circular_overlap_grid``, the routine behind ``CircularAperture.to_mask(method="exact")``),
called directly so that several radii cost well under a millisecond per frame. Errors
follow photutils ``aperture_photometry``: ``sqrt(sum(weight * err**2))``. The sky comes
from an annulus (pixel centres inside it), sigma-clipped with astropy, as in the pipeline's
``tso_photometry`` (which subtracts the annulus mean) and Eureka!.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# astropy and photutils are imported where used, so that the command line (which reads
# the defaults of PhotometryParams) starts fast.

__all__ = [
    "BACKGROUND_METHODS",
    "FLAG_FAILED",
    "FLAG_EXCURSION",
    "FLAG_FILLED",
    "FLAG_BITS",
    "POSITION_MODES",
    "ApertureResult",
    "PhotometryParams",
    "aperture_weights",
    "choose_radius",
    "correct_dilution",
    "curve_of_growth_radius",
    "measure_apertures",
    "point_to_point_scatter",
    "radius_label",
    "sky_background",
]

#: Sky estimators of ``--background``.
BACKGROUND_METHODS = ("median", "mean", "plane")
#: Aperture positions of ``--position``.
POSITION_MODES = ("moving", "fixed", "xref")

#: FLAG bit: no photometry for this integration (failed position or no pixels).
FLAG_FAILED = 1
#: FLAG bit: the position is in a sudden excursion (antenna move), from the centroids.
FLAG_EXCURSION = 2
#: FLAG bit: flagged pixels inside the largest aperture were filled from the median frame.
FLAG_FILLED = 4
#: Bit -> (name, description) of the photometry FLAG column.
FLAG_BITS = {
    FLAG_FAILED: ("FAILED", "no photometry (NaN)"),
    FLAG_EXCURSION: ("EXCURSION", "position in a sudden step or excursion (e.g. antenna move)"),
    FLAG_FILLED: ("FILLED", "flagged pixels in the aperture filled from the median frame"),
}


@dataclass(frozen=True)
class PhotometryParams:
    """Settings of ``tsotools photometry``.

    Parameters
    ----------
    radii : tuple of float or None
        Aperture radii, pixels; None ("auto") tries radii around the median frame's 97%
        encircled-flux radius and keeps the one with the lowest point-to-point scatter.
        The pipeline's default is 3 px, made for compact PSFs, not the 70-px weak-lens donut.
    annulus : tuple of float or None
        Inner and outer sky-annulus radii, pixels; None starts 5 px outside the largest
        aperture and is max(10 px, 30% of that radius) wide.
    position : str
        "moving" follows the centroid of every integration; "fixed" uses their median;
        "xref" uses XREF_SCI/YREF_SCI (the pipeline before jwst 1.20).
    background : str
        Sky per pixel from the annulus: "median" (sigma-clipped), "mean" (sigma-clipped),
        or "plane" (a sigma-clipped plane fit, for a sky gradient).
    clip_sigma : float
        Sigma of the annulus clipping (astropy ``sigma_clip``, 5 iterations).
    dilution : float
        Fraction of the out-of-transit flux in the aperture that comes from a neighbour
        (0 for none); removed as a constant flux before the light curve is reported.
    """

    radii: tuple[float, ...] | None = None
    annulus: tuple[float, float] | None = None
    position: str = "moving"
    background: str = "median"
    clip_sigma: float = 3.0
    dilution: float = 0.0

    def __post_init__(self):
        if self.radii is not None:
            try:
                radii = tuple(float(r) for r in self.radii)
            except (TypeError, ValueError):
                raise ValueError(f"radii must be numbers of pixels, got {self.radii!r}") from None
            if not radii or any(not (math.isfinite(r) and r > 0) for r in radii):
                raise ValueError(f"radii must be positive pixels, got {self.radii!r}")
            if len(set(radii)) != len(radii):
                raise ValueError(f"radii must be distinct, got {self.radii!r}")
            object.__setattr__(self, "radii", radii)
        if self.annulus is not None:
            try:
                rin, rout = (float(r) for r in self.annulus)
            except (TypeError, ValueError):
                raise ValueError(f"annulus must be two radii (inner, outer) in pixels, got {self.annulus!r}") from None
            if not (math.isfinite(rin) and math.isfinite(rout) and 0 < rin < rout):
                raise ValueError(f"annulus must satisfy 0 < inner < outer, got {self.annulus!r}")
            if self.radii is not None and rin < max(self.radii):
                raise ValueError(f"annulus inner radius {rin:g} is inside the largest aperture ({max(self.radii):g})")
            object.__setattr__(self, "annulus", (rin, rout))
        if self.position not in POSITION_MODES:
            raise ValueError(f"position must be one of {', '.join(POSITION_MODES)}, got {self.position!r}")
        if self.background not in BACKGROUND_METHODS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUND_METHODS)}, got {self.background!r}")
        if not (math.isfinite(self.clip_sigma) and self.clip_sigma > 0):
            raise ValueError(f"clip_sigma must be positive, got {self.clip_sigma!r}")
        if not (math.isfinite(self.dilution) and 0 <= self.dilution < 1):
            raise ValueError(f"dilution must be in [0, 1), got {self.dilution!r}")


@dataclass(frozen=True)
class ApertureResult:
    """Photometry of one frame in one aperture (units of the frame times pixels).

    Names follow the pipeline's ``_phot.ecsv``: ``annulus_mean`` is the sky per pixel,
    ``aperture_bkg`` the sky in the aperture, ``net_aperture_sum`` their difference.
    """

    radius: float
    area: float
    aperture_sum: float
    aperture_sum_err: float
    annulus_sum: float
    annulus_sum_err: float
    annulus_mean: float
    annulus_mean_err: float
    aperture_bkg: float
    aperture_bkg_err: float
    net_aperture_sum: float
    net_aperture_sum_err: float


def radius_label(radius: float) -> str:
    """Column suffix of a radius: ``r35``, ``r35p5``."""
    return "r" + f"{radius:g}".replace(".", "p").replace("-", "m")


def aperture_weights(shape, x, y, radius, exact=True):
    """Exact fractional overlap of a circle with the pixels of an image.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) of the image.
    x, y : float
        Circle centre, 0-based pixels.
    radius : float
        Radius, pixels.
    exact : bool
        Exact overlap (True) or pixel centres inside (False).

    Returns
    -------
    slices : tuple of slice
        The part of the image the circle's bounding box covers (clipped to the image).
    weights : float64 ndarray
        Overlap fraction (0..1) of each pixel in ``image[slices]``; None when the circle
        does not touch the image.
    """
    from photutils.geometry import circular_overlap_grid

    ny, nx = shape
    x0 = max(int(math.floor(x - radius + 0.5)), 0)
    x1 = min(int(math.floor(x + radius + 0.5)) + 1, nx)
    y0 = max(int(math.floor(y - radius + 0.5)), 0)
    y1 = min(int(math.floor(y + radius + 0.5)) + 1, ny)
    if x1 <= x0 or y1 <= y0:
        return (slice(0, 0), slice(0, 0)), None
    w = circular_overlap_grid(x0 - 0.5 - x, x1 - 0.5 - x, y0 - 0.5 - y, y1 - 0.5 - y,
                              x1 - x0, y1 - y0, float(radius), 1 if exact else 0, 1)
    return (slice(y0, y1), slice(x0, x1)), w


def sky_background(values, xs, ys, method="median", clip_sigma=3.0):
    """Sky per pixel from annulus pixels, sigma-clipped.

    Parameters
    ----------
    values : float ndarray, shape (npix,)
        Annulus pixel values (finite, unflagged), DN/s.
    xs, ys : float ndarray, shape (npix,)
        Their 0-based positions (used by "plane").
    method : str
        "median" (sigma-clipped median), "mean" (sigma-clipped mean) or "plane"
        (least-squares plane ``a + b (x - xm) + c (y - ym)``, refitted after clipping).
    clip_sigma : float
        Clipping threshold in standard deviations (5 iterations).

    Returns
    -------
    model : callable
        ``model(x, y)`` gives the sky per pixel at positions (a constant for median/mean).
    level_err : float
        1-sigma error of the sky level per pixel: std/sqrt(n), times sqrt(pi/2) for the
        median.
    nused : int
        Pixels left after clipping.
    """
    from astropy.stats import mad_std, sigma_clip

    v = np.asarray(values, dtype=float)
    if v.size < 3:
        raise ValueError(f"the sky annulus has {v.size} usable pixels; at least 3 are needed")
    if method in ("median", "mean"):
        clipped = sigma_clip(v, sigma=clip_sigma, maxiters=5, cenfunc="median", stdfunc="mad_std")
        kept = clipped.compressed()
        level = float(np.median(kept) if method == "median" else np.mean(kept))
        err = float(np.std(kept) / math.sqrt(max(kept.size, 1)))
        if method == "median":
            err *= math.sqrt(math.pi / 2)
        return (lambda x, y: np.full(np.shape(x), level) if np.ndim(x) else level), err, int(kept.size)
    if method != "plane":
        raise ValueError(f"method must be one of {', '.join(BACKGROUND_METHODS)}, got {method!r}")
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    xm, ym = float(xs.mean()), float(ys.mean())
    a = np.stack([np.ones_like(xs), xs - xm, ys - ym], axis=1)
    keep = np.ones(v.size, dtype=bool)
    coef = np.zeros(3)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(a[keep], v[keep], rcond=None)
        resid = v - a @ coef
        sig = mad_std(resid[keep])
        new = np.abs(resid) <= clip_sigma * max(sig, 1e-30)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    resid = v[keep] - a[keep] @ coef
    err = float(np.std(resid) / math.sqrt(max(keep.sum(), 1)))
    c0, c1, c2 = (float(c) for c in coef)

    def model(x, y):
        return c0 + c1 * (np.asarray(x, dtype=float) - xm) + c2 * (np.asarray(y, dtype=float) - ym)

    return model, err, int(keep.sum())


def measure_apertures(data, x, y, radii, annulus, err=None, mask=None, background="median",
                      clip_sigma=3.0) -> list[ApertureResult]:
    """Photometry of one frame in several circular apertures with one sky annulus.

    Parameters
    ----------
    data : float ndarray, shape (ny, nx)
        One integration, DN/s (or MJy/sr). Flagged pixels inside the apertures should be
        filled by the caller beforehand; NaN pixels count as zero flux.
    x, y : float
        Aperture centre, 0-based pixels.
    radii : sequence of float
        Aperture radii, pixels.
    annulus : tuple of float
        Inner and outer radius of the sky annulus, pixels (pixel centres inside).
    err : float ndarray, shape (ny, nx), optional
        1-sigma pixel errors; without it the ``*_err`` of the sums are NaN.
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels the sky must not use (DQ flagged, reference pixels).
    background : str
        Sky estimator (see :func:`sky_background`).
    clip_sigma : float
        Annulus clipping threshold.

    Returns
    -------
    list of ApertureResult
        One per radius, in the order given.

    Raises
    ------
    ValueError
        If the annulus has fewer than 3 usable pixels or shapes disagree.
    """
    img = np.asarray(data)
    if img.ndim != 2:
        raise ValueError(f"data must be 2D, got shape {img.shape}")
    if err is not None and np.shape(err) != img.shape:
        raise ValueError(f"err shape {np.shape(err)} differs from data shape {img.shape}")
    if mask is not None and np.shape(mask) != img.shape:
        raise ValueError(f"mask shape {np.shape(mask)} differs from data shape {img.shape}")
    rin, rout = annulus
    # sky annulus: pixel centres with rin <= r < rout
    sl_o, w_o = aperture_weights(img.shape, x, y, rout, exact=False)
    if w_o is None:
        raise ValueError("the sky annulus is off the image")
    sl_i, w_i = aperture_weights(img.shape, x, y, rin, exact=False)
    ann = w_o.astype(bool)
    if w_i is not None:
        inner = np.zeros_like(ann)
        oy, ox = sl_o[0].start, sl_o[1].start
        inner[sl_i[0].start - oy : sl_i[0].stop - oy, sl_i[1].start - ox : sl_i[1].stop - ox] = w_i.astype(bool)
        ann &= ~inner
    cut = np.asarray(img[sl_o], dtype=float)
    use = ann & np.isfinite(cut)
    if mask is not None:
        use &= ~np.asarray(mask[sl_o], dtype=bool)
    if err is not None:
        use &= np.isfinite(np.asarray(err[sl_o], dtype=float))
    yy, xx = np.nonzero(use)
    ys = yy + sl_o[0].start
    xs = xx + sl_o[1].start
    model, level_err, _ = sky_background(cut[use], xs, ys, background, clip_sigma)
    ann_sum = float(np.sum(cut[use]))
    ann_sum_err = float(math.sqrt(np.sum(np.asarray(err[sl_o], dtype=float)[use] ** 2))) if err is not None else np.nan
    level = float(model(float(x), float(y)))
    results = []
    for r in radii:
        sl, w = aperture_weights(img.shape, x, y, r, exact=True)
        if w is None:
            raise ValueError(f"the aperture of radius {r:g} is off the image")
        vals = np.asarray(img[sl], dtype=float)
        good = np.isfinite(vals)
        ap_sum = float(np.sum(np.where(good, vals, 0.0) * w))
        if err is not None:
            e = np.asarray(err[sl], dtype=float)
            ap_err = float(math.sqrt(np.sum(np.where(np.isfinite(e) & good, e, 0.0) ** 2 * w)))
        else:
            ap_err = np.nan
        area = float(w.sum())
        if background == "plane":
            gy, gx = np.mgrid[sl]
            bkg = float(np.sum(w * model(gx, gy)))
        else:
            bkg = level * area
        bkg_err = level_err * area
        net = ap_sum - bkg
        results.append(ApertureResult(
            radius=float(r), area=area, aperture_sum=ap_sum, aperture_sum_err=ap_err,
            annulus_sum=ann_sum, annulus_sum_err=ann_sum_err, annulus_mean=level,
            annulus_mean_err=level_err, aperture_bkg=bkg, aperture_bkg_err=bkg_err,
            net_aperture_sum=net, net_aperture_sum_err=float(math.hypot(ap_err, bkg_err)),
        ))
    return results


def curve_of_growth_radius(image, x, y, fraction=0.97, rmax=None) -> float:
    """Radius enclosing ``fraction`` of the flux within ``rmax`` of (x, y).

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Background-subtracted image (median frame), DN/s; NaN pixels are ignored.
    x, y : float
        Centre, 0-based pixels.
    fraction : float
        Encircled fraction, between 0 and 1.
    rmax : float, optional
        Outer radius of the total flux; default the distance to the nearest image edge.

    Returns
    -------
    float
        Radius, pixels.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
    img = np.asarray(image, dtype=float)
    ny, nx = img.shape
    if rmax is None:
        rmax = min(x + 0.5, y + 0.5, nx - 0.5 - x, ny - 0.5 - y)
    if not rmax > 1:
        raise ValueError("the centre is too close to the image edge")
    yy, xx = np.indices(img.shape)
    r = np.hypot(xx - x, yy - y)
    inside = (r < rmax) & np.isfinite(img)
    order = np.argsort(r[inside])
    flux = np.clip(img[inside][order], 0, None)
    cum = np.cumsum(flux)
    if cum[-1] <= 0:
        raise ValueError("no positive flux around the centre")
    k = int(np.searchsorted(cum, fraction * cum[-1]))
    return float(r[inside][order][min(k, order.size - 1)])


def point_to_point_scatter(flux) -> float:
    """Robust relative point-to-point scatter of a light curve.

    Parameters
    ----------
    flux : float ndarray, shape (nints,)
        Light curve; NaN entries are skipped.

    Returns
    -------
    float
        MAD standard deviation of successive differences / sqrt(2), over the median flux
        (insensitive to slow trends and the transit itself); NaN with fewer than 3 points.
    """
    from astropy.stats import mad_std

    f = np.asarray(flux, dtype=float)
    f = f[np.isfinite(f)]
    if f.size < 3:
        return np.nan
    med = np.median(f)
    if med == 0:
        return np.nan
    return float(mad_std(np.diff(f)) / math.sqrt(2.0) / abs(med))


def choose_radius(fluxes) -> int:
    """Index of the light curve with the lowest point-to-point scatter.

    Parameters
    ----------
    fluxes : float ndarray, shape (nradii, nints)
        Net light curves, one per radius.

    Returns
    -------
    int
        Row of ``fluxes`` to use.
    """
    scatter = np.array([point_to_point_scatter(f) for f in np.atleast_2d(fluxes)])
    if not np.isfinite(scatter).any():
        return 0
    return int(np.nanargmin(scatter))


def correct_dilution(flux, flux_err, dilution, window=None):
    """Remove a neighbour's constant share of the flux from a light curve.

    The neighbour contributes ``dilution`` times the out-of-transit flux, a constant.
    The out-of-transit level is estimated as the 97.5th percentile of a running median of
    the light curve (window 5% of the points, at least 5), which is the unocculted level
    for a transit or eclipse and the median level for a flat light curve.

    Parameters
    ----------
    flux, flux_err : float ndarray, shape (nints,)
        Net light curve and its errors; NaN entries are kept as NaN.
    dilution : float
        Neighbour fraction of the out-of-transit flux, in [0, 1).
    window : int, optional
        Running-median length, points.

    Returns
    -------
    corrected : float ndarray, shape (nints,)
        ``flux - dilution * reference``: transit depths are no longer diluted.
    corrected_err : float ndarray, shape (nints,)
        ``flux_err`` (the constant is taken as exact).
    reference : float
        The out-of-transit level used.
    """
    if not (0 <= dilution < 1):
        raise ValueError(f"dilution must be in [0, 1), got {dilution!r}")
    f = np.asarray(flux, dtype=float)
    e = np.asarray(flux_err, dtype=float)
    good = np.isfinite(f)
    if dilution == 0 or good.sum() == 0:
        return f.copy(), e.copy(), float(np.nanmedian(f)) if good.any() else np.nan
    v = f[good]
    n = v.size
    w = window or max(5, int(round(0.05 * n)) | 1)
    w = min(w | 1, n if n % 2 else n - 1) if n >= 3 else 1
    if w > 1:
        half = w // 2
        padded = np.pad(v, half, mode="reflect") if n > half else np.pad(v, half, mode="edge")
        smooth = np.median(np.lib.stride_tricks.sliding_window_view(padded, w), axis=1)
    else:
        smooth = v
    reference = float(np.percentile(smooth, 97.5))
    return f - dilution * reference, e.copy(), reference
