"""Figure of ``spectra --noise-report --plot``: scatter of binned light curves vs bin width."""

from __future__ import annotations

import numpy as np

__all__ = ["noise_figure"]


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
    fig = Figure(figsize=(6.4, 4.2))
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
        ax.text(0.02, 0.03, f"{ratio:.1f}x above 1/sqrt(N) at {int(w[-1])} columns: 1/f noise along the dispersion",
                transform=ax.transAxes, fontsize=8, color="C3")
    return fig
