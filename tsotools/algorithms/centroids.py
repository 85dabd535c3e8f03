"""Star positions in time-series frames: template shifts, donut and trace centres, flags.

Pure functions on numpy arrays (no file I/O, no logging set-up, inputs never modified).
Pixel coordinates are 0-based ``(x, y)`` with ``x`` along the last numpy axis; pixel
``[j, i]`` covers ``i - 0.5 <= x < i + 0.5`` (the photutils and pipeline convention).

Methods
-------
- :class:`TemplateShift` ("xcorr"): the shift of a frame against a template (the median
  frame) that maximises their cross-correlation, found on the integer grid by FFT
  correlation and refined to sub-pixel precision by Gauss-Newton template matching
  (Lucas & Kanade 1981, IJCAI 81, 674) with a Fourier-shifted template, which is exact for
  band-limited images (Guizar-Sicairos, Thurman & Fienup 2008, Opt. Lett. 33, 156). Works
  on any PSF shape, including the weak-lens donut where Gaussian fits fail, and in 1D on
  spectra.
- :func:`donut_center`: the absolute centre of a pupil image (weak lens) from a circle
  fitted to its outer edge, which azimuthal brightness structure does not move.
- :func:`centroid_com` and :func:`centroid_gauss2d`: compact PSFs, with photutils'
  centre of mass and an astropy 2D Gaussian (plus constant) fit, like the pipeline's
  ``tso_photometry`` (centre of mass, then a Gaussian fit).
- :func:`fit_trace`: the cross-dispersion centre of a grism trace, column by column, by
  a symmetric-window centroid, smoothed by a sigma-clipped polynomial (cf. Eureka! and
  tshirt, which fit Gaussians per column).
- :func:`flag_excursions`: integrations whose position leaves its running median by many
  robust sigmas (an antenna move: a sudden step that settles in under 30 s).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

# scipy, astropy and photutils are imported where used, so that the command line (which
# reads the defaults of the dataclasses below) starts fast.

__all__ = [
    "CENTROID_METHODS",
    "FLAG_EXCURSION",
    "FLAG_FAILED",
    "FLAG_BITS",
    "CentroidParams",
    "CentroidResult",
    "DonutParams",
    "ExcursionParams",
    "ShiftParams",
    "ShiftResult",
    "TemplateShift",
    "TraceFit",
    "TraceParams",
    "centroid_com",
    "centroid_gauss2d",
    "donut_center",
    "fit_trace",
    "flag_excursions",
    "median_frame",
    "moment_widths",
]

#: Methods of ``tsotools centroid --method``.
CENTROID_METHODS = ("auto", "com", "gauss2d", "xcorr")

#: FLAG bit: the measurement failed for this integration (NaN position).
FLAG_FAILED = 1
#: FLAG bit: the position is in a sudden excursion from its running median (antenna move).
FLAG_EXCURSION = 2
#: Bit -> (name, description) of the FLAG column.
FLAG_BITS = {
    FLAG_FAILED: ("FAILED", "no position measured (NaN)"),
    FLAG_EXCURSION: ("EXCURSION", "sudden position step or excursion (e.g. antenna move)"),
}


# =============================================================================== settings
@dataclass(frozen=True)
class CentroidParams:
    """Settings of ``tsotools centroid``.

    Parameters
    ----------
    method : str
        "xcorr" (shift against the median frame; weak lens), "gauss2d" or "com" (compact
        PSFs), or "auto": xcorr for weak-lens pupils (PUPIL WLP8/WLM8, FILTER WLP4) and
        extended PSFs, gauss2d otherwise. Grism data always use cross-correlation.
    box : int or None
        Side of the square box measured around the star, pixels; None sizes it from the
        median frame (the donut plus a margin, or 8 Gaussian sigmas for a compact PSF).
    tolerance_px : float
        Largest acceptable offset of the median position from XREF_SCI/YREF_SCI, pixels.
        The STScI known-issues page asks users to check it; 0.5 px is half a pixel.
    template_ints : int
        Integrations, evenly spaced, whose median is the template (memory is bounded by
        this number, not by the number of integrations).
    """

    method: str = "auto"
    box: int | None = None
    tolerance_px: float = 0.5
    template_ints: int = 25

    def __post_init__(self):
        if self.method not in CENTROID_METHODS:
            raise ValueError(f"method must be one of {', '.join(CENTROID_METHODS)}, got {self.method!r}")
        if self.box is not None and (isinstance(self.box, bool) or int(self.box) != self.box or self.box < 5):
            raise ValueError(f"box must be an integer >= 5 pixels, got {self.box!r}")
        if not (math.isfinite(self.tolerance_px) and self.tolerance_px > 0):
            raise ValueError(f"tolerance_px must be a positive number of pixels, got {self.tolerance_px!r}")
        if isinstance(self.template_ints, bool) or int(self.template_ints) != self.template_ints or self.template_ints < 1:
            raise ValueError(f"template_ints must be a positive integer, got {self.template_ints!r}")


@dataclass(frozen=True)
class ShiftParams:
    """Settings of :class:`TemplateShift`.

    Parameters
    ----------
    search_px : int
        Largest integer shift looked for by FFT cross-correlation before refining, pixels.
    max_iter : int
        Most Gauss-Newton iterations.
    converge_px : float
        Iterations stop when the last correction is smaller than this, pixels.
    pad_px : int
        Mirror padding of the template before its FFT, pixels (keeps the periodic FFT
        from ringing at the box edges).
    """

    search_px: int = 4
    max_iter: int = 8
    converge_px: float = 1e-4
    pad_px: int = 8

    def __post_init__(self):
        for name in ("search_px", "max_iter", "pad_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < (1 if name == "max_iter" else 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not (math.isfinite(self.converge_px) and self.converge_px > 0):
            raise ValueError(f"converge_px must be positive, got {self.converge_px!r}")


@dataclass(frozen=True)
class DonutParams:
    """Settings of :func:`donut_center`.

    Parameters
    ----------
    n_rays : int
        Rays from the centre along which the outer edge is found.
    step_px : float
        Sampling step along each ray, pixels.
    level : float
        Edge level: fraction of the way from the level outside the donut to the ring's
        brightness (0.5, the half-light point of the edge).
    clip_sigma : float
        Edge points further than this many robust sigmas from the fitted circle are
        dropped (a neighbour's light crossing the edge).
    iterations : int
        Rays are recast from each new centre this many times.
    max_excess : float
        Rays whose level just outside the edge exceeds the median of all rays by more
        than this fraction of the ring's brightness are not used (light from a
        neighbour lies across the edge there and would move it).
    """

    n_rays: int = 180
    step_px: float = 0.25
    level: float = 0.5
    clip_sigma: float = 3.0
    iterations: int = 3
    max_excess: float = 0.01

    def __post_init__(self):
        if isinstance(self.n_rays, bool) or int(self.n_rays) != self.n_rays or self.n_rays < 12:
            raise ValueError(f"n_rays must be an integer >= 12, got {self.n_rays!r}")
        if not (0 < self.step_px <= 1):
            raise ValueError(f"step_px must be in (0, 1] pixels, got {self.step_px!r}")
        if not (0 < self.level < 1):
            raise ValueError(f"level must be between 0 and 1, got {self.level!r}")
        if not (self.clip_sigma > 0):
            raise ValueError(f"clip_sigma must be positive, got {self.clip_sigma!r}")
        if isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not (self.max_excess > 0):
            raise ValueError(f"max_excess must be positive, got {self.max_excess!r}")


@dataclass(frozen=True)
class TraceParams:
    """Settings of :func:`fit_trace`.

    Parameters
    ----------
    halfwidth_px : float
        Half height of the symmetric window centred on the trace in each column, pixels.
    order : int
        Degree of the polynomial y(x) fitted to the column centres.
    min_signal : float
        Columns whose flux is below this fraction of the 95th-percentile column are not used.
    clip_sigma : float
        Sigma clipping of the column centres about the polynomial.
    """

    halfwidth_px: float = 6.0
    order: int = 2
    min_signal: float = 0.1
    clip_sigma: float = 4.0

    def __post_init__(self):
        if not (math.isfinite(self.halfwidth_px) and self.halfwidth_px >= 1):
            raise ValueError(f"halfwidth_px must be >= 1 pixel, got {self.halfwidth_px!r}")
        if isinstance(self.order, bool) or int(self.order) != self.order or not 0 <= self.order <= 5:
            raise ValueError(f"order must be an integer in 0..5, got {self.order!r}")
        if not (0 <= self.min_signal < 1):
            raise ValueError(f"min_signal must be in [0, 1), got {self.min_signal!r}")
        if not (self.clip_sigma > 0):
            raise ValueError(f"clip_sigma must be positive, got {self.clip_sigma!r}")


@dataclass(frozen=True)
class ExcursionParams:
    """Settings of :func:`flag_excursions`.

    Parameters
    ----------
    window : int
        Length of the running median the positions are compared with, integrations (odd).
    nsigma : float
        Threshold in robust sigmas (MAD of the point-to-point differences / sqrt 2).
    min_px : float
        Smallest excursion flagged whatever the noise, pixels (1 mas is 0.03 SW pixel).
    grow : int
        Flag this many integrations on each side of an excursion too.
    """

    window: int = 15
    nsigma: float = 6.0
    min_px: float = 0.02
    grow: int = 1

    def __post_init__(self):
        if isinstance(self.window, bool) or int(self.window) != self.window or self.window < 3:
            raise ValueError(f"window must be an integer >= 3 integrations, got {self.window!r}")
        if not (self.nsigma > 0):
            raise ValueError(f"nsigma must be positive, got {self.nsigma!r}")
        if not (self.min_px >= 0):
            raise ValueError(f"min_px must be >= 0, got {self.min_px!r}")
        if isinstance(self.grow, bool) or int(self.grow) != self.grow or self.grow < 0:
            raise ValueError(f"grow must be a non-negative integer, got {self.grow!r}")


# ================================================================================ results
@dataclass(frozen=True)
class ShiftResult:
    """Result of :meth:`TemplateShift.fit`.

    ``shift`` and ``shift_err`` are in (x[, y]) order, pixels; the frame matches
    ``amplitude * template(x - shift) + offset``.
    """

    shift: tuple[float, ...]
    shift_err: tuple[float, ...]
    amplitude: float
    offset: float
    reduced_chi2: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class CentroidResult:
    """One position measurement, 0-based pixels; NaN when it failed."""

    x: float
    y: float
    x_err: float
    y_err: float
    width_x: float
    width_y: float
    peak: float

    @property
    def ok(self) -> bool:
        """True when a finite position was measured."""
        return bool(np.isfinite(self.x) and np.isfinite(self.y))

    @classmethod
    def failed(cls) -> CentroidResult:
        """A result of NaNs."""
        return cls(*(np.nan,) * 7)


@dataclass(frozen=True)
class TraceFit:
    """A grism trace: polynomial y(x) and cross-dispersion width.

    Parameters
    ----------
    coeffs : tuple of float
        ``numpy.polynomial.Polynomial`` coefficients of y(x - x0), 0-based pixels.
    x0 : float
        Column the polynomial is centred on.
    width : float
        RMS cross-dispersion width of the trace (flux-weighted), pixels.
    ncols : int
        Columns used in the fit.
    """

    coeffs: tuple[float, ...]
    x0: float
    width: float
    ncols: int

    def y_at(self, x):
        """Trace centre row at columns ``x`` (0-based), pixels."""
        return np.polynomial.Polynomial(self.coeffs)(np.asarray(x, dtype=float) - self.x0)


# ============================================================================== templates
def median_frame(frames, mask=None) -> np.ndarray:
    """Median over integrations, ignoring NaN and masked pixels.

    Parameters
    ----------
    frames : float ndarray, shape (nframes, ny, nx) or (nframes, n)
        A sample of integrations (DN/s or any unit).
    mask : bool ndarray, same shape as ``frames``, optional
        True for pixels not to use (DQ flagged).

    Returns
    -------
    float64 ndarray, shape (ny, nx) or (n,)
        NaN where no integration has a usable value.
    """
    data = np.asarray(frames, dtype=float)
    if data.ndim < 2:
        raise ValueError(f"frames must have a leading integration axis, got shape {data.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            raise ValueError(f"mask shape {mask.shape} differs from frames shape {data.shape}")
        data = np.where(mask, np.nan, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return np.nanmedian(data, axis=0)


class TemplateShift:
    """Measure sub-pixel shifts of frames against one template (cross-correlation).

    Parameters
    ----------
    template : float ndarray, shape (ny, nx) or (n,)
        The reference frame (median of integrations), same units as the frames.
        NaN pixels are given no weight.
    weights : float ndarray, same shape, optional
        Inverse variance of a frame's pixels (1/ERR^2 of the median frame); zero or NaN
        excludes a pixel. Default: uniform.
    params : ShiftParams
    offset_labels : int ndarray, same shape, optional
        Give pixels with different labels separate additive offsets ``b`` (for example
        the amplifier of each column of a grism spectrum, whose 1/f and pre-amplifier
        offsets differ). Default: one offset.

    Notes
    -----
    Each frame is modelled as ``a * T(x - s) + b``. The integer part of ``s`` comes from
    the peak of the FFT cross-correlation; then Gauss-Newton steps solve the weighted
    linear least-squares problem for ``(a, b, a ds)`` with the template and its gradient
    shifted exactly in Fourier space (mirror-padded), until ``|ds| < converge_px``.
    The uncertainty is from the covariance of that fit scaled by the reduced chi-square.
    """

    def __init__(self, template, weights=None, params: ShiftParams | None = None, offset_labels=None):
        import scipy.fft as sfft
        from scipy import ndimage

        self.params = params or ShiftParams()
        t = np.asarray(template, dtype=float)
        if t.ndim not in (1, 2):
            raise ValueError(f"template must be 1D or 2D, got shape {t.shape}")
        if min(t.shape) < 4:
            raise ValueError(f"template must be at least 4 pixels along each axis, got shape {t.shape}")
        good = np.isfinite(t)
        if good.sum() < 8:
            raise ValueError("template has fewer than 8 finite pixels")
        if weights is None:
            w = np.ones_like(t)
        else:
            w = np.asarray(weights, dtype=float)
            if w.shape != t.shape:
                raise ValueError(f"weights shape {w.shape} differs from template shape {t.shape}")
            w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
        self.shape = t.shape
        self.ndim = t.ndim
        if offset_labels is None:
            self._offsets = [np.ones(t.shape)]
        else:
            labels = np.asarray(offset_labels)
            if labels.shape != t.shape:
                raise ValueError(f"offset_labels shape {labels.shape} differs from template shape {t.shape}")
            self._offsets = [(labels == v).astype(float) for v in np.unique(labels)]
        self._noff = len(self._offsets)
        self._weights = np.where(good, w, 0.0)
        filled = np.where(good, t, np.nanmedian(t))
        if not good.all():  # replace bad pixels by a local median so the FFT sees no spikes
            smooth = ndimage.median_filter(filled, size=3, mode="nearest")
            filled = np.where(good, t, smooth)
        pad = min(self.params.pad_px, min(t.shape) - 1)
        self._pad = pad
        padded = np.pad(filled, pad, mode="reflect") if pad else filled
        self._padded_shape = padded.shape
        self._ft = sfft.rfftn(padded)
        freqs = []
        for axis, n in enumerate(padded.shape):
            f = sfft.rfftfreq(n) if axis == padded.ndim - 1 else sfft.fftfreq(n)
            shape = [1] * padded.ndim
            shape[axis] = f.size
            freqs.append(f.reshape(shape))
        self._freqs = freqs
        # derivative kernels 2 pi i f, with the unpaired Nyquist term zeroed
        self._deriv = []
        for axis, f in enumerate(freqs):
            d = 2j * np.pi * f.copy()
            n = padded.shape[axis]
            if n % 2 == 0:
                d[np.isclose(np.abs(f), 0.5)] = 0.0
            self._deriv.append(d)
        self._template = filled
        self._centered_t = np.where(self._weights > 0, filled - np.average(filled, weights=self._weights + 1e-300), 0.0)

    # ------------------------------------------------------------------ helpers
    def _shifted(self, shift_axes):
        """Template and its gradient (numpy axis order) at ``x - shift``."""
        import scipy.fft as sfft

        phase = 1.0
        for f, s in zip(self._freqs, shift_axes):
            phase = phase * np.exp(-2j * np.pi * f * s)
        spec = self._ft * phase
        n = self._padded_shape
        crop = tuple(slice(self._pad, self._pad + m) for m in self.shape)
        t = sfft.irfftn(spec, s=n)[crop]
        grads = [sfft.irfftn(spec * d, s=n)[crop] for d in self._deriv]
        return t, grads

    def _integer_guess(self, data, w):
        import scipy.fft as sfft

        search = self.params.search_px
        if search == 0:
            return np.zeros(self.ndim)
        d = np.where(w > 0, data - np.average(data, weights=w), 0.0)
        corr = sfft.irfftn(sfft.rfftn(d) * np.conj(sfft.rfftn(self._centered_t)), s=self.shape)
        corr = np.fft.fftshift(corr)
        centre = np.array([n // 2 for n in self.shape])
        sl = tuple(slice(max(c - search, 0), c + search + 1) for c in centre)
        sub = corr[sl]
        peak = np.unravel_index(np.argmax(sub), sub.shape)
        return np.array([p + s.start - c for p, s, c in zip(peak, sl, centre)], dtype=float)

    # -------------------------------------------------------------------- public
    def fit(self, data, weights=None) -> ShiftResult:
        """Shift of one frame against the template.

        Parameters
        ----------
        data : float ndarray, same shape as the template
            The frame; NaN pixels are ignored.
        weights : float ndarray, same shape, optional
            Per-frame inverse variances; default the template's weights.

        Returns
        -------
        ShiftResult
            NaN shift and ``converged=False`` when the fit is singular or runs away.
        """
        d = np.asarray(data, dtype=float)
        if d.shape != self.shape:
            raise ValueError(f"data shape {d.shape} differs from template shape {self.shape}")
        w = self._weights if weights is None else np.where(np.isfinite(weights) & (np.asarray(weights) > 0), weights, 0.0)
        w = np.where(np.isfinite(d), w, 0.0)
        nan = ShiftResult((np.nan,) * self.ndim, (np.nan,) * self.ndim, np.nan, np.nan, np.nan, 0, False)
        if np.count_nonzero(w) < 2 * (self.ndim + 2):
            return nan
        d = np.where(w > 0, d, 0.0)
        s = self._integer_guess(d, w)
        limit = self.params.search_px + 2.0
        converged = False
        it = 0
        cov = None
        for it in range(1, self.params.max_iter + 1):
            t, grads = self._shifted(s)
            cols = [t] + self._offsets + grads
            a_mat = np.stack([c.ravel() for c in cols], axis=1)
            wv = w.ravel()
            ata = a_mat.T @ (a_mat * wv[:, None])
            atb = a_mat.T @ (d.ravel() * wv)
            try:
                sol = np.linalg.solve(ata, atb)
                cov = np.linalg.inv(ata)
            except np.linalg.LinAlgError:
                return nan
            amp = sol[0]
            if not np.isfinite(amp) or amp == 0:
                return nan
            step = -sol[1 + self._noff:] / amp
            s = s + step
            if not np.all(np.isfinite(s)) or np.any(np.abs(s) > limit):
                return nan
            if np.max(np.abs(step)) < self.params.converge_px:
                converged = True
                break
        # final residuals at the converged shift
        t, grads = self._shifted(s)
        model = amp * t + sum(b * o for b, o in zip(sol[1 : 1 + self._noff], self._offsets))
        resid = (d - model) * np.sqrt(w)
        dof = max(np.count_nonzero(w) - len(sol), 1)
        rchi2 = float(np.sum(resid**2) / dof)
        scale = max(rchi2, 1e-30)
        var_c = np.diag(cov)[1 + self._noff:] * scale
        err = np.sqrt(np.abs(var_c)) / abs(amp)
        return ShiftResult(
            shift=tuple(float(v) for v in s[::-1]),
            shift_err=tuple(float(v) for v in err[::-1]),
            amplitude=float(amp),
            offset=float(sol[1]),
            reduced_chi2=rchi2,
            iterations=it,
            converged=converged,
        )


# ============================================================================ donut centre
def _kasa_circle(x, y):
    """Algebraic least-squares circle (Kasa 1976): centre (xc, yc) and radius."""
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    b = x**2 + y**2
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    xc, yc = sol[0] / 2, sol[1] / 2
    r = np.sqrt(sol[2] + xc**2 + yc**2)
    return xc, yc, r


def donut_center(image, guess_xy, params: DonutParams | None = None, mask=None):
    """Absolute centre of a weak-lens (pupil) image from a circle fitted to its outer edge.

    Along rays cast from the current centre, the outer edge is where the profile falls
    to ``level`` of the way from the level outside to the ring's maximum; a circle is fitted
    to those points (Kasa 1976) with sigma clipping, and the rays are recast from the new
    centre. Azimuthal brightness structure scales a ray's profile and leaves the edge
    radius unchanged, so the centre is unbiased where a centre of mass or a Gaussian fit
    is pulled by the structure.

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Image of the donut (median frame), DN/s. NaN and masked pixels are filled from
        their neighbours.
    guess_xy : tuple of float
        Starting centre (x, y), 0-based pixels, within a few pixels of the truth.
    params : DonutParams
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels not to use.

    Returns
    -------
    x, y, radius, x_err, y_err : float
        Centre (0-based pixels), outer radius and centre uncertainties (pixels); NaN when
        fewer than a third of the rays find an edge.
    """
    from astropy.stats import mad_std
    from scipy import ndimage

    p = params or DonutParams()
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    bad = ~np.isfinite(img)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != img.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {img.shape}")
        bad |= mask
    if bad.all():
        raise ValueError("image has no usable pixel")
    if bad.any():
        filled = np.where(bad, np.nanmedian(np.where(bad, np.nan, img)), img)
        smooth = ndimage.median_filter(filled, size=5, mode="nearest")
        img = np.where(bad, smooth, img)
    ny, nx = img.shape
    xc, yc = (float(v) for v in guess_xy)
    theta = np.linspace(0, 2 * np.pi, p.n_rays, endpoint=False)
    failed = (np.nan,) * 5
    radius = np.nan
    for _ in range(p.iterations):
        rmax = min(xc, yc, nx - 1 - xc, ny - 1 - yc)
        if not rmax > 4:
            return failed
        r = np.arange(0.0, rmax, p.step_px)
        xs = xc + np.cos(theta)[:, None] * r[None, :]
        ys = yc + np.sin(theta)[:, None] * r[None, :]
        prof = ndimage.map_coordinates(img, [ys.ravel(), xs.ravel()], order=1, mode="nearest").reshape(xs.shape)
        prof = ndimage.uniform_filter1d(prof, size=max(int(round(1.0 / p.step_px)), 1), axis=1)
        edges = np.full(p.n_rays, np.nan)
        lows = np.full(p.n_rays, np.nan)
        tops = np.full(p.n_rays, np.nan)
        for k in range(p.n_rays):
            pk = prof[k]
            imax = int(np.argmax(pk))
            top = pk[imax]
            # outside level: the median beyond the point where the profile last exceeds half the top
            above = np.flatnonzero(pk > 0.5 * top)
            last = above[-1] if above.size else imax
            outside = pk[min(last + int(4 / p.step_px), pk.size - 1):]
            if outside.size < 3:
                continue
            low = float(np.median(outside))
            lows[k], tops[k] = low, top
            level = low + p.level * (top - low)
            seg = pk[imax:]
            below = np.flatnonzero(seg < level)
            if below.size == 0:
                continue
            j = imax + below[0]
            if j == 0:
                continue
            f0, f1 = pk[j - 1], pk[j]
            frac = (f0 - level) / (f0 - f1) if f0 != f1 else 0.5
            edges[k] = r[j - 1] + frac * p.step_px
        ok = np.isfinite(edges)
        if ok.any():  # drop rays with extra light just outside the edge (a neighbour)
            excess = lows - np.median(lows[ok])
            ok &= excess <= p.max_excess * np.median(tops[ok])
        if ok.sum() < p.n_rays / 3:
            return failed
        ex = xc + np.cos(theta[ok]) * edges[ok]
        ey = yc + np.sin(theta[ok]) * edges[ok]
        keep = np.ones(ex.size, dtype=bool)
        for _clip in range(5):
            cx, cy, radius = _kasa_circle(ex[keep], ey[keep])
            resid = np.hypot(ex - cx, ey - cy) - radius
            sig = mad_std(resid[keep])
            new = np.abs(resid - np.median(resid[keep])) <= p.clip_sigma * max(sig, 1e-3)
            if new.sum() < p.n_rays / 3:
                return failed
            if np.array_equal(new, keep):
                break
            keep = new
        xc, yc = float(cx), float(cy)
    # uncertainty: the centre of a circle from n points with radial scatter s is ~ s sqrt(2/n)
    sig = float(np.std(resid[keep]))
    err = sig * math.sqrt(2.0 / keep.sum())
    return xc, yc, float(radius), err, err


# ========================================================================= compact PSFs
def _box_background(image, good):
    """Sigma-clipped median of the box's border pixels (1-pixel frame)."""
    from astropy.stats import sigma_clip

    border = np.zeros(image.shape, dtype=bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    values = image[border & good]
    if values.size == 0:
        return 0.0
    return float(np.ma.median(sigma_clip(values, sigma=3.0, maxiters=5)))


def moment_widths(image, x, y, mask=None):
    """RMS widths of a background-subtracted image about (x, y): second moments.

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Background-subtracted image (negative pixels are set to zero).
    x, y : float
        Centre, 0-based pixels.
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels not to use.

    Returns
    -------
    width_x, width_y : float
        sqrt of the flux-weighted variance along x and y, pixels (sigma for a Gaussian).
    """
    img = np.asarray(image, dtype=float)
    w = np.where(np.isfinite(img) & (img > 0), img, 0.0)
    if mask is not None:
        w = np.where(mask, 0.0, w)
    total = w.sum()
    if total <= 0:
        return np.nan, np.nan
    yy, xx = np.indices(img.shape)
    vx = float(np.sum(w * (xx - x) ** 2) / total)
    vy = float(np.sum(w * (yy - y) ** 2) / total)
    return math.sqrt(vx), math.sqrt(vy)


def _check_box(image, err, mask):
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    good = np.isfinite(img)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != img.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {img.shape}")
        good &= ~mask
    if err is not None:
        err = np.asarray(err, dtype=float)
        if err.shape != img.shape:
            raise ValueError(f"err shape {err.shape} differs from image shape {img.shape}")
        good &= np.isfinite(err) & (err > 0)
    return img, err, good


def centroid_com(image, err=None, mask=None) -> CentroidResult:
    """Centre of mass of a compact PSF in a box (photutils ``centroid_com``).

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Box around the star, DN/s. The sigma-clipped median of its border is subtracted
        first, negative pixels count as zero.
    err : float ndarray, shape (ny, nx), optional
        1-sigma pixel errors, for the position uncertainty.
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels not to use.

    Returns
    -------
    CentroidResult
        Box coordinates (0-based); widths are second-moment sigmas; NaN when the box
        has no positive flux.
    """
    from photutils.centroids import centroid_com as _com

    img, err, good = _check_box(image, err, mask)
    if good.sum() < 3:
        return CentroidResult.failed()
    sub = img - _box_background(img, good)
    pos = np.where(good & (sub > 0), sub, 0.0)
    if pos.sum() <= 0:
        return CentroidResult.failed()
    x, y = (float(v) for v in _com(pos))
    wx, wy = moment_widths(pos, x, y)
    if err is not None:
        yy, xx = np.indices(img.shape)
        e2 = np.where(good, err, 0.0) ** 2
        xe = math.sqrt(float(np.sum(e2 * (xx - x) ** 2))) / pos.sum()
        ye = math.sqrt(float(np.sum(e2 * (yy - y) ** 2))) / pos.sum()
    else:
        xe = ye = np.nan
    return CentroidResult(x, y, xe, ye, wx, wy, float(np.max(img[good])))


def centroid_gauss2d(image, err=None, mask=None) -> CentroidResult:
    """Centre, widths and peak of a compact PSF from a 2D Gaussian plus constant fit.

    Uses astropy's ``Gaussian2D + Const2D`` with the Trust-Region fitter, started from the
    centre of mass and second moments (the pipeline's ``tso_photometry`` order: centre of
    mass, then a Gaussian fit; photutils ``centroid_2dg`` fits the same model).

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Box around the star, DN/s.
    err : float ndarray, shape (ny, nx), optional
        1-sigma pixel errors: weights of the fit and scale of the uncertainties.
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels not to use.

    Returns
    -------
    CentroidResult
        Box coordinates (0-based), 1-sigma errors, Gaussian sigmas, fitted peak above
        the constant; NaN when the fit fails or leaves the box.
    """
    from astropy.modeling import fitting, models
    from astropy.utils.exceptions import AstropyUserWarning

    img, err, good = _check_box(image, err, mask)
    if good.sum() < 8:
        return CentroidResult.failed()
    start = centroid_com(img, err, ~good)
    if not start.ok:
        return CentroidResult.failed()
    bkg = _box_background(img, good)
    peak0 = float(np.max(img[good]) - bkg)
    sx0 = min(max(start.width_x, 0.5), img.shape[1] / 3)
    sy0 = min(max(start.width_y, 0.5), img.shape[0] / 3)
    model = models.Gaussian2D(peak0, start.x, start.y, sx0, sy0, 0.0) + models.Const2D(bkg)
    yy, xx = np.indices(img.shape)
    weights = 1.0 / err[good] if err is not None else None
    fitter = fitting.TRFLSQFitter(calc_uncertainties=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            fit = fitter(model, xx[good], yy[good], img[good], weights=weights, maxiter=200)
        except (ValueError, np.linalg.LinAlgError, RuntimeError):
            return CentroidResult.failed()
    g = fit[0]
    x, y = float(g.x_mean.value), float(g.y_mean.value)
    ny, nx = img.shape
    if not (-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5) or g.amplitude.value <= 0:
        return CentroidResult.failed()
    cov = fitter.fit_info.get("param_cov") if hasattr(fitter, "fit_info") else None
    xe = ye = np.nan
    if cov is not None:
        names = fit.param_names
        cov = np.asarray(cov)
        if err is None:  # scale by the residual variance
            resid = img[good] - fit(xx[good], yy[good])
            cov = cov * float(np.var(resid))
        xe = math.sqrt(abs(cov[names.index("x_mean_0"), names.index("x_mean_0")]))
        ye = math.sqrt(abs(cov[names.index("y_mean_0"), names.index("y_mean_0")]))
    return CentroidResult(x, y, xe, ye, abs(float(g.x_stddev.value)), abs(float(g.y_stddev.value)),
                          float(g.amplitude.value))


# ================================================================================= trace
def fit_trace(image, params: TraceParams | None = None, mask=None, guess_row=None) -> TraceFit:
    """Cross-dispersion centre of a grism trace (dispersion along x), as a polynomial y(x).

    In each column a window of ``2 * halfwidth_px`` rows (partial pixels at its ends) is
    centred iteratively on the flux-weighted centre of the background-subtracted
    profile; for a symmetric profile this converges on its centre of symmetry. Columns
    with too little flux are dropped; a polynomial is fitted to the rest with sigma
    clipping, weighted by the column flux.

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        Grism frame (median of integrations), DN/s, dispersion along x.
    params : TraceParams
    mask : bool ndarray, shape (ny, nx), optional
        True for pixels not to use (they are replaced by the column's background).
    guess_row : float, optional
        Starting row; default the row of the brightest median-filtered row sum.

    Returns
    -------
    TraceFit

    Raises
    ------
    ValueError
        If no column has enough flux to place the trace.
    """
    from astropy.stats import mad_std
    from scipy import ndimage

    p = params or TraceParams()
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {img.shape}")
    ny, nx = img.shape
    bad = ~np.isfinite(img)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        col_bkg = np.nanmedian(np.where(bad, np.nan, img), axis=0)
    col_bkg = np.where(np.isfinite(col_bkg), col_bkg, 0.0)
    sub = np.where(bad, 0.0, img - col_bkg[None, :])
    if guess_row is None:
        rows = np.sum(np.clip(sub, 0, None), axis=1)
        guess_row = float(np.argmax(ndimage.median_filter(rows, size=3, mode="nearest")))
    yy = np.arange(ny, dtype=float)[:, None]
    c = np.full(nx, float(guess_row))
    h = p.halfwidth_px
    for _ in range(20):
        lo, hi = c - h, c + h
        # overlap of pixel [y - 0.5, y + 0.5] with the window [lo, hi]
        w = np.clip(np.minimum(yy + 0.5, hi[None, :]) - np.maximum(yy - 0.5, lo[None, :]), 0.0, 1.0)
        flux = np.sum(w * sub, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = np.sum(w * sub * yy, axis=0) / flux
        new = np.where(np.isfinite(new) & (flux > 0), np.clip(new, h - 0.5, ny - 0.5 - h), c)
        if np.max(np.abs(new - c)) < 1e-5:
            c = new
            break
        c = new
    w = np.clip(np.minimum(yy + 0.5, (c + h)[None, :]) - np.maximum(yy - 0.5, (c - h)[None, :]), 0.0, 1.0)
    flux = np.sum(w * sub, axis=0)
    ref = np.nanpercentile(flux, 95) if np.any(flux > 0) else 0.0
    use = np.isfinite(c) & (flux > p.min_signal * ref) & (ref > 0)
    if use.sum() < p.order + 2:
        raise ValueError("no grism trace found: too few columns with flux")
    xs = np.flatnonzero(use).astype(float)
    x0 = float(np.round(np.average(xs, weights=flux[use])))
    cs, fs = c[use], flux[use]
    keep = np.ones(xs.size, dtype=bool)
    poly = None
    for _ in range(5):
        poly = np.polynomial.Polynomial.fit(xs[keep] - x0, cs[keep], p.order, w=np.sqrt(fs[keep]))
        resid = cs - poly(xs - x0)
        sig = mad_std(resid[keep])
        new = np.abs(resid) <= p.clip_sigma * max(sig, 1e-4)
        if new.sum() < p.order + 2 or np.array_equal(new, keep):
            break
        keep = new
    coeffs = tuple(float(v) for v in poly.convert().coef)
    yc = poly(np.arange(nx, dtype=float) - x0)
    var = np.sum(w * sub * (yy - yc[None, :]) ** 2, axis=0)
    width = float(np.sqrt(np.sum(var[use]) / np.sum(flux[use])))
    return TraceFit(coeffs, x0, width, int(keep.sum()))


# ============================================================================ excursions
def flag_excursions(x, y=None, params: ExcursionParams | None = None) -> np.ndarray:
    """Flag integrations whose position jumps away from its running median.

    Parameters
    ----------
    x, y : float ndarray, shape (nints,)
        Positions (or shifts), pixels, in time order; NaN entries are never flagged and
        do not enter the medians. ``y`` may be None (1D, e.g. a spectrum shift only).
    params : ExcursionParams

    Returns
    -------
    bool ndarray, shape (nints,)
        True where the distance from the running median exceeds both ``nsigma`` robust
        sigmas (MAD of the point-to-point differences / sqrt 2, which ignores slow drifts
        and steps) and ``min_px``, grown by ``grow`` integrations each side.
    """
    from astropy.stats import mad_std
    from scipy import ndimage

    p = params or ExcursionParams()
    series = [np.asarray(x, dtype=float)] + ([] if y is None else [np.asarray(y, dtype=float)])
    n = series[0].size
    if any(s.shape != (n,) for s in series):
        raise ValueError("x and y must be 1D arrays of the same length")
    flags = np.zeros(n, dtype=bool)
    if n < 3:
        return flags
    half = p.window // 2
    for s in series:
        good = np.isfinite(s)
        if good.sum() < 3:
            continue
        idx = np.flatnonzero(good)
        v = s[good]
        padded = np.pad(v, half, mode="reflect") if v.size > half else np.pad(v, half, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
        med = np.median(windows, axis=1)
        resid = v - med
        sigma = float(mad_std(np.diff(v)) / math.sqrt(2.0))
        thresh = max(p.nsigma * sigma, p.min_px)
        flags[idx[np.abs(resid) > thresh]] = True
    if p.grow and flags.any():
        flags = ndimage.binary_dilation(flags, iterations=p.grow)
    return flags
