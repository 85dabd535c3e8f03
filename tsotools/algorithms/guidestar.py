"""Guide-star (FGS fine-guide) positions, antenna moves, and offsets on the science clock.

Pure functions on numpy arrays (no file I/O, no logging set-up, inputs never modified).
FGS frames are 8x8 pixels at 16 Hz. Pixel coordinates are 0-based ``(x, y)`` with ``x``
along the last numpy axis; pixel ``[j, i]`` covers ``i - 0.5 <= x < i + 0.5``.
Angles on the sky are in milliarcseconds (mas) in the FGS ideal frame unless named
otherwise; times are MJD (UTC) or seconds.

What is followed
----------------
- Count rates of fine-guide raw frames: ``calwebb_guider``'s ``guider_cds`` step
  (jwst ``jwst/guider_cds/guider_cds.py``, FGS_FINEGUIDE branch): the mean of the last
  4 groups minus the mean of the first 4, divided by the group time; ERR from the same
  step's read-noise and Poisson terms with its default gain and read noise.
- Frame times without a centroid table: spread evenly between DATASTRT and DATAEND, as
  spelunker 1.2 does for fine-guide frames.
- Positions: a pixel-integrated elliptical 2D Gaussian plus constant fitted to every frame
  at once by batched Levenberg-Marquardt (Press et al., Numerical Recipes 3rd ed., 15.5.2),
  started from image moments. The community fits each frame with
  ``scipy.optimize.curve_fit`` in a Python loop (spelunker); the model here integrates the
  Gaussian over each pixel (exact for an undersampled PSF, sigma ~0.75 FGS px), and the
  whole batch costs a few numpy operations per iteration.
- FGS ideal to science pixels: SIAF linear conventions (pysiaf ``idl_to_tel``):
  V2 = P x cos(a) + y sin(a), V3 = -P x sin(a) + y cos(a) with a = V3IdlYAngle and
  P = VIdlParity; a pointing change moves every star by the same (V2, V3), so a guide-star
  offset maps to science ideal offsets through V2/V3; the NIRCam science frame is taken
  parallel to its ideal frame (distortion ignored: < 1 % on offsets of a few mas).
- Antenna (HGA) moves: ``Pointing`` table ``HGA_motion`` runs when present; otherwise a
  sudden step in the position series (difference of the medians just after and just
  before each frame, against its robust scatter) and its settling back to the pre-move
  position. In flight a move settles in under 0.5 min to within 1 mas (Schlawin et al.
  2021, JDox "NIRCam TSO known issues").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..detector import FGS_PIXEL_SCALE_ARCSEC

__all__ = [
    "FGS1_V3IDLYANGLE_DEG",
    "FGS2_V3IDLYANGLE_DEG",
    "FGS_FRAME_RATE_HZ",
    "FGS_VIDLPARITY",
    "GUIDER_CDS_GAIN",
    "GUIDER_CDS_READNOISE",
    "PIXEL_TO_IDEAL",
    "FrameFit",
    "GaussFitParams",
    "HgaParams",
    "IntegrationOffsets",
    "JITTER_METHODS",
    "JitterParams",
    "calibrate_to_reference",
    "fineguide_rates",
    "fit_frames",
    "flag_near_moves",
    "frame_times",
    "guider_to_science",
    "detect_hga_moves",
    "integration_offsets",
    "moments_frames",
    "moves_from_flags",
    "nearest_orientation",
    "pixels_to_ideal_mas",
]

#: Methods of ``jitter-from-guidestar --method``.
JITTER_METHODS = ("auto", "table", "fit")
#: Fine-guide frame rate, Hz (FGS fine guide mode).
FGS_FRAME_RATE_HZ = 16.0
#: guider_cds defaults when no CRDS gain / read-noise file is used (jwst guider_cds.py:
#: means of jwst_fgs_gain_0010.fits and jwst_fgs_readnoise_0000.fits), e-/DN and DN.
GUIDER_CDS_GAIN = 1.9713863
GUIDER_CDS_READNOISE = 21.0
#: FGS1/FGS2 V3IdlYAngle in degrees (SIAF FGS alignment 2023-10-30) and VIdlParity.
FGS1_V3IDLYANGLE_DEG = -1.24120427177907
FGS2_V3IDLYANGLE_DEG = 0.29148280112031
FGS_VIDLPARITY = 1
#: Ideal-frame offset (mas) per fine-guide frame pixel along (x, y): the 8x8 frames are
#: taken parallel to the FGS ideal frame with the FGS pixel scale (as the tsotools
#: simulator writes them). Used only when no centroid table calibrates the frames.
PIXEL_TO_IDEAL = np.array([[1.0, 0.0], [0.0, 1.0]]) * FGS_PIXEL_SCALE_ARCSEC * 1000.0
_DAY_S = 86400.0


# =============================================================================== settings
def _check_positive(name, value, allow_zero=False):
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (value < 0 if allow_zero else value <= 0)
    ):
        raise ValueError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


@dataclass(frozen=True)
class GaussFitParams:
    """Settings of the batched Gaussian fit of fine-guide frames.

    Defaults: the FGS PSF has sigma ~0.75 px (FWHM ~1.8 px = 0.12"); positions converge
    to far below the ~0.4 mas noise-equivalent angle of a mag-12 star within ~10
    iterations.
    """

    #: Maximum Levenberg-Marquardt iterations.
    max_iter: int = 30
    #: Converged when every position step is below this, FGS pixels.
    tol_px: float = 1e-4
    #: Allowed Gaussian sigma range, FGS pixels; outside it the frame's fit failed.
    sigma_min_px: float = 0.2
    sigma_max_px: float = 4.0

    def __post_init__(self):
        if (
            not isinstance(self.max_iter, int)
            or isinstance(self.max_iter, bool)
            or self.max_iter < 1
        ):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        _check_positive("tol_px", self.tol_px)
        _check_positive("sigma_min_px", self.sigma_min_px)
        _check_positive("sigma_max_px", self.sigma_max_px)
        if self.sigma_max_px <= self.sigma_min_px:
            raise ValueError("sigma_max_px must be larger than sigma_min_px")


@dataclass(frozen=True)
class HgaParams:
    """Settings of antenna-move detection in a position series.

    Defaults: flight jitter is ~1 mas and a move is a sudden pointing step that settles
    in under 30 s (ALGORITHMS.md, Schlawin et al. 2021); a 0.25 s window on each side sees
    the step whole while the slow jitter barely changes.
    """

    #: Length of the windows before and after each frame whose medians are compared, s.
    window_s: float = 0.25
    #: A step is the median difference beyond this many robust sigmas of that difference.
    threshold_sigma: float = 7.0
    #: ... and at least this large, mas.
    min_step_mas: float = 2.0
    #: The move has settled when the 1 s running median stays within this of the
    #: pre-move position (or 3 times its pre-move scatter, if larger), mas.
    settle_mas: float = 1.0
    #: Settling is looked for up to this long after the step, s; steps closer than this
    #: to an earlier one belong to that move.
    max_settle_s: float = 60.0
    #: Pre-move baseline length, s.
    baseline_s: float = 10.0
    #: Settled means staying within the settling tolerance for at least this long, s.
    quiet_s: float = 5.0

    def __post_init__(self):
        for name in (
            "window_s",
            "threshold_sigma",
            "min_step_mas",
            "settle_mas",
            "max_settle_s",
            "baseline_s",
            "quiet_s",
        ):
            _check_positive(name, getattr(self, name))


@dataclass(frozen=True)
class JitterParams:
    """Settings of ``tsotools jitter-from-guidestar``."""

    #: "table": the FGS Centroid Packet positions; "fit": Gaussian fits to the 8x8 frames;
    #: "auto": the table when every file has one (fits calibrated against it and their
    #: agreement reported), else the fits.
    method: str = "auto"
    #: Integrations within this long of an antenna move get HGA_FLAG, s.
    hga_margin_s: float = 30.0
    #: Antenna-move detection in the position series.
    hga: HgaParams = HgaParams()
    #: Gaussian fits of the frames.
    fit: GaussFitParams = GaussFitParams()

    def __post_init__(self):
        if self.method not in JITTER_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(JITTER_METHODS)}, got {self.method!r}"
            )
        _check_positive("hga_margin_s", self.hga_margin_s, allow_zero=True)
        if not isinstance(self.hga, HgaParams):
            raise ValueError("hga must be an HgaParams")
        if not isinstance(self.fit, GaussFitParams):
            raise ValueError("fit must be a GaussFitParams")


# =============================================================================== frames
def fineguide_rates(
    reads, tgroup_s, gain_e_per_dn=GUIDER_CDS_GAIN, readnoise_dn=GUIDER_CDS_READNOISE
):
    """Count rates of fine-guide raw frames, as ``guider_cds`` computes them.

    Parameters
    ----------
    reads : uint16 or float ndarray, shape (nframes, ngroups, ny, nx), DN
        Raw groups (``_uncal`` SCI), ngroups >= 2 (8 in fine guide).
    tgroup_s : float
        Group time (TGROUP), seconds.
    gain_e_per_dn, readnoise_dn : float or float ndarray (ny, nx)
        Gain (e-/DN) and read noise (DN); the step's defaults without reference files.

    Returns
    -------
    rate, err : float32 ndarray, shape (nframes, ny, nx), DN/s
        ``(mean of the last 4 groups - mean of the first 4) / tgroup_s``, and
        ``sqrt(2 (RN / tgroup)^2 + max(diff, 0) / (gain tgroup))`` with ``diff`` the
        difference before division, exactly as guider_cds (FGS_FINEGUIDE) does.
    """
    reads = np.asarray(reads)
    if reads.ndim != 4:
        raise ValueError(f"reads must be 4-D (nframes, ngroups, ny, nx), got shape {reads.shape}")
    if reads.shape[1] < 2:
        raise ValueError("reads need at least 2 groups")
    _check_positive("tgroup_s", float(tgroup_s))
    data = reads.astype(np.float64)  # never subtract in uint16
    diff = data[:, -4:].mean(axis=1) - data[:, :4].mean(axis=1)
    rate = diff / tgroup_s
    var = 2.0 * (np.asarray(readnoise_dn, dtype=float) / tgroup_s) ** 2 + np.maximum(diff, 0.0) / (
        np.asarray(gain_e_per_dn, dtype=float) * tgroup_s
    )
    return rate.astype(np.float32), np.sqrt(var).astype(np.float32)


def frame_times(nframes, data_start_mjd, data_end_mjd):
    """Mid times of frames spread evenly over [DATASTRT, DATAEND] (no centroid table).

    Returns
    -------
    float64 ndarray, shape (nframes,), MJD
    """
    n = int(nframes)
    if n < 0:
        raise ValueError("nframes must be >= 0")
    if (
        not (math.isfinite(data_start_mjd) and math.isfinite(data_end_mjd))
        or data_end_mjd <= data_start_mjd
    ):
        raise ValueError("data_end_mjd must be after data_start_mjd")
    return data_start_mjd + (np.arange(n) + 0.5) * (data_end_mjd - data_start_mjd) / max(n, 1)


def moments_frames(sci, weight=None):
    """Background, flux, centre and widths of each frame from image moments.

    Parameters
    ----------
    sci : float ndarray, shape (nframes, ny, nx), DN/s
    weight : float ndarray broadcastable to sci, optional
        0 where a pixel must not be used (bad or NaN); NaN pixels are always ignored.

    Returns
    -------
    float64 ndarray, shape (nframes, 6)
        (flux, x, y, sigma_x, sigma_y, background) per frame: background the median of
        the frame's edge pixels, flux the background-subtracted sum of positive pixels,
        centre and widths their first and second moments, 0-based pixels.
    """
    sci = np.asarray(sci, dtype=np.float64)
    if sci.ndim != 3:
        raise ValueError(f"sci must be 3-D (nframes, ny, nx), got shape {sci.shape}")
    n, ny, nx = sci.shape
    good = np.isfinite(sci)
    if weight is not None:
        good &= np.broadcast_to(np.asarray(weight) > 0, sci.shape)
    data = np.where(good, sci, np.nan)
    edge = np.ones((ny, nx), dtype=bool)
    edge[1:-1, 1:-1] = False
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bkg = np.nanmedian(data[:, edge], axis=1)
        s = np.clip(np.nan_to_num(data - bkg[:, None, None], nan=0.0), 0.0, None)
        tot = s.sum(axis=(1, 2))
        yy, xx = np.mgrid[0:ny, 0:nx]
        x = (s * xx).sum(axis=(1, 2)) / tot
        y = (s * yy).sum(axis=(1, 2)) / tot
        sx = np.sqrt((s * (xx - x[:, None, None]) ** 2).sum(axis=(1, 2)) / tot)
        sy = np.sqrt((s * (yy - y[:, None, None]) ** 2).sum(axis=(1, 2)) / tot)
    return np.stack([tot, x, y, sx, sy, bkg], axis=1)


@dataclass
class FrameFit:
    """Result of :func:`fit_frames`; every array has shape (nframes,).

    Attributes
    ----------
    x, y : float64, 0-based FGS pixels (NaN where the fit failed)
    flux : float64, DN/s, the Gaussian's integral
    sigma_x, sigma_y : float64, FGS pixels
    background : float64, DN/s per pixel
    x_err, y_err : float64, FGS pixels, from the fit covariance scaled by the reduced chi^2
    ok : bool, the fit converged to a star inside the frame
    iterations : int, iterations used for the whole batch
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    sigma_x: np.ndarray
    sigma_y: np.ndarray
    background: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    ok: np.ndarray
    iterations: int


_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _profile(n, c, s):
    """Pixel-integrated unit Gaussian along one axis, with derivatives in c and s.

    c, s: (nframes,). Returns F, dF/dc, dF/ds, each (nframes, n).
    """
    from scipy.special import erf

    edges = np.arange(n + 1) - 0.5
    u = edges[None, :] - c[:, None]  # (nframes, n + 1)
    cdf = 0.5 * erf(u / (_SQRT2 * s[:, None]))
    g = np.exp(-0.5 * (u / s[:, None]) ** 2) / (_SQRT2PI * s[:, None])
    f = cdf[:, 1:] - cdf[:, :-1]
    dfdc = g[:, :-1] - g[:, 1:]
    ug = u * g
    dfds = -(ug[:, 1:] - ug[:, :-1]) / s[:, None]
    return f, dfdc, dfds


def _model_and_jacobian(p, ny, nx):
    """Model (nframes, ny*nx) and Jacobian (nframes, ny*nx, 6) of p = (A, x, y, sx, sy, B)."""
    a, x, y, sx, sy = p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4]
    fx, dfx_dc, dfx_ds = _profile(nx, x, sx)
    fy, dfy_dc, dfy_ds = _profile(ny, y, sy)
    n = len(p)
    shape = (n, ny * nx)
    outer = (fy[:, :, None] * fx[:, None, :]).reshape(shape)
    model = a[:, None] * outer + p[:, 5:6]
    jac = np.empty((n, ny * nx, 6))
    jac[:, :, 0] = outer
    jac[:, :, 1] = (a[:, None, None] * fy[:, :, None] * dfx_dc[:, None, :]).reshape(shape)
    jac[:, :, 2] = (a[:, None, None] * dfy_dc[:, :, None] * fx[:, None, :]).reshape(shape)
    jac[:, :, 3] = (a[:, None, None] * fy[:, :, None] * dfx_ds[:, None, :]).reshape(shape)
    jac[:, :, 4] = (a[:, None, None] * dfy_ds[:, :, None] * fx[:, None, :]).reshape(shape)
    jac[:, :, 5] = 1.0
    return model, jac


