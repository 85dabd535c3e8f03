"""Light curves from per-integration spectra: wavelength bins, white light, noise vs bin width.

The noise report follows the JDox NIRCam TSO known-issues advice (SEED.md): 1/f noise lies
along rows, i.e. along the GRISMR dispersion, so binning N columns does not lower the noise
by sqrt(N). The scatter of each binned light curve is measured point to point
(``std(diff(f)) / sqrt(2)``: a transit's slow change does not enter) and set against what
the scatter of its columns would give if they were independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseAccumulator", "SpectralBins", "fit_depth", "make_bins", "p2p_ppm", "sum_bins"]


@dataclass(frozen=True)
class SpectralBins:
    """Columns grouped into wavelength bins.

    Attributes
    ----------
    index : int ndarray, shape (nx,)
        Bin of each column, -1 for columns in no bin.
    wave_lo, wave_hi, wave_mid : float64 ndarray, shape (nbins,)
        Wavelength range and flux-independent centre of each bin (micron).
    x_lo, x_hi : int ndarray, shape (nbins,)
        First and last column of each bin.
    ncols : int ndarray, shape (nbins,)
    """

    index: np.ndarray
    wave_lo: np.ndarray
    wave_hi: np.ndarray
    wave_mid: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    ncols: np.ndarray

    @property
    def nbins(self) -> int:
        """Number of bins."""
        return len(self.wave_mid)


def make_bins(wavelength, valid, *, nbins: int | None = None, bin_width_um: float | None = None,
              wave_range: tuple[float, float] | None = None) -> SpectralBins:
    """Group valid columns into ``nbins`` equal wavelength bins or bins ``bin_width_um`` wide.

    Parameters
    ----------
    wavelength : float ndarray, shape (nx,)
        Wavelength of each column, micron (monotonic where valid).
    valid : bool ndarray, shape (nx,)
        Columns with a usable spectrum.
    nbins : int, optional
        Number of equal-width bins across the valid (or given) wavelength range.
    bin_width_um : float, optional
        Bin width in micron, bins starting at the short end.
    wave_range : (float, float), optional
        Only wavelengths in this range, micron.

    Returns
    -------
    SpectralBins
        Bins without any column are dropped.

    Raises
    ------
    ValueError
        Without exactly one of ``nbins``/``bin_width_um``, or without valid wavelengths.
    """
    if (nbins is None) == (bin_width_um is None):
        raise ValueError("nbins: give either nbins or bin_width_um")
    lam = np.asarray(wavelength, dtype=float)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(lam)
    if wave_range is not None:
        ok &= (lam >= wave_range[0]) & (lam <= wave_range[1])
    if ok.sum() < 1:
        raise ValueError("wavelength: no valid column with a finite wavelength in range")
    lo, hi = float(lam[ok].min()), float(lam[ok].max())
    if wave_range is not None:
        lo, hi = max(lo, wave_range[0]), min(hi, wave_range[1])
    if nbins is not None:
        if nbins < 1:
            raise ValueError(f"nbins: must be >= 1, got {nbins}")
        edges = np.linspace(lo, hi, nbins + 1)
    else:
        if not bin_width_um > 0:
            raise ValueError(f"bin_width_um: must be positive, got {bin_width_um}")
        count = max(int(math.ceil((hi - lo) / bin_width_um - 1e-9)), 1)
        edges = lo + bin_width_um * np.arange(count + 1)
    raw = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, len(edges) - 2)
    raw = np.where(ok, raw, -1)
    used = np.unique(raw[raw >= 0])
    index = np.full(len(lam), -1)
    x = np.arange(len(lam))
    x_lo, x_hi, ncols = [], [], []
    for j, b in enumerate(used):
        cols = x[raw == b]
        index[cols] = j
        x_lo.append(cols.min())
        x_hi.append(cols.max())
        ncols.append(len(cols))
    return SpectralBins(index, edges[used], edges[used + 1], 0.5 * (edges[used] + edges[used + 1]),
                        np.asarray(x_lo), np.asarray(x_hi), np.asarray(ncols))


def sum_bins(values, bins: SpectralBins, *, variance: bool = False) -> np.ndarray:
    """Sum a per-column quantity over each bin (NaN columns count as missing: NaN result).

    Parameters
    ----------
    values : float ndarray, shape (nx,)
        Flux (or variance, with ``variance=True``: the same sum) per column.
    bins : SpectralBins

    Returns
    -------
    float64 ndarray, shape (nbins,)
    """
    v = np.asarray(values, dtype=float)
    sel = bins.index >= 0
    out = np.bincount(bins.index[sel], weights=np.nan_to_num(v[sel]), minlength=bins.nbins)
    nan = np.bincount(bins.index[sel], weights=~np.isfinite(v[sel]), minlength=bins.nbins) > 0
    return np.where(nan, np.nan, out)


class NoiseAccumulator:
    """Point-to-point scatter of light curves binned over 1..N adjacent columns, streamed.

    Feed one integration's spectrum at a time with :meth:`add`; memory holds a few numbers
    per column and bin width, not per integration.

    Parameters
    ----------
    valid : bool ndarray, shape (nx,)
        Columns to use; bins tile the span from the first to the last valid column.
    max_width : int
        Largest bin width, columns (every width 1..max_width is measured).
    """

    def __init__(self, valid, max_width: int):
        cols = np.flatnonzero(np.asarray(valid, dtype=bool))
        if cols.size == 0:
            raise ValueError("valid: no column to measure the noise on")
        if max_width < 1:
            raise ValueError(f"max_width: must be >= 1, got {max_width}")
        self.x0 = int(cols.min())
        self.span = int(cols.max()) - self.x0 + 1
        self.widths = np.arange(1, min(int(max_width), self.span) + 1)
        self._prev = None
        self._sum = [np.zeros(self.span // w) for w in self.widths]
        self._sumsq_diff = [np.zeros(self.span // w) for w in self.widths]
        self._var = [np.zeros(self.span // w) for w in self.widths]
        self._n = [np.zeros(self.span // w) for w in self.widths]
        self._ndiff = [np.zeros(self.span // w) for w in self.widths]

    def _binned(self, values):
        v = np.asarray(values, dtype=float)[self.x0 : self.x0 + self.span]
        csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v))])
        cbad = np.concatenate([[0], np.cumsum(~np.isfinite(v))])
        out = []
        for w in self.widths:
            n = self.span // w
            edges = np.arange(n + 1) * w
            s = csum[edges[1:]] - csum[edges[:-1]]
            bad = (cbad[edges[1:]] - cbad[edges[:-1]]) > 0
            out.append(np.where(bad, np.nan, s))
        return out

    def add(self, flux, var) -> None:
        """Add one integration: flux and its variance per column (shape (nx,))."""
        f = self._binned(flux)
        v = self._binned(var)
        for j in range(len(self.widths)):
            ok = np.isfinite(f[j])
            self._sum[j][ok] += f[j][ok]
            self._var[j][ok] += np.nan_to_num(v[j][ok])
            self._n[j][ok] += 1
            if self._prev is not None:
                d = f[j] - self._prev[j]
                okd = np.isfinite(d)
                self._sumsq_diff[j][okd] += d[okd] ** 2
                self._ndiff[j][okd] += 1
        self._prev = f

    def table(self):
        """The noise against bin width.

        Returns
        -------
        astropy Table
            One row per width: WIDTH (columns), NBINS, SCATTER_PPM (median over bins of the
            point-to-point relative scatter), EXPECTED_PPM (the same bins if their columns
            were independent: from the width-1 scatters, the 1/sqrt(N) law), ERROR_PPM (from
            the propagated FLUX_ERROR), RATIO = SCATTER_PPM / EXPECTED_PPM (median over bins).
        """
        from astropy.table import Table

        with np.errstate(invalid="ignore", divide="ignore"):
            mean1 = self._sum[0] / self._n[0]
            var1 = self._sumsq_diff[0] / (2 * np.maximum(self._ndiff[0] - 1, 1))  # per column, flux^2
            rows = []
            for j, w in enumerate(self.widths):
                mean = self._sum[j] / self._n[j]
                scat = np.sqrt(self._sumsq_diff[j] / (2 * np.maximum(self._ndiff[j] - 1, 1))) / mean
                err = np.sqrt(self._var[j] / self._n[j]) / mean
                n = self.span // w
                v1 = var1[: n * w].reshape(n, w)
                expect = np.sqrt(v1.sum(axis=1)) / mean
                ok = np.isfinite(scat) & np.isfinite(expect) & (mean > 0) & (self._ndiff[j] >= 2)
                ratio = scat / expect
                rows.append((int(w), int(ok.sum()),
                             float(np.median(scat[ok]) * 1e6) if ok.any() else np.nan,
                             float(np.median(expect[ok]) * 1e6) if ok.any() else np.nan,
                             float(np.median(err[ok]) * 1e6) if ok.any() else np.nan,
                             float(np.median(ratio[ok])) if ok.any() else np.nan))
        del mean1
        tab = Table(rows=rows, names=("WIDTH", "NBINS", "SCATTER_PPM", "EXPECTED_PPM", "ERROR_PPM", "RATIO"),
                    dtype=(int, int, float, float, float, float))
        tab["WIDTH"].unit = "pix"
        return tab


def fit_depth(flux, shape, err=None, *, baseline_order: int = 0):
    """Transit depth of a light curve with a known transit shape, by linear least squares.

    Model: ``flux = (c0 + c1 t + ...) * (1 - depth * shape)``, linearised as
    ``flux = baseline - (c0 depth) * shape``; with ``baseline_order=0`` it is exact.

    Parameters
    ----------
    flux : float ndarray, shape (nints,)
    shape : float ndarray, shape (nints,)
        Transit shape, 0 out of transit and 1 at full depth.
    err : float ndarray, shape (nints,), optional
        Flux errors; the depth error is scaled by the reduced chi-square when > 1, or taken
        from the residual scatter when ``err`` is None.
    baseline_order : int
        Order of the polynomial baseline in integration index.

    Returns
    -------
    depth, depth_err : float
    """
    f = np.asarray(flux, dtype=float)
    s = np.asarray(shape, dtype=float)
    ok = np.isfinite(f) & np.isfinite(s)
    n = ok.sum()
    if n < baseline_order + 3:
        raise ValueError(f"flux: {n} finite points cannot fit a depth and a baseline of order {baseline_order}")
    t = np.linspace(-1, 1, len(f))
    cols = [t**k for k in range(baseline_order + 1)] + [-s]
    a = np.stack(cols, axis=1)[ok]
    w = np.ones(n) if err is None else 1.0 / np.asarray(err, dtype=float)[ok]
    coef, *_ = np.linalg.lstsq(a * w[:, None], f[ok] * w, rcond=None)
    resid = (f[ok] - a @ coef) * w
    dof = n - a.shape[1]
    chi2 = float(resid @ resid) / dof
    cov = np.linalg.inv((a * w[:, None]).T @ (a * w[:, None]))
    scale = chi2 if err is None else max(chi2, 1.0)
    depth = coef[-1] / coef[0]
    # error of the ratio: first order in both coefficients
    g = np.zeros(len(coef))
    g[0] = -coef[-1] / coef[0] ** 2
    g[-1] = 1.0 / coef[0]
    depth_err = math.sqrt(float(g @ cov @ g) * scale)
    return float(depth), depth_err


def p2p_ppm(rel) -> float:
    """Robust point-to-point scatter of a normalized light curve, ppm.

    1.4826 x the median absolute deviation of consecutive differences, over sqrt(2): a
    transit's ingress and egress, a step or a few outliers do not enter.

    Parameters
    ----------
    rel : float ndarray, shape (n,), flux / median; NaN points are left out

    Returns
    -------
    float
        NaN with fewer than 3 finite points.
    """
    rel = np.asarray(rel, dtype=float)
    d = np.diff(rel[np.isfinite(rel)])
    if d.size < 2:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2) * 1e6)
