"""Figure of ``centroid --plot``: the star's position in every integration."""

from __future__ import annotations

import numpy as np

from . import time_axis

__all__ = ["centroids_figure"]


def centroids_figure(
    time_d,
    x,
    y,
    *,
    flag=None,
    ref=None,
    unit: str = "px",
    labels=("X", "Y"),
    time_label: str = "BJD_TDB",
    title: str = "",
):
    """Position against time for both axes, flagged integrations in red.

    Parameters
    ----------
    time_d : float ndarray, shape (nints,), days (BJD_TDB or MJD)
    x, y : float ndarray, shape (nints,), positions or offsets in ``unit``
    flag : int ndarray, shape (nints,), optional
        Nonzero marks an integration (position excursion, antenna move, failure).
    ref : (float, float), optional
        Reference position (XREF_SCI, YREF_SCI, 0-based pixels) drawn as a dashed line.
    unit : str
        Unit of ``x`` and ``y`` for the axis labels (px, mas).
    labels : (str, str)
    time_label, title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    elapsed, tunit, t0 = time_axis(time_d)
    flag = np.zeros(len(elapsed), bool) if flag is None else np.asarray(flag) != 0
    fig = Figure(layout="none", figsize=(7.0, 4.8))
    axes = fig.subplots(2, 1, sharex=True)
    for k, (ax, v, label) in enumerate(zip(axes, (x, y), labels)):
        v = np.asarray(v, dtype=float)
        med = np.nanmedian(v) if np.isfinite(v).any() else 0.0
        ax.plot(elapsed[~flag], v[~flag], ".", ms=3, color="C0", label="integrations")
        if flag.any():
            ax.plot(elapsed[flag], v[flag], "x", ms=4, color="C3", label="flagged")
        ax.axhline(med, color="0.3", lw=0.8, label=f"median {med:.3f}")
        if ref is not None and np.isfinite(ref[k]):
            ax.axhline(ref[k], color="C1", ls="--", lw=0.8, label=f"reference {ref[k]:.3f}")
        rms = np.nanstd(v[~flag]) if (~flag).any() else np.nan
        ax.text(0.02, 0.05, f"rms {rms:.4f} {unit}", transform=ax.transAxes, fontsize=8)
        ax.set_ylabel(f"{label} ({unit})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2)
    axes[1].set_xlabel(f"{tunit} since {time_label} {t0:.5f}")
    axes[0].set_title(title or "star position per integration", fontsize=9)
    fig.tight_layout()
    return fig
