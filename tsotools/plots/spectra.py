"""Figures of grism spectra: time x wavelength image (``spectra --plot``), noise vs bin width."""

from __future__ import annotations

import warnings

import numpy as np

from . import time_axis

__all__ = ["noise_figure", "spectra_figure"]


def noise_figure(table, title: str = ""):
    """Scatter against bin width next to the 1/sqrt(N) expectation.

    Parameters
    ----------
    table : astropy Table
        :meth:`tsotools.algorithms.lightcurves.NoiseAccumulator.table` output (WIDTH,
        SCATTER_PPM, EXPECTED_PPM, ERROR_PPM).
    title : str
        Figure title (e.g. the input file name).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    w = np.asarray(table["WIDTH"], dtype=float)
    fig = Figure(layout="none", figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.loglog(w, table["SCATTER_PPM"], "o-", ms=3, label="measured (point to point)")
    ax.loglog(w, table["EXPECTED_PPM"], "--", label="independent columns (1/sqrt(N))")
    ax.loglog(w, table["ERROR_PPM"], ":", label="propagated errors")
    ax.set_xlabel("bin width (columns)")
    ax.set_ylabel("scatter per integration (ppm)")
    ax.set_title(title or "noise vs bin width")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ratio = float(table["RATIO"][-1])
    if np.isfinite(ratio) and ratio > 1.2:
        ax.text(
            0.02,
            0.03,
            f"{ratio:.1f}x above 1/sqrt(N) at {int(w[-1])} columns: 1/f noise along the dispersion",
            transform=ax.transAxes,
            fontsize=8,
            color="C3",
        )
    return fig


def spectra_figure(wavelength_um, time_d, flux, *, time_label: str = "BJD_TDB", title: str = ""):
    """Per-integration spectra as a time x wavelength image of relative flux, with the white light.

    Each column is divided by its median over time, so the image shows changes (a transit,
    a drift, a bad integration) rather than the stellar spectrum; the median spectrum and
    the white-light curve (sum over the plotted columns) are drawn beside it.

    Parameters
    ----------
    wavelength_um : float ndarray, shape (ncols,), micron; NaN columns are left out
    time_d : float ndarray, shape (nints,), days (BJD_TDB or MJD)
    flux : float ndarray, shape (nints, ncols), any unit (DN/s); NaN where not extracted
    time_label, title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    wave = np.asarray(wavelength_um, dtype=float)
    flux = np.asarray(flux, dtype=float)
    time_d = np.asarray(time_d, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        med = np.nanmedian(flux, axis=0) if len(flux) else np.full(flux.shape[1], np.nan)
    good = np.isfinite(wave) & np.isfinite(med) & (med > 0)
    if good.sum() > 20:  # columns with at least 5% of the median signal
        good &= med > 0.05 * np.nanmedian(med[good])
    order = np.argsort(wave[good])
    wave, flux, med = wave[good][order], flux[:, good][:, order], med[good][order]
    elapsed, tunit, t0 = time_axis(time_d)
    with np.errstate(all="ignore"):
        rel = (flux / med - 1.0) * 1e2
        white = np.nansum(flux, axis=1)
    white = white / np.nanmedian(white) if np.isfinite(white).any() else white
    finite = rel[np.isfinite(rel)]
    lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
    fig = Figure(layout="none", figsize=(8.0, 6.4))
    gs = fig.add_gridspec(3, 2, width_ratios=(40, 1), height_ratios=(1, 2.4, 1.2))
    ax_spec = fig.add_subplot(gs[0, 0])
    ax_img = fig.add_subplot(gs[1, 0], sharex=ax_spec)
    ax_wl = fig.add_subplot(gs[2, 0])
    ax_spec.plot(wave, med, lw=0.8, color="k")
    ax_spec.set_ylabel("median flux")
    ax_spec.grid(True, alpha=0.3)
    ax_spec.tick_params(labelbottom=False)
    if len(wave) > 1 and len(elapsed):
        extent = (
            wave[0],
            wave[-1],
            elapsed.min() if len(elapsed) > 1 else 0,
            elapsed.max() if len(elapsed) > 1 else 1,
        )
        im = ax_img.imshow(
            rel,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="RdBu_r",
            vmin=-lim,
            vmax=lim,
            interpolation="nearest",
        )
        fig.colorbar(im, cax=fig.add_subplot(gs[1, 1]), label="flux / median - 1 (%)")
    ax_img.set_xlabel("wavelength (um)")
    ax_img.set_ylabel(f"{tunit} since {time_label}\n{t0:.5f}")
    ax_wl.plot(elapsed, white, ".-", ms=3, lw=0.6, color="C0")
    ax_wl.set_xlabel(f"{tunit} since {time_label} {t0:.5f}")
    ax_wl.set_ylabel("white light")
    ax_wl.grid(True, alpha=0.3)
    ax_spec.set_title(title or "spectra per integration", fontsize=9)
    fig.tight_layout()
    return fig