def fit_frames(sci, err=None, bad=None, params=None):
    """Fit a pixel-integrated elliptical 2D Gaussian plus constant to every frame at once.

    Batched Levenberg-Marquardt: each iteration evaluates the model and its analytic
    Jacobian for all frames, solves every frame's 6x6 damped normal equations in one
    ``numpy.linalg.solve`` call, and adapts each frame's damping on its own chi^2. Frames
    are independent; no Python loop runs over them.

    Parameters
    ----------
    sci : float ndarray, shape (nframes, ny, nx), DN/s
        Fine-guide frames (count rates).
    err : float ndarray, shape (nframes, ny, nx) or (ny, nx), DN/s, optional
        1-sigma errors; pixels are weighted by 1/err^2 (uniform weights if omitted).
    bad : bool ndarray broadcastable to sci, optional
        True for pixels to ignore (DQ DO_NOT_USE). NaN pixels are always ignored.
    params : GaussFitParams, optional

    Returns
    -------
    FrameFit
        Failed frames (no star, non-finite, centre outside the frame, width outside
        the allowed range) have NaN in every field and ``ok`` False.
    """
    params = GaussFitParams() if params is None else params
    sci = np.asarray(sci, dtype=np.float64)
    if sci.ndim != 3:
        raise ValueError(f"sci must be 3-D (nframes, ny, nx), got shape {sci.shape}")
    n, ny, nx = sci.shape
    if n == 0:
        empty = np.empty(0)
        return FrameFit(
            empty, empty, empty, empty, empty, empty, empty, empty, np.zeros(0, bool), 0
        )
    if err is None:
        w = np.ones_like(sci)
    else:
        e = np.broadcast_to(np.asarray(err, dtype=np.float64), sci.shape)
        with np.errstate(all="ignore"):
            w = np.where(np.isfinite(e) & (e > 0), 1.0 / e**2, 0.0)
    w = np.where(np.isfinite(sci), w, 0.0)
    if bad is not None:
        w = np.where(np.broadcast_to(np.asarray(bad, dtype=bool), sci.shape), 0.0, w)
    data = np.nan_to_num(sci, nan=0.0).reshape(n, ny * nx)
    w = w.reshape(n, ny * nx)
    # normalise weights per frame (LM damping and chi^2 comparisons are scale-free)
    wsum = w.sum(axis=1)
    w = w / np.where(wsum > 0, wsum, 1.0)[:, None]

    p = moments_frames(sci, weight=w.reshape(n, ny, nx))
    p[:, 3:5] = np.clip(np.nan_to_num(p[:, 3:5], nan=1.0), params.sigma_min_px, params.sigma_max_px)
    p[:, 1] = np.clip(np.nan_to_num(p[:, 1], nan=(nx - 1) / 2), 0, nx - 1)
    p[:, 2] = np.clip(np.nan_to_num(p[:, 2], nan=(ny - 1) / 2), 0, ny - 1)
    p[:, 5] = np.nan_to_num(p[:, 5], nan=0.0)
    p[:, 0] = np.nan_to_num(p[:, 0], nan=0.0)
    startable = (p[:, 0] > 0) & (w > 0).sum(axis=1).astype(bool)

    model, jac = _model_and_jacobian(p, ny, nx)
    chi2 = np.sum(w * (data - model) ** 2, axis=1)
    lam = np.full(n, 1e-3)
    active = startable.copy()
    eye = np.eye(6)
    it = 0
    with np.errstate(all="ignore"):
        for it in range(1, params.max_iter + 1):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            jw = jac[idx] * w[idx, :, None]
            h = np.matmul(jw.transpose(0, 2, 1), jac[idx])
            g = np.matmul(jw.transpose(0, 2, 1), (data[idx] - model[idx])[:, :, None])[:, :, 0]
            diag = np.einsum("npp->np", h)
            a = h + lam[idx, None, None] * diag[:, :, None] * eye
            a += 1e-12 * eye  # keeps frames with degenerate columns solvable
            try:
                step = np.linalg.solve(a, g[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = np.stack([np.linalg.lstsq(ai, gi, rcond=None)[0] for ai, gi in zip(a, g)])
            trial = p[idx] + step
            trial[:, 3:5] = np.clip(
                trial[:, 3:5], 0.5 * params.sigma_min_px, 2.0 * params.sigma_max_px
            )
            m_new, j_new = _model_and_jacobian(trial, ny, nx)
            c_new = np.sum(w[idx] * (data[idx] - m_new) ** 2, axis=1)
            better = np.isfinite(c_new) & (c_new <= chi2[idx])
            settled = chi2[idx] - c_new <= 1e-7 * chi2[idx] + 1e-30  # chi^2 no longer falls
            acc = idx[better]
            p[acc] = trial[better]
            model[acc] = m_new[better]
            jac[acc] = j_new[better]
            chi2[acc] = c_new[better]
            lam[acc] = np.maximum(lam[acc] / 10.0, 1e-9)
            lam[idx[~better]] *= 10.0
            small = np.max(np.abs(step[:, 1:3]), axis=1) < params.tol_px
            done = (better & small & settled) | (lam[idx] > 1e8)
            active[idx[done]] = False

        # covariance of x, y: inverse of the undamped normal matrix scaled to chi^2/dof
        jw = jac * w[:, :, None]
        h = np.matmul(jw.transpose(0, 2, 1), jac) + 1e-12 * eye
        npix = (w > 0).sum(axis=1)
        dof = np.maximum(npix - 6, 1)
        # weights were normalised: chi^2/dof of the original weights = chi2 * wsum / dof
        red = chi2 * np.where(wsum > 0, wsum, 1.0) / dof
        try:
            cov = np.linalg.inv(h)
        except np.linalg.LinAlgError:
            cov = np.stack([np.linalg.pinv(hi) for hi in h])
        scale = red / np.where(wsum > 0, wsum, 1.0)
        xerr = np.sqrt(np.abs(cov[:, 1, 1]) * scale)
        yerr = np.sqrt(np.abs(cov[:, 2, 2]) * scale)
    ok = (
        startable
        & np.all(np.isfinite(p), axis=1)
        & (p[:, 0] > 0)
        & (p[:, 1] >= -0.5)
        & (p[:, 1] <= nx - 0.5)
        & (p[:, 2] >= -0.5)
        & (p[:, 2] <= ny - 0.5)
        & (p[:, 3] >= params.sigma_min_px)
        & (p[:, 3] <= params.sigma_max_px)
        & (p[:, 4] >= params.sigma_min_px)
        & (p[:, 4] <= params.sigma_max_px)
    )
    p[~ok] = np.nan
    xerr = np.where(ok, xerr, np.nan)
    yerr = np.where(ok, yerr, np.nan)
    return FrameFit(
        x=p[:, 1],
        y=p[:, 2],
        flux=p[:, 0],
        sigma_x=p[:, 3],
        sigma_y=p[:, 4],
        background=p[:, 5],
        x_err=xerr,
        y_err=yerr,
        ok=ok,
        iterations=it,
    )


# =============================================================================== frames on the sky
def pixels_to_ideal_mas(x_px, y_px, reference_px, matrix=None):
    """Ideal-frame offsets (mas) of fine-guide pixel positions from a reference position.

    Parameters
    ----------
    x_px, y_px : float ndarray, shape (nframes,), 0-based FGS pixels
    reference_px : (float, float)
        Pixel position of zero offset (x, y).
    matrix : float ndarray (2, 2), optional
        mas per pixel, (dx_mas, dy_mas) = matrix @ (dx_px, dy_px); :data:`PIXEL_TO_IDEAL`.

    Returns
    -------
    x_mas, y_mas : float64 ndarray, shape (nframes,)
    """
    m = PIXEL_TO_IDEAL if matrix is None else np.asarray(matrix, dtype=float)
    d = np.vstack(
        [np.asarray(x_px, float) - reference_px[0], np.asarray(y_px, float) - reference_px[1]]
    )
    out = m @ d
    return out[0], out[1]


def calibrate_to_reference(x_px, y_px, x_ref, y_ref, matrix=None):
    """Map fitted pixel positions onto reference positions (mas), by least squares.

    Used to put fitted frame positions on the centroid table's ideal frame (matched frame
    by frame) and to measure how well the two methods agree. With ``matrix`` given only
    the zero point is fitted; otherwise the full affine map (which noise in the fitted
    positions biases low by var(noise) / var(positions): use it for the orientation, see
    :func:`nearest_orientation`). Pairs with a NaN are ignored; pairs beyond 3 sigma are
    dropped and the fit repeated (at most 3 times).

    Parameters
    ----------
    x_px, y_px : float ndarray, shape (n,), FGS pixels
    x_ref, y_ref : float ndarray, shape (n,), mas
    matrix : float ndarray (2, 2), optional, mas per pixel

    Returns
    -------
    matrix : float64 (2, 2), mas per pixel
    offset : float64 (2,), mas: ref = matrix @ px + offset
    rms_mas : float
        RMS over both axes of the residuals of the kept pairs (the methods' agreement).
    nused : int
    """
    x_px, y_px, x_ref, y_ref = (np.asarray(v, dtype=float) for v in (x_px, y_px, x_ref, y_ref))
    good = np.isfinite(x_px) & np.isfinite(y_px) & np.isfinite(x_ref) & np.isfinite(y_ref)
    if good.sum() < 10:
        raise ValueError("fewer than 10 frames with both a fitted and a reference position")
    px = np.column_stack([x_px, y_px])
    target = np.column_stack([x_ref, y_ref])
    keep = good.copy()
    fixed = None if matrix is None else np.asarray(matrix, dtype=float)
    for _ in range(4):
        if fixed is None:
            design = np.column_stack([px[keep], np.ones(keep.sum())])
            coef, *_ = np.linalg.lstsq(design, target[keep], rcond=None)
            m, off = coef[:2].T, coef[2]
        else:
            m = fixed
            off = np.mean(target[keep] - px[keep] @ m.T, axis=0)
        res = target - px @ m.T - off
        r = np.hypot(res[:, 0], res[:, 1])
        sig = np.sqrt(np.mean(r[keep] ** 2) / 2.0)
        new = good & (r < 3.0 * math.sqrt(2.0) * sig + 1e-12)
        if new.sum() < 10 or np.array_equal(new, keep):
            break
        keep = new
    rms = float(np.sqrt(np.mean(res[keep] ** 2)))
    return np.array(m, dtype=float), np.array(off, dtype=float), rms, int(keep.sum())


def nearest_orientation(matrix, scale_mas=FGS_PIXEL_SCALE_ARCSEC * 1000.0):
    """Return the frame orientation (axes swapped, flipped) closest to a measured matrix.

    Parameters
    ----------
    matrix : float ndarray (2, 2), mas per pixel, e.g. from :func:`calibrate_to_reference`
    scale_mas : float, mas per FGS pixel

    Returns
    -------
    float64 ndarray (2, 2): ``scale_mas`` times the signed permutation matrix nearest to
    ``matrix`` (Frobenius norm)
    """
    m = np.asarray(matrix, dtype=float)
    best, best_d = None, np.inf
    for perm in (np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])):
        for sx in (1.0, -1.0):
            for sy in (1.0, -1.0):
                cand = scale_mas * np.diag([sx, sy]) @ perm
                d = float(np.sum((cand - m) ** 2))
                if d < best_d:
                    best, best_d = cand, d
    return best


