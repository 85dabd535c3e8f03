"""Light-curve figures: white light or photometry with binned points, spectroscopic bins."""

from __future__ import annotations

import numpy as np

from ..algorithms.lightcurves import p2p_ppm
from . import time_axis

__all__ = ["bin_series", "lightcurve_figure", "lightcurves_figure", "p2p_ppm"]


def bin_series(time, flux, size: int):
    """Mean of consecutive groups of ``size`` finite points (the last group may be shorter).

    Parameters
    ----------
    time, flux : float ndarray, shape (n,)
        Any units; NaN points are left out of their group.
    size : int
        Points per bin (>= 1).

    Returns
    -------
    t_bin, f_bin, f_err : float64 ndarray, shape (ceil(n / size),)
        Mean time, mean flux and standard error of the mean (NaN for a group with fewer
        than two finite points).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    time = np.asarray(time, dtype=float)
    flux = np.asarray(flux, dtype=float)
    nb = -(-len(flux) // size)
    t_bin, f_bin, f_err = (np.full(nb, np.nan) for _ in range(3))
    for k in range(nb):
        t, f = time[k * size : (k + 1) * size], flux[k * size : (k + 1) * size]
        ok = np.isfinite(t) & np.isfinite(f)
        if ok.any():
            t_bin[k], f_bin[k] = t[ok].mean(), f[ok].mean()
        if ok.sum() > 1:
            f_err[k] = f[ok].std(ddof=1) / np.sqrt(ok.sum())
    return t_bin, f_bin, f_err


def default_bin_size(n: int) -> int:
    """Points per bin giving about 30 binned points (at least 2 points per bin)."""
    return max(2, int(round(n / 30)))


def lightcurve_figure(
    time_d,
    flux,
    flux_err=None,
    *,
    bin_size: int | None = None,
    time_label: str = "BJD_TDB",
    ylabel: str = "relative flux",
    title: str = "",
):
    """Draw a normalized light curve with binned points.

    Parameters
    ----------
    time_d : float ndarray, shape (nints,), days (BJD_TDB or MJD)
    flux : float ndarray, shape (nints,), any unit (DN/s); normalized by its median
    flux_err : float ndarray, shape (nints,), optional, same unit as ``flux``
    bin_size : int, optional
        Integrations per binned point  [default: about 30 binned points].
    time_label : str
        Name of the time column, for the axis label.
    ylabel, title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    flux = np.asarray(flux, dtype=float)
    elapsed, tunit, t0 = time_axis(time_d)
    norm = np.nanmedian(flux) if np.isfinite(flux).any() else 1.0
    rel = flux / norm
    size = bin_size or default_bin_size(len(rel))
    tb, fb, eb = bin_series(elapsed, rel, size)
    fig = Figure(layout="none", figsize=(7.0, 4.0))
    ax = fig.add_subplot()
    if flux_err is not None:
        ax.errorbar(
            elapsed,
            rel,
            yerr=np.asarray(flux_err, dtype=float) / norm,
            fmt=".",
            ms=2,
            lw=0.5,
            color="0.6",
            alpha=0.7,
            label="integrations",
        )
    else:
        ax.plot(elapsed, rel, ".", ms=2, color="0.6", label="integrations")
    ax.errorbar(tb, fb, yerr=eb, fmt="o", ms=4, color="C0", label=f"binned ({size} integrations)")
    ax.text(
        0.02,
        0.04,
        f"point-to-point scatter {p2p_ppm(rel):.0f} ppm (robust)",
        transform=ax.transAxes,
        fontsize=8,
    )
    ax.set_xlabel(f"{tunit} since {time_label} {t0:.5f}")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "light curve", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def lightcurves_figure(
    time_d,
    flux,
    wave_um,
    *,
    bin_size: int | None = None,
    time_label: str = "BJD_TDB",
    title: str = "",
):
    """Spectroscopic light curves, one per wavelength bin, offset vertically.

    Parameters
    ----------
    time_d : float ndarray, shape (nints,), days
    flux : float ndarray, shape (nbins, nints), any unit; each bin normalized by its median
    wave_um : float ndarray, shape (nbins,), bin centres, micron
    bin_size : int, optional
        Integrations per binned point  [default: about 30 binned points].
    time_label, title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    elapsed, tunit, t0 = time_axis(time_d)
    rel = flux / np.nanmedian(flux, axis=1, keepdims=True)
    scatter = (
        np.nanstd(np.diff(rel, axis=1), axis=1) / np.sqrt(2)
        if rel.shape[1] > 2
        else np.zeros(len(rel))
    )
    step = 6 * float(np.nanmedian(scatter)) if np.isfinite(scatter).any() else 0.01
    step = step if step > 0 else 0.01
    size = bin_size or default_bin_size(rel.shape[1])
    cmap = colormaps["viridis"]
    fig = Figure(layout="none", figsize=(7.0, max(4.0, 0.35 * len(rel) + 2)))
    ax = fig.add_subplot()
    for k, (row, wave) in enumerate(zip(rel, wave_um)):
        color = cmap(k / max(1, len(rel) - 1))
        ax.plot(elapsed, row - k * step, ".", ms=1.5, color=color, alpha=0.5)
        tb, fb, _ = bin_series(elapsed, row, size)
        ax.plot(tb, fb - k * step, "-", lw=1.2, color=color)
        ax.text(
            1.01,
            1 - k * step,
            f"{wave:.3f} um",
            transform=ax.get_yaxis_transform(),
            fontsize=7,
            va="center",
            color=color,
        )
    ax.set_xlabel(f"{tunit} since {time_label} {t0:.5f}")
    ax.set_ylabel("relative flux (offset per bin)")
    ax.set_title(title or "spectroscopic light curves", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
