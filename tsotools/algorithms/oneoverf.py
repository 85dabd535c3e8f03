"""Pre-amplifier offsets, odd/even columns and row-by-row 1/f noise, per amplifier and frame.

Pure functions on numpy arrays (no file I/O; inputs never modified). One frame (a group of
a ramp, or one integration of rateints) is handled at a time; the caller chooses which
pixels carry the noise estimate by their weights.

The estimate follows tshirt's ROEBA (Schlawin et al. 2020, AJ 160, 231; eas342/tshirt
``roeba``): per amplifier, odd/even column offsets along the slow direction, then the
mean of each row over usable pixels along the fast-read direction; rows without enough
usable pixels take the smoothed reference columns of their amplifier (the pipeline's
``refpix`` side correction, running window of 11 rows) when it has them, else the other
amplifiers' row model (ROEBA's fallback), else the amplifier offset. Means are weighted
by inverse variance and sigma-clipped around the row, so cosmic rays and star residuals
do not bias them.

The time-series mode (the pipeline's ``clean_flicker_noise`` with
``background_method='median_image'``, extended per amplifier and row) first subtracts a
scene model fitted to each integration: the temporal mean image scaled by the
integration's flux and shifted by its pointing (first-order Taylor terms in x and y), so
that pixels on the star carry the noise estimate too. :func:`fit_scene` and
:func:`predict_scene` do that fit; :func:`estimate_frame` does the per-amplifier estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "METHODS",
    "ROW_SOURCES",
    "FrameEstimate",
    "OneOverFParams",
    "estimate_frame",
    "fit_scene",
    "median_of_planes",
    "predict_scene",
    "predict_pixels",
    "profile_shift",
    "solve_pixel_regression",
    "robust_std",
    "row_levels",
    "scene_derivatives",
]

#: Methods of ``--method``: auto picks timeseries with enough integrations, else background.
METHODS = ("auto", "timeseries", "background", "refpix")

#: How each row value was obtained (codes of :attr:`FrameEstimate.row_source`).
ROW_SOURCES = {0: "measured", 1: "reference columns", 2: "other amplifiers", 3: "amplifier offset", 4: "none"}
_MEASURED, _REFCOLS, _AMPS, _OFFSET, _NONE = range(5)


@dataclass(frozen=True)
class OneOverFParams:
    """Settings of the 1/f correction.

    Parameters
    ----------
    method : str
        ``timeseries`` (subtract a flux-scaled temporal model, every pixel estimates the
        noise), ``background`` (source-masked pixels only; ROEBA), ``refpix`` (reference
        pixels only; the pipeline's refpix), or ``auto``: timeseries with at least
        ``min_ints_timeseries`` integrations, else background.
    oddeven : bool
        Remove odd/even column offsets per amplifier (pipeline refpix
        ``odd_even_columns=True``). Default True.
    min_row_pixels : int
        Usable pixels an amplifier row needs for its own estimate; fewer -> fall-back.
        Default 16 (noise of the row mean then at most 1/4 of one pixel's).
    min_ints_timeseries : int
        Integrations the time-series mode needs (the temporal mean of 3 has a third of
        one frame's noise). Default 3.
    clip_sigma : float
        Pixels further than this many standard deviations from their row's mean are left
        out of it. Default 4 (stcal ``jump`` rejection_threshold is 4.0).
    clip_iters : int
        Clipping iterations. Default 2.
    outlier_sigma : float
        Pixels further than this from the amplifier's median are left out before the
        first row mean (cosmic rays, hot pixels). Default 10.
    refcol_window : int
        Rows averaged when reference columns stand in for a row (pipeline refpix
        ``side_smoothing_length`` = 11). Default 11.
    model_ints : int
        Integrations sampled for the median image that starts the time-series model and
        gives the source mask. Default 15.
    shrink : bool
        Replace each row's measured 1/f by its minimum-mean-square-error estimate given
        the measurement noise N of every row and the frame's row stripes (variance S,
        correlation between neighbouring rows): rows of bright pixels (the grism trace
        core), whose estimate is dominated by photon noise, are then corrected as far as
        the data tell, leaning on the rows read just before and after them. Without row
        correlation this is the shrinkage S / (S + N) towards the amplifier offset.
        Default True.
    """

    method: str = "auto"
    oddeven: bool = True
    min_row_pixels: int = 16
    min_ints_timeseries: int = 3
    clip_sigma: float = 4.0
    clip_iters: int = 2
    outlier_sigma: float = 10.0
    refcol_window: int = 11
    model_ints: int = 15
    shrink: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("oddeven", "shrink"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, low in (("min_row_pixels", 1), ("min_ints_timeseries", 2), ("clip_iters", 0),
                          ("refcol_window", 1), ("model_ints", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("clip_sigma", "outlier_sigma"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 1:
                raise ValueError(f"{name} must be a number > 1, got {value!r}")

    def as_dict(self) -> dict:
        """Parameters for provenance (HISTORY) and summaries."""
        return asdict(self)


@dataclass
class FrameEstimate:
    """What :func:`estimate_frame` found in one frame.

    Attributes
    ----------
    correction : float32 ndarray, shape (ny, nx)
        The noise model to subtract, same unit as the frame (DN or DN/s).
    rows : float64 ndarray, shape (namps, ny)
        Row values per amplifier (offset + 1/f), odd/even mean included.
    parity : float64 ndarray, shape (namps, 2)
        Odd/even offsets per amplifier: even columns, odd columns (full-frame parity).
    row_source : int8 ndarray, shape (namps, ny)
        How each row value was obtained: a key of :data:`ROW_SOURCES`.
    offsets : float64 ndarray, shape (namps,)
        Amplifier offsets (median of the measured rows).
    """

    correction: np.ndarray
    rows: np.ndarray
    parity: np.ndarray
    row_source: np.ndarray
    offsets: np.ndarray

    def fallback_rows(self) -> int:
        """Number of amplifier rows not measured from their own pixels."""
        return int(np.count_nonzero(self.row_source != _MEASURED))


#: Samples a robust statistic of a whole frame is taken from (an even stride through it):
#: its relative error is then ~0.3 %, and a median of 0.5 M pixels costs 1/20 of the time.
MAX_SAMPLES = 25_000


def _thin(values: np.ndarray) -> np.ndarray:
    """At most about :data:`MAX_SAMPLES` values, an even stride through a flat array."""
    v = np.asarray(values).reshape(-1)
    return v[:: max(1, v.size // MAX_SAMPLES)]


def robust_std(values) -> float:
    """Return the standard deviation from the median absolute deviation (1.4826 MAD), NaN if empty.

    Large arrays are thinned to an even stride of about :data:`MAX_SAMPLES` values.
    """
    return _median_and_std(_thin(values))[1]


def _median(values):
    """``np.median`` of a 1-D array, from one single-index partition.

    The same value as ``np.median`` (whose two-index partition, plus the NaN check, costs
    about ten times more on float arrays): the lower middle of an even count is the
    largest value left of the upper middle; NaN anywhere gives NaN.
    """
    v = np.asarray(values)
    n = v.size
    if n == 0 or v.dtype.kind != "f" or np.isnan(v).any():
        return np.median(v)
    k = n // 2
    part = np.partition(v, k)
    if n % 2:
        return part[k]
    return np.mean(np.array([part[:k].max(), part[k]], dtype=part.dtype))


#: Most planes :func:`median_of_planes` sorts with a network (191 comparators for 32);
#: beyond, ``np.median`` is faster.
MAX_NETWORK_PLANES = 32


def _merge_sort_network(n: int) -> list[tuple[int, int]]:
    """Return the comparators (i, j), i < j, of Batcher's odd-even merge sort of n = 2**m wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def median_of_planes(stack, overwrite_input: bool = False) -> np.ndarray:
    """Median over the first axis of a few planes: ``np.median(stack, axis=0)``, faster.

    Up to :data:`MAX_NETWORK_PLANES` planes are sorted pixel by pixel with Batcher's
    odd-even merge-sort network (element-wise minimum and maximum of whole planes, padded
    with +inf to a power of two), about 8x faster than ``np.median`` for 15 planes and
    equal to it: a NaN in any plane reaches every output of the network, so such pixels
    are NaN as with ``np.median`` (use ``np.nanmedian`` on them).

    Parameters
    ----------
    stack : float ndarray, shape (k, ...)
        The planes, any float dtype and unit.
    overwrite_input : bool
        Allow the planes of ``stack`` to be reordered in place (saves one copy).

    Returns
    -------
    median : ndarray, shape stack.shape[1:]
        Same dtype as ``np.median`` gives (the input's float dtype).
    """
    stack = np.asarray(stack)
    k = stack.shape[0] if stack.ndim else 0
    if stack.ndim < 2 or k == 0 or k > MAX_NETWORK_PLANES or stack.dtype.kind != "f":
        return np.median(stack, axis=0)
    if k == 1:
        return stack[0].copy()
    n = 1 << (k - 1).bit_length()
    wires = [stack[i] if overwrite_input else stack[i].copy() for i in range(k)]
    wires += [np.full(stack.shape[1:], np.inf, dtype=stack.dtype) for _ in range(n - k)]
    spare = np.empty_like(wires[0])
    for a, b in _merge_sort_network(n):
        np.minimum(wires[a], wires[b], out=spare)
        np.maximum(wires[a], wires[b], out=wires[b])
        wires[a], spare = spare, wires[a]
    m = k // 2
    if k % 2:
        return wires[m].copy() if overwrite_input else wires[m]
    out = np.add(wires[m - 1], wires[m])
    return np.true_divide(out, 2, out=out, casting="unsafe")


def _median_and_std(sample) -> tuple[float, float]:
    """Median and 1.4826 MAD of a (thinned) sample; NaN, NaN if empty."""
    if sample.size == 0:
        return float("nan"), float("nan")
    med = _median(sample)
    return med, float(1.482602218505602 * _median(np.abs(sample - med)))


def _thinned_index(usable) -> np.ndarray:
    """Flat indices of the usable pixels, thinned as :func:`_thin` thins ``values[usable]``."""
    idx = np.flatnonzero(usable)
    return idx[:: max(1, idx.size // MAX_SAMPLES)]


def _running_mean(sums, weights, counts, window):
    """Centred running sums over ``window`` rows: (mean, count)."""
    kernel = np.ones(int(window))
    s = np.convolve(sums, kernel, mode="same")
    w = np.convolve(weights, kernel, mode="same")
    n = np.convolve(counts, kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 0, s / np.where(w > 0, w, 1), np.nan), n


def estimate_frame(frame, weights, amplifiers, params: OneOverFParams = OneOverFParams(), *, xstart=0,
                   reference_columns=()) -> FrameEstimate:
    """Estimate amplifier offsets, odd/even columns and row-by-row 1/f in one frame.

    Parameters
    ----------
    frame : float ndarray, shape (ny, nx)
        The frame with the scene removed or masked: a group of a ramp (DN) or an
        integration of rateints (DN/s), minus the scene model in time-series mode.
    weights : float ndarray, shape (ny, nx)
        Inverse variance of each pixel (any common scale); 0 for pixels that must not
        enter the estimate (flagged, NaN, masked source). Pixels where ``frame`` is not
        finite are ignored whatever their weight.
    amplifiers : sequence of (x0, x1)
        Column range of each amplifier, ``[x0, x1)`` in frame columns
        (:attr:`tsotools.detector.Geometry.amplifiers`).
    params : OneOverFParams
    xstart : int
        Full-frame column of frame column 0: odd/even parity is that of the detector.
    reference_columns : sequence of int
        Frame columns that are reference columns (0-based), used by the fall-back.

    Returns
    -------
    FrameEstimate
        ``frame - correction`` is the cleaned frame. Rows with too few usable pixels are
        filled by the fall-backs in order (reference columns, other amplifiers, offset).
    """
    frame = np.asarray(frame)
    weights = np.asarray(weights)
    if frame.ndim != 2 or weights.shape != frame.shape:
        raise ValueError(f"frame and weights must be 2-D of one shape, got {frame.shape} and {weights.shape}")
    ny, nx = frame.shape
    namps = len(amplifiers)
    if namps == 0:
        raise ValueError("amplifiers must list at least one column range")
    for x0, x1 in amplifiers:
        if not 0 <= x0 < x1 <= nx:
            raise ValueError(f"amplifier columns {x0}..{x1} are outside the frame's 0..{nx}")
    refcol = np.zeros(nx, dtype=bool)
    if len(reference_columns):
        refcol[np.asarray(reference_columns, dtype=int)] = True
    rows = np.zeros((namps, ny))
    noise = np.full((namps, ny), np.inf)
    source = np.full((namps, ny), _NONE, dtype=np.int8)
    parity = np.zeros((namps, 2))
    offsets = np.zeros(namps)
    has_offset = np.zeros(namps, dtype=bool)
    par_cols = []
    ref_stats = []
    ref_scale = np.ones(namps)
    # work arrays, one amplifier's worth, reused from one amplifier to the next
    size = ny * max(x1 - x0 for x0, x1 in amplifiers)
    work32 = [np.empty(size, dtype=np.float32) for _ in range(5)]
    work8 = [np.empty(size, dtype=bool) for _ in range(3)]
    for a, (x0, x1) in enumerate(amplifiers):
        r = np.asarray(frame[:, x0:x1], dtype=np.float32)
        w = np.asarray(weights[:, x0:x1], dtype=np.float32)
        shape, m = (ny, x1 - x0), ny * (x1 - x0)
        rv, wv, sw, buf, wk = (b[:m].reshape(shape) for b in work32)
        usable, keep, test = (b[:m].reshape(shape) for b in work8)
        np.greater(w, 0, out=usable)
        usable &= np.isfinite(r, out=test)
        usable &= np.isfinite(w, out=test)
        pc = np.zeros(x1 - x0, dtype=np.float32)
        par_cols.append(pc)
        ref_stats.append(None)
        sample = _thinned_index(usable)
        if sample.size == 0:
            continue
        rv.fill(0)
        np.copyto(rv, r, where=usable)
        wv.fill(0)
        np.copyto(wv, w, where=usable)
        np.sqrt(wv, out=sw)
        rflat, sflat = rv.reshape(-1), sw.reshape(-1)
        centre = np.float32(_median(rflat[sample]))
        # the signed deviation (rv - centre) * sw on the thinned sample, its robust scale
        scale = np.float32(_median_and_std((rflat[sample] - centre) * sflat[sample])[1])
        np.subtract(rv, centre, out=buf)
        np.abs(buf, out=buf)
        buf *= sw
        if not np.isfinite(scale) or scale <= 0:
            scale = np.float32(max(float(np.std(buf[usable])), 1e-30))
        np.less(buf, params.outlier_sigma * scale, out=keep)
        keep &= usable
        np.multiply(wv, keep, out=wk)

        if params.oddeven and x1 - x0 >= 2:
            ev = slice((xstart + x0) % 2, None, 2)  # columns of even full-frame index
            od = slice(1 - (xstart + x0) % 2, None, 2)
            we, wo = float(wk[:, ev].sum()), float(wk[:, od].sum())
            if we > 0 and wo > 0:
                me = float((wk[:, ev] * (rv[:, ev] - centre)).sum()) / we
                mo = float((wk[:, od] * (rv[:, od] - centre)).sum()) / wo
                half = 0.5 * (me - mo)
                pc[ev], pc[od] = half, -half
                parity[a] = (half, -half)
        rc = rv
        rc -= pc[None, :]

        mu = np.zeros(ny)
        threshold = np.float32(params.clip_sigma * scale)
        for it in range(params.clip_iters + 1):
            wsum = wk.sum(axis=1, dtype=np.float64)
            ok = wsum > 0
            np.multiply(wk, rc, out=buf)
            mu = np.where(ok, buf.sum(axis=1, dtype=np.float64) / np.where(ok, wsum, 1), 0.0)
            if it == params.clip_iters:
                break
            np.subtract(rc, mu[:, None].astype(np.float32), out=buf)
            np.abs(buf, out=buf)
            buf *= sw  # 0 where not usable: kept here, but with weight wv = 0
            np.less(buf, threshold, out=keep)
            np.multiply(wv, keep, out=wk)
        keep &= usable
        count = keep.sum(axis=1)
        good = count >= params.min_row_pixels
        rows[a, good] = mu[good]
        noise[a, good] = float(scale) ** 2 / wsum[good]
        source[a, good] = _MEASURED
        if good.any():
            offsets[a] = float(np.median(mu[good]))
            has_offset[a] = True
        elif keep.any():
            wk = np.where(keep, wv, np.float32(0))
            offsets[a] = float((wk * rc).sum(dtype=np.float64) / wk.sum(dtype=np.float64))
            has_offset[a] = True
        rcols = refcol[x0:x1]
        ref_scale[a] = float(scale)
        if rcols.any():
            kr = keep[:, rcols]
            wr = np.where(kr, wv[:, rcols], np.float32(0))
            ref_stats[a] = ((wr * rc[:, rcols]).sum(axis=1, dtype=np.float64), wr.sum(axis=1, dtype=np.float64),
                            kr.sum(axis=1).astype(np.float64))

    if has_offset.any() and not has_offset.all():
        offsets[~has_offset] = np.mean(offsets[has_offset])
    measured = source == _MEASURED
    refcol_rows = np.zeros_like(measured)
    for a in range(namps):
        missing = ~measured[a]
        if missing.any() and ref_stats[a] is not None:
            sums, wts, cnt = ref_stats[a]
            mean, count = _running_mean(sums, wts, cnt, params.refcol_window)
            wwin = np.convolve(wts, np.ones(int(params.refcol_window)), mode="same")
            use = missing & (count >= params.min_row_pixels) & np.isfinite(mean) & (wwin > 0)
            rows[a, use] = mean[use]
            noise[a, use] = ref_scale[a] ** 2 / wwin[use]
            source[a, use] = _REFCOLS
            refcol_rows[a] = use
    if params.shrink and measured.any():
        _shrink_rows(rows, noise, offsets, measured | refcol_rows, measured)
    for a in range(namps):
        missing = (source[a] != _MEASURED) & (source[a] != _REFCOLS)
        others = [b for b in range(namps) if b != a]
        if others and missing.any():
            stripes = np.where(measured[others], rows[others] - offsets[others, None], 0.0)
            n_other = measured[others].sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_other = np.where(n_other > 0, stripes.sum(axis=0) / np.maximum(n_other, 1), 0.0)
            # ROEBA's fall-back, scaled by how much of this amplifier's stripes the others'
            # mean predicts (the part of the 1/f common to all outputs): never adds noise
            both = measured[a] & (n_other > 0)
            rho = 0.0
            if both.sum() >= 4:
                x, y = mean_other[both], rows[a, both] - offsets[a]
                sxx = float(np.sum(x * x))
                rho = float(np.clip(np.sum(x * y) / sxx, 0.0, 1.0)) if sxx > 0 else 0.0
            use = missing & (n_other > 0)
            rows[a, use] = offsets[a] + rho * mean_other[use]
            source[a, use] = _AMPS
            missing &= ~use
        if missing.any() and has_offset.any():
            rows[a, missing] = offsets[a]
            source[a, missing] = _OFFSET

    correction = np.empty((ny, nx), dtype=np.float32)
    covered = np.zeros(nx, dtype=bool)
    for a, (x0, x1) in enumerate(amplifiers):
        correction[:, x0:x1] = rows[a][:, None].astype(np.float32) + par_cols[a][None, :]
        covered[x0:x1] = True
    correction[:, ~covered] = 0.0
    return FrameEstimate(correction, rows, parity, source, offsets)


def _shrink_rows(rows, noise, offsets, which, measured):
    """Replace the row stripes of rows ``which`` by their least-squares-optimal estimate, in place.

    The stripes s = rows - offsets are modelled, per amplifier, as a stationary series
    along the rows with variance S and correlation r**|k| between rows k apart (1/f noise:
    a row is read just after the one before it, so neighbouring stripes are alike), seen
    through independent noise of variance ``noise``. The estimate is the posterior mean of
    that model (a Kalman smoother along the rows): a well-measured row keeps its value, a
    noisy one (rows of the grism trace or the weak-lens donut) leans on the rows read just
    before and after it. With r = 0 this is the independent shrinkage S / (S + N). S and r
    come from the ``measured`` rows of below-median noise.
    """
    from scipy.linalg import solve_banded

    stripes = rows - offsets[:, None]
    quiet = measured & (noise <= np.median(noise[measured]))
    s_var = float(np.mean(stripes[quiet] ** 2 - noise[quiet]))
    if not s_var > 0:
        rows[which] = np.broadcast_to(offsets[:, None], rows.shape)[which]
        return
    pairs = quiet[:, 1:] & quiet[:, :-1]
    r = 0.0
    if pairs.sum() >= 8:
        r = float(np.sum((stripes[:, 1:] * stripes[:, :-1])[pairs])) / (pairs.sum() * s_var)
        r = min(max(r, 0.0), 0.95)
    ny = rows.shape[1]
    # precision of the AR(1) prior (tridiagonal) plus that of the measurements
    ab = np.zeros((3, ny))
    ab[0, 1:] = ab[2, :-1] = -r
    ab[1] = 1 + r * r
    ab[1, [0, -1]] = 1.0
    ab /= s_var * (1 - r * r)
    for a in range(rows.shape[0]):
        if not which[a].any():
            continue
        prec = np.where(which[a], 1.0 / np.maximum(noise[a], 1e-12 * s_var), 0.0)
        band = ab.copy()
        band[1] += prec
        post = solve_banded((1, 1), band, prec * np.where(which[a], stripes[a], 0.0))
        rows[a, which[a]] = offsets[a] + post[which[a]]


# ------------------------------------------------------------------- the scene model
def scene_derivatives(model, index) -> np.ndarray:
    """Gradients of a scene model at some pixels, for the pointing terms of :func:`fit_scene`.

    Parameters
    ----------
    model : float ndarray, shape (ny, nx)
        Scene model (temporal mean image), DN or DN/s; NaN pixels count as 0.
    index : int ndarray, shape (npix,)
        Flat indices (``y * nx + x``) of the pixels wanted (the source mask).

    Returns
    -------
    derivs : float32 ndarray, shape (2, npix)
        d(model)/dx and d(model)/dy (central differences, per pixel).
    """
    m = np.nan_to_num(np.asarray(model, dtype=np.float32))
    if m.ndim != 2:
        raise ValueError(f"model must be 2-D, got shape {m.shape}")
    gy, gx = np.gradient(m)
    idx = np.asarray(index, dtype=np.intp)
    return np.stack([gx.ravel()[idx], gy.ravel()[idx]]).astype(np.float32)


def fit_scene(values, model_values, derivs, weights, groups=None) -> np.ndarray:
    """Fit one integration's scene: flux scale, pointing shift and a constant per group.

    Solves ``values = s * model + ax * dM/dx + ay * dM/dy + c[group]`` by weighted least
    squares over the source pixels, so the scale follows a transit and the shift follows
    jitter and antenna moves (first-order Taylor expansion, good to a few tenths of a
    pixel).

    Parameters
    ----------
    values : float ndarray, shape (npix,)
        The integration at the source pixels (for a ramp: last group minus first, which
        cancels the reset level), DN or DN/s.
    model_values : float ndarray, shape (npix,)
        The scene model at the same pixels, same unit.
    derivs : float ndarray, shape (2, npix)
        :func:`scene_derivatives` of the model.
    weights : float ndarray, shape (npix,)
        Inverse variances; 0 (or NaN values) leaves a pixel out.
    groups : int ndarray, shape (npix,), optional
        Group (amplifier) of each pixel, each with its own constant; default one constant.

    Returns
    -------
    coef : float64 ndarray, shape (3,)
        ``(s, ax, ay)``: the scale and the shift terms (pixels times the scale). NaN if
        fewer pixels than unknowns are usable.
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(model_values, dtype=np.float64)
    d = np.asarray(derivs, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if d.shape != (2,) + v.shape or m.shape != v.shape or w.shape != v.shape:
        raise ValueError("values, model_values, weights (npix,) and derivs (2, npix) do not match")
    g = np.zeros(v.shape, dtype=np.intp) if groups is None else np.asarray(groups, dtype=np.intp)
    ok = np.isfinite(v) & np.isfinite(m) & np.isfinite(w) & (w > 0) & np.isfinite(d).all(axis=0)
    labels, g = np.unique(g[ok], return_inverse=True)
    ncols = 3 + labels.size
    if ok.sum() < 2 * ncols:
        return np.full(3, np.nan)
    sw = np.sqrt(w[ok])
    a = np.zeros((int(ok.sum()), ncols))
    a[:, 0] = m[ok]
    a[:, 1] = d[0, ok]
    a[:, 2] = d[1, ok]
    a[np.arange(g.size), 3 + g] = 1.0
    a *= sw[:, None]
    b = v[ok] * sw
    coef = np.linalg.lstsq(a, b, rcond=None)[0]
    # one pass of clipping: cosmic rays on the star would pull the fit
    res = b - a @ coef
    s = robust_std(res)
    if np.isfinite(s) and s > 0:
        keep = np.abs(res) < 5 * s
        if keep.sum() >= 2 * ncols and not keep.all():
            coef = np.linalg.lstsq(a[keep], b[keep], rcond=None)[0]
    return coef[:3]


def predict_scene(model, derivs, index, coef, out=None) -> np.ndarray:
    """The scene of one integration (or group) from the model and :func:`fit_scene` terms.

    Parameters
    ----------
    model : float ndarray, shape (ny, nx)
        Scene model for this frame (the temporal mean of this group), DN or DN/s.
    derivs : float ndarray, shape (2, npix)
        Its :func:`scene_derivatives` at ``index``.
    index : int ndarray, shape (npix,)
        Flat indices of the source pixels, where the shift terms apply.
    coef : sequence of 3 floats
        ``(s, ax, ay)`` from :func:`fit_scene`; NaN terms count as (1, 0, 0).
    out : float32 ndarray, shape (ny, nx), optional
        Array to write into.

    Returns
    -------
    scene : float32 ndarray, shape (ny, nx)
        ``s * model`` everywhere, plus ``ax * dM/dx + ay * dM/dy`` on the source pixels.
    """
    s, ax, ay = (float(c) for c in coef)
    if not np.isfinite(s):
        s, ax, ay = 1.0, 0.0, 0.0
    ax = ax if np.isfinite(ax) else 0.0
    ay = ay if np.isfinite(ay) else 0.0
    m = np.asarray(model)
    if out is None:
        out = np.empty(m.shape, dtype=np.float32)
    np.multiply(m, np.float32(s), out=out, casting="unsafe")
    if len(index):
        flat = out.reshape(-1)
        d = np.asarray(derivs)
        flat[np.asarray(index)] += (np.float32(ax) * d[0] + np.float32(ay) * d[1]).astype(np.float32)
    return out


def solve_pixel_regression(mean_values, sum_products, sum_u, sum_uu, n) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel linear model of a time series on per-integration regressors, from sums.

    Fits ``d_i(p) = mean(p) + B(p) . (u_i - ubar)`` by least squares for every pixel ``p``
    at once (every pixel sees the same regressors ``u_i``: flux scale, pointing shift), so
    only running sums over integrations are needed and memory does not grow with them.

    Parameters
    ----------
    mean_values : float ndarray, shape (npix,)
        Temporal mean of each pixel, any unit.
    sum_products : float ndarray, shape (k, npix)
        Sum over integrations of ``u_ik * d_i(p)``.
    sum_u : float ndarray, shape (k,)
        Sum over integrations of the regressors.
    sum_uu : float ndarray, shape (k, k)
        Sum over integrations of ``u_i u_i^T``.
    n : int
        Number of integrations summed.

    Returns
    -------
    coef : float64 ndarray, shape (k, npix)
        ``B(p)``, per unit of each regressor. Directions along which the regressors did not
        vary get 0 (pseudo-inverse with a relative cut of 1e-6).
    ubar : float64 ndarray, shape (k,)
        Mean regressors.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    su = np.asarray(sum_u, dtype=np.float64)
    ubar = su / n
    cov = np.asarray(sum_uu, dtype=np.float64) / n - np.outer(ubar, ubar)
    cross = np.asarray(sum_products, dtype=np.float64) / n - ubar[:, None] * np.asarray(mean_values, dtype=np.float64)[None]
    return np.linalg.pinv(cov, rcond=1e-6, hermitian=True) @ cross, ubar


def predict_pixels(mean_image, coef, index, du, out=None) -> np.ndarray:
    """Scene of one frame from :func:`solve_pixel_regression`: ``mean + B . du`` at ``index``.

    Parameters
    ----------
    mean_image : float ndarray, shape (ny, nx)
        Temporal mean (cleaned), DN or DN/s.
    coef : float ndarray, shape (k, npix)
        ``B`` at the pixels ``index``.
    index : int ndarray, shape (npix,)
        Flat indices of the modelled (source) pixels.
    du : float ndarray, shape (k,)
        This integration's regressors minus their mean.
    out : float32 ndarray, shape (ny, nx), optional

    Returns
    -------
    scene : float32 ndarray, shape (ny, nx)
    """
    m = np.asarray(mean_image)
    if out is None:
        out = np.empty(m.shape, dtype=np.float32)
    out[...] = m
    if len(index) and len(du):
        out.reshape(-1)[np.asarray(index)] += (np.asarray(du, dtype=np.float32) @ np.asarray(coef, dtype=np.float32))
    return out


def row_levels(frame, usable, amplifiers, window=9, min_pixels=16) -> np.ndarray:
    """Slowly varying level of each amplifier along the rows, interpolated across gaps.

    Row means over the usable (background) pixels, smoothed by a running mean over
    ``window`` rows and linearly interpolated over rows without enough pixels (the grism
    trace). This follows the low-frequency part of the 1/f noise (drifts over tens of
    rows), which is common to neighbouring rows, through rows that have no background.

    Parameters
    ----------
    frame : float ndarray, shape (ny, nx)
        Frame minus a scene model, DN or DN/s.
    usable : bool ndarray, shape (ny, nx)
        Background pixels to measure on.
    amplifiers : sequence of (x0, x1)
        Column range of each amplifier.
    window : int
        Rows in the running mean.
    min_pixels : int
        Pixels a row needs to be measured.

    Returns
    -------
    levels : float32 ndarray, shape (ny, namps)
        Level of each row of each amplifier; the amplifier's median where no row could
        be measured, 0 where no pixel is usable.
    """
    frame = np.asarray(frame)
    usable = np.asarray(usable, dtype=bool) & np.isfinite(frame)
    ny = frame.shape[0]
    out = np.zeros((ny, len(amplifiers)), dtype=np.float32)
    y = np.arange(ny)
    kernel = np.ones(int(window))
    for a, (x0, x1) in enumerate(amplifiers):
        f = frame[:, x0:x1]
        u = usable[:, x0:x1]
        sample = _thin(f[u])
        if sample.size == 0:
            continue
        med, scale = _median_and_std(sample)
        med = float(med)
        if np.isfinite(scale) and scale > 0:
            with np.errstate(invalid="ignore"):
                u = np.abs(f - med) < 5 * scale
            u &= usable[:, x0:x1]
        v = np.zeros(f.shape, dtype=np.float64)
        np.copyto(v, f, where=u)
        n = u.sum(axis=1).astype(np.float64)
        ok = n >= min_pixels
        if not ok.any():
            out[:, a] = med
            continue
        s = np.convolve(np.where(ok, v.sum(axis=1), 0), kernel, mode="same")
        c = np.convolve(np.where(ok, n, 0), kernel, mode="same")
        smooth = s[ok] / c[ok]
        out[:, a] = np.interp(y, y[ok], smooth)
    return out


def profile_shift(profile, reference) -> tuple[float, float]:
    """Scale and sub-pixel shift of a 1-D profile relative to a reference profile.

    Least squares of ``profile = a * reference - b * d(reference)/dx + c``: the
    shift is ``b / a`` (pixels, positive when the profile moved to larger x). Used on the
    spectrum collapsed over rows (shift along dispersion) and on the trace collapsed over
    columns (cross-dispersion), which separates the two directions better than a 2-D fit.

    Parameters
    ----------
    profile, reference : float ndarray, shape (n,)
        Same unit; non-finite samples are ignored.

    Returns
    -------
    scale, shift : float
        NaN when fewer than 4 samples are finite or the reference is flat.
    """
    p = np.asarray(profile, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 1:
        raise ValueError(f"profile and reference must be 1-D of one length, got {p.shape} and {r.shape}")
    if r.size < 4:
        return float("nan"), float("nan")
    dr = np.gradient(np.nan_to_num(r))
    ok = np.isfinite(p) & np.isfinite(r)
    if ok.sum() < 4 or not np.any(dr[ok]):
        return float("nan"), float("nan")
    a = np.stack([r[ok], -dr[ok], np.ones(int(ok.sum()))], axis=1)
    coef = np.linalg.lstsq(a, p[ok], rcond=None)[0]
    if coef[0] == 0:
        return float("nan"), float("nan")
    return float(coef[0]), float(coef[1] / coef[0])