def _idl_to_v(parity, angle_deg):
    a = math.radians(angle_deg)
    return np.array([[parity * math.cos(a), math.sin(a)], [-parity * math.sin(a), math.cos(a)]])


def guider_to_science(
    fgs_v3yangle_deg, fgs_vparity, sci_v3yangle_deg, sci_vparity, sci_scale_arcsec
):
    """Matrix taking FGS ideal-frame offsets (mas) to science-detector pixel offsets.

    A pointing change moves every star by the same (V2, V3) offset, so
    ``(dx_pix, dy_pix) = M @ (dx_mas, dy_mas)`` with ``M = R_sci^T R_fgs / (1000 scale)``,
    ``R`` each aperture's ideal-to-V2V3 rotation (SIAF, pysiaf ``idl_to_tel`` linear part).

    Parameters
    ----------
    fgs_v3yangle_deg, sci_v3yangle_deg : float
        V3IdlYAngle (V3I_YANG) of the guider and of the science aperture, degrees.
    fgs_vparity, sci_vparity : int
        VIdlParity (VPARITY): +1 for FGS, -1 for NIRCam.
    sci_scale_arcsec : float
        Science pixel scale, arcsec per pixel (NIRCam LW 0.063, SW 0.031).

    Returns
    -------
    float64 ndarray, shape (2, 2), science pixels per mas
    """
    for name, v in (("fgs_vparity", fgs_vparity), ("sci_vparity", sci_vparity)):
        if v not in (1, -1):
            raise ValueError(f"{name} must be +1 or -1, got {v!r}")
    _check_positive("sci_scale_arcsec", float(sci_scale_arcsec))
    fgs = _idl_to_v(fgs_vparity, fgs_v3yangle_deg)
    sci = _idl_to_v(sci_vparity, sci_v3yangle_deg)
    return sci.T @ fgs / (1000.0 * sci_scale_arcsec)


