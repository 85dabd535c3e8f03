"""Figure of ``tsotools plot frame``: integration images of one or more products, on one scale."""

from __future__ import annotations

import numpy as np

__all__ = ["frames_figure"]


def frames_figure(
    frames, row0s=(), labels=(), unit: str = "DN/s", nrows: int | None = None, title: str = ""
):
    """Draw integration images at their subarray rows on one colour scale.

    Wide grism frames are stacked vertically, square imaging frames side by side.

    The scale is set by the background (median +/- a few robust standard deviations of the
    first frame, then asinh-stretched up to the brightest pixel) so that faint neighbours,
    the sky and the edges of a cutout show as well as the star.

    Parameters
    ----------
    frames : sequence of float ndarray, shape (ny_k, nx)
        One integration of each product (rateints, calints, cutout ...), ``unit``.
    row0s : sequence of int
        0-based subarray row of each frame's first row (SLTSTRT2 - 1 for a cutout).
    labels : sequence of str
    unit : str
    nrows : int, optional
        Height of the subarray, for a common vertical axis  [default: the frames' extent].
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import AsinhNorm
    from matplotlib.figure import Figure

    frames = [np.asarray(f, dtype=float) for f in frames]
    row0s = list(row0s) or [0] * len(frames)
    labels = list(labels) or [""] * len(frames)
    ref = frames[0][np.isfinite(frames[0])]
    med = float(np.median(ref)) if ref.size else 0.0
    sigma = float(1.4826 * np.median(np.abs(ref - med))) if ref.size else 1.0
    sigma = sigma if sigma > 0 else 1.0
    top = float(np.nanpercentile(np.concatenate([f[np.isfinite(f)] for f in frames]), 99.9))
    norm = AsinhNorm(linear_width=3 * sigma, vmin=med - 3 * sigma, vmax=max(top, med + 10 * sigma))
    extent_top = nrows or max(r + f.shape[0] for r, f in zip(row0s, frames))
    square = max(f.shape[1] for f in frames) <= 4 * extent_top  # imaging: keep pixels square
    if square:
        fig = Figure(layout="none", figsize=(5.6 * len(frames) if len(frames) > 1 else 6.4, 5.4))
    else:
        fig = Figure(
            layout="none", figsize=(9.0, 1.2 + len(frames) * min(2.6, 0.02 * extent_top + 1.0))
        )
    shape = (1, len(frames)) if square else (len(frames), 1)
    axes = fig.subplots(*shape, sharex=True, sharey=square, squeeze=False).ravel()
    for ax, frame, r0, label in zip(axes, frames, row0s, labels):
        im = ax.imshow(
            frame,
            origin="lower",
            aspect="equal" if square else "auto",
            cmap="magma",
            norm=norm,
            interpolation="nearest",
            extent=(-0.5, frame.shape[1] - 0.5, r0 - 0.5, r0 + frame.shape[0] - 0.5),
        )
        ax.set_ylim(-0.5, extent_top - 0.5)
        ax.axhspan(r0 - 0.5, r0 + frame.shape[0] - 0.5, fill=False, ec="C2", lw=1.2)
        ax.set_title(f"{label}: rows {r0}-{r0 + frame.shape[0] - 1}", fontsize=8, loc="left")
        ax.set_ylabel("subarray row")
        ax.set_xlabel("column")
    fig.colorbar(im, ax=list(axes), label=unit, fraction=0.03, pad=0.01)
    fig.suptitle(title or "integration images", fontsize=9)
    return fig
