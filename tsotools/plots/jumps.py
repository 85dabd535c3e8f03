"""Figure of ``rejump --sweep --plot``: light-curve noise and flagged fraction per threshold."""

from __future__ import annotations

import numpy as np

__all__ = ["sweep_figure"]


def sweep_figure(table, title: str = ""):
    """Noise and flagged fraction against the jump threshold, the lowest noise marked.

    Parameters
    ----------
    table : astropy Table or mapping of columns
        The ``rejump --report`` table: threshold (sigma), flagged_pixel_fraction,
        flagged_group_fraction, whitelight_noise_ppm (grism, ppm) and/or rate_noise
        (DN/s), best (bool).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    names = list(table.colnames) if hasattr(table, "colnames") else list(table)
    thr = np.asarray(table["threshold"], dtype=float)
    order = np.argsort(thr)
    thr = thr[order]
    if (
        "whitelight_noise_ppm" in names
        and np.isfinite(np.asarray(table["whitelight_noise_ppm"], float)).any()
    ):
        noise, nlabel = (
            np.asarray(table["whitelight_noise_ppm"], float)[order],
            "white-light noise (ppm)",
        )
    else:
        noise, nlabel = np.asarray(table["rate_noise"], float)[order], "rate-image noise (DN/s)"
    best = (
        np.asarray(table["best"], dtype=bool)[order]
        if "best" in names
        else np.zeros(len(thr), bool)
    )
    fig = Figure(layout="none", figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    ax.plot(thr, noise, "o-", color="C0", label=nlabel)
    if best.any():
        ax.plot(
            thr[best], noise[best], "*", ms=14, color="C3", label=f"best: {thr[best][0]:g} sigma"
        )
    ax.set_xlabel("jump threshold (sigma)")
    ax.set_ylabel(nlabel, color="C0")
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    frac = np.asarray(table["flagged_pixel_fraction"], float)[order] * 100
    ax2.plot(thr, frac, "s--", ms=3, color="C1", label="pixels flagged (%)")
    ax2.set_ylabel("pixels with a jump flag (%)", color="C1")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    ax.set_title(title or "jump-threshold sweep", fontsize=9)
    fig.tight_layout()
    return fig