# =============================================================================== antenna moves
def moves_from_flags(mjd, moving):
    """Antenna moves from per-frame ``HGA_motion`` flags: one per run of moving frames.

    Parameters
    ----------
    mjd : float ndarray, shape (nframes,), MJD, sorted
    moving : bool ndarray, shape (nframes,)

    Returns
    -------
    float64 ndarray, shape (nmoves, 2): START_MJD, STOP_MJD (first and last moving frame)
    """
    mjd = np.asarray(mjd, dtype=float)
    moving = np.asarray(moving, dtype=bool)
    if mjd.shape != moving.shape:
        raise ValueError("mjd and moving must have the same shape")
    if not moving.any():
        return np.empty((0, 2))
    edges = np.diff(np.concatenate([[0], moving.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return np.column_stack([mjd[starts], mjd[stops]])


def _running_median(values, half):
    """Centred running median with a window of 2*half+1 samples (NaN-aware, edges shrink)."""
    from scipy.ndimage import median_filter

    filled = values.copy()
    bad = ~np.isfinite(filled)
    if bad.any():
        idx = np.arange(len(filled))
        filled[bad] = np.interp(idx[bad], idx[~bad], filled[~bad]) if (~bad).any() else 0.0
    return median_filter(filled, size=2 * half + 1, mode="nearest")


def detect_hga_moves(mjd, x_mas, y_mas, params=None):
    """Antenna moves seen in a position series: a sudden step and its settling.

    For each frame, the medians of the positions in the ``window_s`` before and after it
    are compared; their 2D difference is a step statistic whose robust scatter (1.4826 x
    MAD of each component, over the whole series) measures jitter and noise. A run of
    frames beyond ``threshold_sigma`` of that scatter (and ``min_step_mas``) is one
    step, placed at its largest difference. The move ends when the 1 s running median
    returns, for good within ``max_settle_s``, to within ``settle_mas`` (or 3 times the
    pre-move scatter) of the median position over ``baseline_s`` before the step.

    Parameters
    ----------
    mjd : float ndarray, shape (nframes,), MJD, sorted ascending
    x_mas, y_mas : float ndarray, shape (nframes,), mas; NaN frames are skipped
    params : HgaParams, optional

    Returns
    -------
    float64 ndarray, shape (nmoves, 2): START_MJD (first frame after the step),
    STOP_MJD (settled)
    """
    params = HgaParams() if params is None else params
    mjd, x, y = (np.asarray(a, dtype=float) for a in (mjd, x_mas, y_mas))
    good = np.isfinite(mjd) & np.isfinite(x) & np.isfinite(y)
    mjd, x, y = mjd[good], x[good], y[good]
    n = len(mjd)
    if n < 8:
        return np.empty((0, 2))
    t = (mjd - mjd[0]) * _DAY_S
    dt = float(np.median(np.diff(t))) if n > 1 else 1.0 / FGS_FRAME_RATE_HZ
    dt = dt if dt > 0 else 1.0 / FGS_FRAME_RATE_HZ
    w = max(2, int(round(params.window_s / dt)))
    if n < 4 * w:
        return np.empty((0, 2))
    from numpy.lib.stride_tricks import sliding_window_view

    def window_medians(v):
        med = np.median(sliding_window_view(v, w), axis=1)  # med[k] = median(v[k:k+w])
        before = np.full(n, np.nan)
        after = np.full(n, np.nan)
        before[w:] = med[: n - w]  # frames k-w .. k-1
        after[: n - w + 1] = med  # frames k .. k+w-1
        return after - before

    dx, dy = window_medians(x), window_medians(y)
    valid = np.isfinite(dx) & np.isfinite(dy)
    # gaps in time (between files) are not steps
    gap = np.zeros(n, dtype=bool)
    big = np.flatnonzero(np.diff(t) > 3 * dt)
    for k in big:
        gap[max(k + 1 - w, 0) : k + w + 1] = True
    valid &= ~gap
    if valid.sum() < 10:
        return np.empty((0, 2))
    sig = 1.4826 * np.array(
        [
            np.median(np.abs(dx[valid] - np.median(dx[valid]))),
            np.median(np.abs(dy[valid] - np.median(dy[valid]))),
        ]
    )
    sigma = float(np.sqrt(np.mean(sig**2)))
    d = np.where(valid, np.hypot(dx, dy), 0.0)
    thresh = max(params.threshold_sigma * sigma, params.min_step_mas)
    hot = d > thresh
    if not hot.any():
        return np.empty((0, 2))
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    runs = zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))
    steps = [a + int(np.argmax(d[a:b])) for a, b in runs]

    half = max(1, int(round(0.5 / dt)))
    sx, sy = _running_median(x, half), _running_median(y, half)
    moves = []
    last_stop_t = -np.inf
    for k in steps:
        if t[k] <= last_stop_t:  # a later swing of a move already found
            continue
        pre = (t >= t[k] - params.baseline_s) & (t < t[k] - 2 * w * dt)
        if pre.sum() < 4:
            pre = (t < t[k]) & (t >= t[k] - params.baseline_s)
        if pre.sum() < 2:
            continue
        bx, by = np.median(x[pre]), np.median(y[pre])
        scatter = float(np.sqrt(np.mean((sx[pre] - bx) ** 2 + (sy[pre] - by) ** 2)))
        tol = max(params.settle_mas, 3.0 * scatter)
        after = np.flatnonzero((t >= t[k]) & (t <= t[k] + params.max_settle_s))
        below = np.hypot(sx[after] - bx, sy[after] - by) <= tol
        # settled: the first frame from which the position stays within tol for quiet_s
        # (or to the end of the data); never settled: the end of the search window
        stop_t = t[after[-1]]
        edges = np.diff(np.concatenate([[0], below.astype(np.int8), [0]]))
        for r0, r1 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            if t[after[r1]] - t[after[r0]] >= params.quiet_s or after[r1] == n - 1:
                stop_t = t[after[r0]]
                break
        stop_t = max(stop_t, t[min(k + w, n - 1)])
        moves.append((t[k], stop_t))
        last_stop_t = stop_t
    if not moves:
        return np.empty((0, 2))
    arr = np.array(moves)
    return mjd[0] + arr / _DAY_S


def flag_near_moves(int_start_mjd, int_end_mjd, moves, margin_s):
    """Flag the integrations within ``margin_s`` of an antenna move.

    Parameters
    ----------
    int_start_mjd, int_end_mjd : float ndarray, shape (nints,), MJD
    moves : float ndarray, shape (nmoves, 2), START_MJD, STOP_MJD
    margin_s : float, seconds

    Returns
    -------
    bool ndarray, shape (nints,)
    """
    a = np.asarray(int_start_mjd, dtype=float)
    b = np.asarray(int_end_mjd, dtype=float)
    flag = np.zeros(a.shape, dtype=bool)
    m = margin_s / _DAY_S
    for start, stop in np.asarray(moves, dtype=float).reshape(-1, 2):
        flag |= (b >= start - m) & (a <= stop + m)
    return flag


# =============================================================================== science clock
@dataclass
class IntegrationOffsets:
    """Per-integration guide-star offsets; every array has shape (nints,).

    Attributes
    ----------
    dx_mas, dy_mas : float64, mean offset over the integration, mas (NaN: no frame)
    rms_mas : float64, RMS distance of the frames from that mean (jitter within), mas
    nframes : int32, frames averaged (0: none; then the nearest frame is used when it
        lies within one frame time of the integration, else NaN)
    """

    dx_mas: np.ndarray
    dy_mas: np.ndarray
    rms_mas: np.ndarray
    nframes: np.ndarray


def integration_offsets(frame_mjd, x_mas, y_mas, int_start_mjd, int_end_mjd):
    """Mean guide-star offset and jitter within each science integration.

    The frames averaged are those with ``int_start <= t < int_end`` (INT_TIMES start and
    end), skipping NaN frames. Cost O(nframes + nints) via cumulative sums.

    Parameters
    ----------
    frame_mjd : float ndarray, shape (nframes,), MJD, sorted ascending
    x_mas, y_mas : float ndarray, shape (nframes,), mas
    int_start_mjd, int_end_mjd : float ndarray, shape (nints,), MJD

    Returns
    -------
    IntegrationOffsets
    """
    t = np.asarray(frame_mjd, dtype=float)
    x = np.asarray(x_mas, dtype=float)
    y = np.asarray(y_mas, dtype=float)
    if not (t.shape == x.shape == y.shape) or t.ndim != 1:
        raise ValueError("frame_mjd, x_mas, y_mas must be 1-D of one length")
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise ValueError("frame_mjd must be sorted")
    a = np.asarray(int_start_mjd, dtype=float)
    b = np.asarray(int_end_mjd, dtype=float)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(t)
    t, x, y = t[good], x[good], y[good]
    csum = [np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(x), x, y, x * x, y * y)]
    i0 = np.searchsorted(t, a, side="left")
    i1 = np.searchsorted(t, b, side="left")
    cnt, sx, sy, sxx, syy = (c[i1] - c[i0] for c in csum)
    with np.errstate(all="ignore"):
        mx, my = sx / cnt, sy / cnt
        var = np.maximum(sxx / cnt - mx**2, 0.0) + np.maximum(syy / cnt - my**2, 0.0)
    rms = np.sqrt(var)
    # no frame inside: the nearest one, if within one frame spacing of the window
    empty = np.flatnonzero((cnt == 0) & np.isfinite(a) & np.isfinite(b))
    if empty.size and t.size:
        spacing = float(np.median(np.diff(t))) if t.size > 1 else 1.0 / FGS_FRAME_RATE_HZ / _DAY_S
        mid = 0.5 * (a[empty] + b[empty])
        j = (
            np.clip(np.searchsorted(t, mid), 1, t.size - 1)
            if t.size > 1
            else np.zeros(empty.size, int)
        )
        if t.size > 1:
            j = np.where(np.abs(t[j - 1] - mid) < np.abs(t[j] - mid), j - 1, j)
        near = (t[j] >= a[empty] - spacing) & (t[j] <= b[empty] + spacing)
        mx[empty] = np.where(near, x[j], np.nan)
        my[empty] = np.where(near, y[j], np.nan)
        rms[empty] = np.where(near, 0.0, np.nan)
    nan = ~(np.isfinite(a) & np.isfinite(b))
    mx[nan] = my[nan] = rms[nan] = np.nan
    return IntegrationOffsets(dx_mas=mx, dy_mas=my, rms_mas=rms, nframes=cnt.astype(np.int32))
