"""Ramp fitting: per-integration count rates from up-the-ramp groups, split at jumps.

Each pixel's ramp in one integration is cut into segments of consecutive usable groups:
a group flagged JUMP_DET starts a new segment, and groups flagged SATURATED or
DO_NOT_USE are left out (and end the segment they interrupt). Each segment of two or more
groups gets the ordinary least-squares slope of group value against group time, whose
read-noise and Poisson variances are computed exactly for that estimator (the Poisson
part from the tail sums of the least-squares weights over every frame increment, which
also covers NFRAMES > 1 and GROUPGAP). Segments are combined by inverse variance, the
Poisson part evaluated at the rate itself (one refinement from a read-noise-weighted
first estimate). This follows the segment logic of ``stcal.ramp_fitting.ols_fit`` with
unweighted segments instead of its SNR-dependent weights; the variances written are the
exact ones of the estimator used, so ``(rate - truth) / err`` has unit scatter.

A pixel whose only usable group is the first gets ``group / time of that group`` as
stcal does for one-group ramps; a pixel with no usable group is NaN and DO_NOT_USE.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import dqflags

__all__ = ["RampFit", "RampFitParams", "fit_ramps", "ols_variance_coefficients"]

_BAD = dqflags.BAD_GROUP


@dataclass(frozen=True)
class RampFitParams:
    """Settings of ramp fitting.

    Parameters
    ----------
    one_group_ramps : bool
        Give a rate to pixels whose only usable group is the first (saturated from the
        second group on): group value over its read time, as stcal does. Otherwise they
        are NaN and DO_NOT_USE.
    """

    one_group_ramps: bool = True

    def __post_init__(self):
        if not isinstance(self.one_group_ramps, (bool, np.bool_)):
            raise ValueError(f"one_group_ramps must be True or False, got {self.one_group_ramps!r}")


@dataclass(frozen=True)
class RampFit:
    """Result of :func:`fit_ramps` for one integration; every array has shape (ny, nx).

    Attributes
    ----------
    rate : float32 ndarray, DN/s
        NaN where no usable group.
    var_poisson, var_rnoise : float32 ndarray, (DN/s)^2
        Poisson and read-noise variances of ``rate``.
    dq : uint32 ndarray
        JUMP_DET where the integration has a jump; DO_NOT_USE where no rate (with
        SATURATED when the first group saturated).
    ngroups_used : int16 ndarray
        Groups that entered the fit.
    """

    rate: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    dq: np.ndarray
    ngroups_used: np.ndarray

    @property
    def err(self) -> np.ndarray:
        """Total uncertainty sqrt(var_poisson + var_rnoise), float32, DN/s."""
        return np.sqrt(self.var_poisson + self.var_rnoise).astype(np.float32)


@lru_cache(maxsize=256)
def ols_variance_coefficients(ngroups: int, tframe_s: float, nframes: int = 1, groupgap: int = 0):
    """Variance factors of the least-squares slope of ``ngroups`` consecutive groups.

    Parameters
    ----------
    ngroups : int
        Groups in the segment (>= 2).
    tframe_s : float
        Frame time, s.
    nframes, groupgap : int
        Frames averaged per group and frames dropped between groups.

    Returns
    -------
    k_read : float
        ``var_rnoise = sigma_group**2 * k_read`` (1/s^2), sigma_group the read noise of one
        group in DN (one read's noise / sqrt(nframes)).
    k_poisson : float
        ``var_poisson = rate / gain * k_poisson`` (1/s), rate in DN/s, gain in e-/DN.
    """
    if ngroups < 2:
        raise ValueError(f"ngroups must be at least 2, got {ngroups}")
    if not tframe_s > 0:
        raise ValueError(f"tframe_s must be positive, got {tframe_s}")
    per_group = nframes + groupgap
    tgroup = per_group * tframe_s
    j = np.arange(ngroups)
    x = j * tgroup
    sxx = float(np.sum((x - x.mean()) ** 2))
    w = (x - x.mean()) / sxx
    # frame index of every read that enters a group, relative to the segment's first frame
    frames = (j[:, None] * per_group + np.arange(nframes)[None, :]).ravel()
    weights = np.repeat(w / nframes, nframes)
    nsteps = int(frames.max())
    # a_l: total weight of the reads at or after frame step l (increment between l-1 and l)
    a = np.array([weights[frames >= step].sum() for step in range(1, nsteps + 1)])
    return 1.0 / sxx, float(tframe_s * np.sum(a**2))


def fit_ramps(
    sci,
    groupdq,
    gain_e_per_dn,
    readnoise_cds_dn,
    *,
    tframe_s: float,
    nframes: int = 1,
    groupgap: int = 0,
    params: RampFitParams | None = None,
) -> RampFit:
    """Fit one integration's ramps into count rates with their variances.

    Parameters
    ----------
    sci : float ndarray, shape (ngroups, ny, nx), DN
        One integration of a ramp (after superbias and, ideally, 1/f cleaning). Not modified.
    groupdq : uint8 ndarray, shape (ngroups, ny, nx)
        JUMP_DET starts a segment; SATURATED and DO_NOT_USE groups are left out.
    gain_e_per_dn : float or float ndarray, shape (ny, nx), e-/DN
    readnoise_cds_dn : float or float ndarray, shape (ny, nx), DN
        CRDS READNOISE convention (correlated double sample): one read's noise is this
        divided by sqrt(2).
    tframe_s : float
        Frame time TFRAME, s. Group time TGROUP = (nframes + groupgap) * tframe_s.
    nframes, groupgap : int
        NFRAMES and GROUPGAP.
    params : RampFitParams

    Returns
    -------
    RampFit
    """
    params = params or RampFitParams()
    sci = np.asarray(sci)
    groupdq = np.asarray(groupdq)
    if sci.ndim != 3:
        raise ValueError(f"sci must be 3-D (ngroups, ny, nx), got shape {sci.shape}")
    if groupdq.shape != sci.shape:
        raise ValueError(f"groupdq shape {groupdq.shape} differs from sci shape {sci.shape}")
    if not (np.isfinite(tframe_s) and tframe_s > 0):
        raise ValueError(f"tframe_s must be positive, got {tframe_s}")
    if int(nframes) < 1 or int(groupgap) < 0:
        raise ValueError(f"nframes must be >= 1 and groupgap >= 0, got {nframes}, {groupgap}")
    ngroups, ny, nx = sci.shape
    npix = ny * nx
    gain = _flat(gain_e_per_dn, (ny, nx), "gain_e_per_dn")
    rn = _flat(readnoise_cds_dn, (ny, nx), "readnoise_cds_dn")
    var_group = rn**2 / (2.0 * nframes)  # DN^2: one group's read noise
    tgroup = (nframes + groupgap) * tframe_s
    y = sci.reshape(ngroups, npix)
    dq = groupdq.reshape(ngroups, npix)
    use = ((dq & _BAD) == 0) & np.isfinite(y)
    jump = (dq & dqflags.JUMP_DET) != 0
    new = np.zeros((ngroups, npix), dtype=bool)
    new[0] = True
    new[1:] = jump[1:] | ~use[:-1]
    seg = np.cumsum(new, axis=0) - 1  # segment index of each group
    nseg = seg[-1] + 1

    coef = {
        n: ols_variance_coefficients(n, tframe_s, nframes, groupgap) for n in range(2, ngroups + 1)
    }
    k_read = np.zeros(ngroups + 1)
    k_pois = np.zeros(ngroups + 1)
    for n, (kr, kp) in coef.items():
        k_read[n], k_pois[n] = kr, kp

    slopes, counts, pixels = [], [], []
    g = np.arange(ngroups, dtype=np.float64)[:, None]
    for k in range(int(nseg.max())):
        pix = np.arange(npix) if k == 0 else np.flatnonzero(nseg > k)
        if pix.size == 0:
            break
        inside = use[:, pix] & (seg[:, pix] == k)
        n = inside.sum(axis=0)
        ok = n >= 2
        if not ok.any():
            continue
        pix, inside, n = pix[ok], inside[:, ok], n[ok]
        yy = np.where(inside, y[:, pix], 0.0).astype(np.float64)
        gg = np.where(inside, g, 0.0)
        sx, sy = gg.sum(axis=0), yy.sum(axis=0)
        sxx = (gg * gg).sum(axis=0) - sx * sx / n
        sxy = (gg * yy).sum(axis=0) - sx * sy / n
        slopes.append(sxy / sxx / tgroup)
        counts.append(n)
        pixels.append(pix)

    rate = np.full(npix, np.nan)
    var_r = np.full(npix, np.nan)
    var_p = np.full(npix, np.nan)
    used = np.zeros(npix, dtype=np.int16)
    if slopes:
        pix = np.concatenate(pixels)
        b = np.concatenate(slopes)
        n = np.concatenate(counts)
        vr = var_group[pix] * k_read[n]
        kp = k_pois[n] / gain[pix]
        # first estimate: read-noise weights; then weights with the Poisson part at that rate
        first = _combine(pix, b, 1.0 / vr, npix)
        w = 1.0 / (vr + np.clip(first[pix], 0, None) * kp)
        rate_fit = _combine(pix, b, w, npix)
        wsum = np.bincount(pix, weights=w, minlength=npix)
        a = w / wsum[pix]
        var_r_fit = np.bincount(pix, weights=a**2 * vr, minlength=npix)
        var_p_fit = np.bincount(pix, weights=a**2 * kp, minlength=npix) * np.clip(
            np.nan_to_num(rate_fit), 0, None
        )
        fitted = np.bincount(pix, minlength=npix) > 0
        rate[fitted] = rate_fit[fitted]
        var_r[fitted] = var_r_fit[fitted]
        var_p[fitted] = var_p_fit[fitted]
        used = np.bincount(pix, weights=n, minlength=npix).astype(np.int16)
    else:
        fitted = np.zeros(npix, dtype=bool)

    if params.one_group_ramps:
        lone = ~fitted & use[0]  # no segment of two groups, but a usable first group
        if lone.any():
            t0 = 0.5 * (nframes + 1) * tframe_s  # mean read time of the first group after reset
            r1 = y[0, lone] / t0
            rate[lone] = r1
            var_r[lone] = var_group[lone] / t0**2
            var_p[lone] = np.clip(r1, 0, None) / (gain[lone] * t0)
            used[lone] = 1
            fitted = fitted | lone

    out_dq = np.zeros(npix, dtype=np.uint32)
    out_dq[jump[1:].any(axis=0)] |= dqflags.JUMP_DET
    out_dq[~fitted] |= dqflags.DO_NOT_USE
    out_dq[~fitted & ((dq[0] & dqflags.SATURATED) != 0)] |= dqflags.SATURATED
    shape = (ny, nx)
    return RampFit(
        rate=rate.reshape(shape).astype(np.float32),
        var_poisson=var_p.reshape(shape).astype(np.float32),
        var_rnoise=var_r.reshape(shape).astype(np.float32),
        dq=out_dq.reshape(shape),
        ngroups_used=used.reshape(shape),
    )


def _combine(pix, values, weights, npix):
    num = np.bincount(pix, weights=values * weights, minlength=npix)
    den = np.bincount(pix, weights=weights, minlength=npix)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _flat(value, shape, name):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        if not (np.isfinite(arr) and arr > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
        return np.full(shape[0] * shape[1], float(arr))
    if arr.shape != shape:
        raise ValueError(
            f"{name} must be a number or a {shape[0]} x {shape[1]} array, got shape {arr.shape}"
        )
    return arr.reshape(-1)
