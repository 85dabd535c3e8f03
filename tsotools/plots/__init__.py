"""Figures for the command line's --plot options: each function returns a matplotlib Figure.

No file I/O here: :func:`tsotools.io.save_figure` writes them. The Agg backend is used, so
no display is needed.
"""

import matplotlib

matplotlib.use("Agg")


def time_axis(time_d):
    """Elapsed time for an axis: (values, unit, t0) in hours, minutes or seconds by the span.

    Parameters
    ----------
    time_d : float ndarray, shape (n,), days (BJD_TDB or MJD)

    Returns
    -------
    values : float ndarray, shape (n,), elapsed time since ``t0`` in ``unit``
    unit : str, "hours", "minutes" or "seconds"
    t0 : float, days
    """
    import numpy as np

    time_d = np.asarray(time_d, dtype=float)
    ok = np.isfinite(time_d)
    t0 = float(np.min(time_d[ok])) if ok.any() else 0.0
    span_s = (float(np.max(time_d[ok])) - t0) * 86400.0 if ok.any() else 0.0
    for unit, seconds in (("hours", 3600.0), ("minutes", 60.0)):
        if span_s >= 2 * seconds:
            return (time_d - t0) * 86400.0 / seconds, unit, t0
    return (time_d - t0) * 86400.0, "seconds", t0
