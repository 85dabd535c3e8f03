"""Figure of ``oneoverf --plot``: one frame before and after, and its amplifier row profiles."""

from __future__ import annotations

import numpy as np

__all__ = ["background_pixels", "oneoverf_figure"]


def background_pixels(before, after, mask=None, nsigma: float = 3.0, row_margin: int = 8):
    """Pixels for the row profiles: finite in both frames, away from any source.

    A source pixel lies more than ``nsigma`` robust standard deviations (1.4826 x MAD of
    the corrected frame) above its median, or is in ``mask``. Rows where more than 2% of
    the pixels are source pixels, and ``row_margin`` rows either side of them (the PSF
    wings of a grism trace), are left out whole, so the row profiles show 1/f noise and
    not the star.

    Parameters
    ----------
    before, after : float ndarray, shape (ny, nx)
    mask : bool ndarray, shape (ny, nx), optional
        Known source pixels.
    nsigma : float
    row_margin : int

    Returns
    -------
    bool ndarray, shape (ny, nx)
    """
    before = np.asarray(before, dtype=float)
    after = np.asarray(after, dtype=float)
    use = np.isfinite(before) & np.isfinite(after)
    source = np.zeros(use.shape, bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if use.any():
        med = np.median(after[use])
        sigma = 1.4826 * np.median(np.abs(after[use] - med))
        if sigma > 0:
            with np.errstate(invalid="ignore"):
                source |= after - med > nsigma * sigma
    rows = np.flatnonzero(source.mean(axis=1) > 0.02)
    bad_rows = np.zeros(use.shape[0], bool)
    for r in rows:
        bad_rows[max(r - row_margin, 0) : r + row_margin + 1] = True
    if bad_rows.all():  # a source everywhere: keep the pixels that are not on it
        return use & ~source
    return use & ~source & ~bad_rows[:, None]


def oneoverf_figure(
    before, after, *, amp_edges=(), mask=None, unit: str = "DN", label: str = "", title: str = ""
):
    """Before/after images of one frame on the same colour scale, and the row 1/f profile.

    Parameters
    ----------
    before, after : float ndarray, shape (ny, nx), ``unit``
        The same frame (a group difference of a ramp, or a rate image) before and after
        the correction. NaN pixels are left blank.
    amp_edges : sequence of int
        Columns where a new amplifier starts (drawn as dotted lines).
    mask : bool ndarray, shape (ny, nx), optional
        Source pixels, left out of the row profiles and the colour scale (bright pixels
        are left out in any case, see :func:`background_pixels`).
    unit : str
    label : str
        What the frame is (e.g. "integration 1, group 4 - group 1").
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    before = np.asarray(before, dtype=float)
    after = np.asarray(after, dtype=float)
    use = background_pixels(before, after, mask)
    ref = after[use] if use.any() else after[np.isfinite(after)]
    centre = float(np.nanmedian(ref)) if ref.size else 0.0
    spread = float(np.nanpercentile(np.abs(ref - centre), 99)) if ref.size else 1.0
    # the colour range shows the background noise (stripes), not the star
    lo, hi = centre - 2 * spread, centre + 2 * spread
    fig = Figure(layout="none", figsize=(9.0, 6.6))
    gs = fig.add_gridspec(3, 2, width_ratios=(40, 1), height_ratios=(1, 1, 1))
    image_axes = []
    for k, (frame, name) in enumerate(((before, "before"), (after, "after"))):
        ax = fig.add_subplot(gs[k, 0])
        im = ax.imshow(
            frame,
            origin="lower",
            aspect="auto",
            cmap="gray",
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
        )
        for x in amp_edges:
            ax.axvline(x - 0.5, color="C1", ls=":", lw=0.8)
        rms = np.nanstd(frame[use]) if use.any() else np.nan
        ax.set_title(f"{name}: background rms {rms:.2f} {unit}", fontsize=8, loc="left")
        ax.set_ylabel("row")
        image_axes.append(ax)
    fig.colorbar(im, cax=fig.add_subplot(gs[0:2, 1]), label=unit)
    ax = fig.add_subplot(gs[2, 0])
    for frame, name, color in ((before, "before", "C3"), (after, "after", "C0")):
        rows = np.array(
            [np.median(frame[r][use[r]]) if use[r].any() else np.nan for r in range(len(frame))]
        )
        with np.errstate(all="ignore"):
            ax.plot(
                np.arange(frame.shape[0]),
                rows - np.nanmedian(rows),
                ".-",
                ms=2,
                lw=0.8,
                color=color,
                label=f"{name}: rms {np.nanstd(rows):.2f} {unit}",
            )
    skipped = ~use.any(axis=1)
    for r in np.flatnonzero(skipped):
        ax.axvspan(r - 0.5, r + 0.5, color="0.85", lw=0)
    ax.set_xlabel("row (grey: rows on the source, left out)")
    ax.set_ylabel(f"background row median ({unit})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    image_axes[1].set_xlabel("column")
    image_axes[0].figure.suptitle(title or f"1/f correction {label}".strip(), fontsize=9)
    fig.tight_layout()
    return fig
