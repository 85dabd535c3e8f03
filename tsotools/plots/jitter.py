"""Figure of ``jitter-from-guidestar --plot``: guide-star offsets, antenna moves, integrations."""

from __future__ import annotations

import numpy as np

__all__ = ["jitter_figure"]

_DAY_S = 86400.0


def jitter_figure(mjd, x_mas, y_mas, moves, integrations=None, title: str = ""):
    """Guide-star offsets against time with antenna moves shaded and integrations marked.

    Parameters
    ----------
    mjd : float ndarray, shape (nframes,), MJD; or None to draw ``integrations`` alone
    x_mas, y_mas : float ndarray, shape (nframes,), FGS ideal-frame offsets, mas (None with
        ``mjd`` None)
    moves : float ndarray, shape (nmoves, 2), START_MJD, STOP_MJD
    integrations : astropy Table, optional
        The per-integration table (MJD, DX_MAS, DY_MAS, HGA_FLAG); its means are drawn
        over the series, flagged integrations in red.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if mjd is None:  # only the per-integration table (a jitter table written with --science)
        mjd = np.asarray(integrations["MJD"], dtype=float)
        x_mas = y_mas = None
    mjd = np.asarray(mjd, dtype=float)
    t0 = np.nanmin(mjd) if mjd.size else 0.0
    minutes = (mjd - t0) * _DAY_S / 60.0
    fig = Figure(layout="none", figsize=(8.0, 5.2))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, series, label, col in zip(axes, (x_mas, y_mas), ("X", "Y"), ("DX_MAS", "DY_MAS")):
        if series is not None:
            ax.plot(minutes, series, lw=0.4, color="0.55", label="16 Hz frames")
        for k, (a, b) in enumerate(np.asarray(moves, dtype=float).reshape(-1, 2)):
            ax.axvspan(
                (a - t0) * _DAY_S / 60,
                (b - t0) * _DAY_S / 60,
                color="C1",
                alpha=0.3,
                label="antenna move" if k == 0 else None,
            )
        if integrations is not None and len(integrations):
            tm = (np.asarray(integrations["MJD"], dtype=float) - t0) * _DAY_S / 60
            v = np.asarray(integrations[col], dtype=float)
            flag = np.asarray(integrations["HGA_FLAG"], dtype=bool)
            ax.plot(tm[~flag], v[~flag], ".", ms=3, color="C0", label="integration mean")
            if flag.any():
                ax.plot(tm[flag], v[flag], ".", ms=3, color="C3", label="integration, HGA_FLAG")
            ax.axvspan(tm.min(), tm.max(), color="C0", alpha=0.06)
        ax.set_ylabel(f"{label} offset (mas)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right", ncol=2)
    axes[1].set_xlabel(f"minutes since MJD {t0:.5f}")
    axes[0].set_title(title or "guide-star offsets (FGS ideal frame)", fontsize=9)
    fig.tight_layout()
    return fig
