"""Cosmic-ray jump detection in up-the-ramp data: two-point differences and a temporal method.

Two methods work on a block of ramps holding every integration of some rows of the detector:

``two-point``
    The JWST pipeline's algorithm, re-implemented to give the same flags as
    ``stcal.jump.jump.detect_jumps_data`` (stcal 1.20, ``twopoint_difference.py``) with the
    pipeline's defaults: data and read noise scaled by the gain, first differences of the
    groups, a median difference per pixel over every integration and group, sigma from the
    read noise and Poisson noise, then either iterative flagging of the largest outlier
    (fewer than ``min_diffs_single_pass`` differences per integration), one pass
    (more), or sigma clipping of each difference across integrations (``min_sigclip_ints``
    integrations or more); 3- and 4-group thresholds; the 4 neighbours of jumps between 10
    and 1000 sigma are flagged. Snowball/shower expansion and after-jump flagging (off by
    default in the pipeline) are not implemented.

``temporal``
    For time series: each group difference is compared with the median of the same group
    difference over the integrations, scaled by each integration's flux (so a transit does
    not look like a jump); the residual's row median per amplifier is removed (so 1/f
    residuals and pre-amplifier offsets do not look like jumps); sigma is the larger of the
    residual's robust scatter over integrations and groups and the read + Poisson
    expectation. Neighbours of jumps between 10 and 1000 sigma are flagged only where their
    own residual exceeds ``neighbor_threshold`` sigma.

Arrays use pipeline names and dims ``(nints, ngroups, ny, nx)``; a jump found in the
difference between groups g-1 and g is flagged on group g, as the pipeline does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .. import dqflags

__all__ = [
    "JUMP_METHODS",
    "JumpParams",
    "choose_method",
    "detect_jumps",
    "sweep_jumps",
]

#: Methods of :func:`detect_jumps`; "auto" picks "temporal" with enough integrations.
JUMP_METHODS = ("auto", "two-point", "temporal")

_BAD = dqflags.BAD_GROUP


@dataclass(frozen=True)
class JumpParams:
    """Settings of jump detection.

    Parameters
    ----------
    method : str
        "two-point" (the pipeline's algorithm), "temporal" (across integrations) or "auto":
        temporal with at least ``min_temporal_ints`` integrations, else two-point.
    threshold : float
        Rejection threshold in sigma. Default 5: on simulated 1/f-cleaned NIRCam grism
        ramps it keeps >= 95 % of jumps above 10 sigma with < 1e-4 false flags per
        pixel-group; the pipeline's ``rejection_threshold`` is 4.0 (jwst JumpStep spec),
        which over-flags TSO subarrays (NC-TS03).
    three_group_threshold : float
        Two-point threshold when only 2 differences are usable (3 groups); stcal
        ``three_grp_thresh`` 6.0.
    four_group_threshold : float
        Two-point threshold when 3 differences are usable (4 groups); stcal
        ``four_grp_thresh`` 5.0.
    flag_neighbors : bool
        Also flag the 4 side neighbours of jumps between ``min_neighbor_sigma`` and
        ``max_neighbor_sigma`` (stcal ``flag_4_neighbors`` True).
    min_neighbor_sigma, max_neighbor_sigma : float
        Jump sizes, in sigma, whose neighbours are flagged (stcal 10 and 1000).
    neighbor_threshold : float
        Temporal method only: a neighbour is flagged only if its own residual exceeds this
        many sigma (real charge spread and IPC put a fraction of a large jump there).
    min_diffs_single_pass : int
        Two-point: with at least this many differences per integration flag in one pass
        instead of iteratively (stcal 10).
    min_sigclip_ints : int
        Two-point: with at least this many integrations sigma-clip each difference across
        integrations instead (stcal ``minimum_sigclip_groups`` 100, ``only_use_ints``).
    minimum_groups : int
        Two-point: skip detection with fewer usable groups (stcal 3).
    min_temporal_ints : int
        "auto" uses the temporal method from this many integrations on (the median over
        integrations needs enough of them to be robust).
    row_correction : bool
        Temporal method: remove each residual row's median per amplifier.
    """

    method: str = "auto"
    threshold: float = 5.0
    three_group_threshold: float = 6.0
    four_group_threshold: float = 5.0
    flag_neighbors: bool = True
    min_neighbor_sigma: float = 10.0
    max_neighbor_sigma: float = 1000.0
    neighbor_threshold: float = 3.0
    min_diffs_single_pass: int = 10
    min_sigclip_ints: int = 100
    minimum_groups: int = 3
    min_temporal_ints: int = 10
    row_correction: bool = True

    def __post_init__(self):
        if self.method not in JUMP_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(JUMP_METHODS)}, got {self.method!r}"
            )
        for name in (
            "threshold",
            "three_group_threshold",
            "four_group_threshold",
            "neighbor_threshold",
            "min_neighbor_sigma",
            "max_neighbor_sigma",
        ):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.max_neighbor_sigma <= self.min_neighbor_sigma:
            raise ValueError("max_neighbor_sigma must be larger than min_neighbor_sigma")
        for name in (
            "min_diffs_single_pass",
            "min_sigclip_ints",
            "minimum_groups",
            "min_temporal_ints",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.min_temporal_ints < 3:
            raise ValueError(f"min_temporal_ints must be at least 3, got {self.min_temporal_ints}")


def choose_method(nints: int, params: JumpParams) -> str:
    """Return the method "auto" resolves to for ``nints`` integrations (else ``params.method``)."""
    if params.method != "auto":
        return params.method
    return "temporal" if nints >= params.min_temporal_ints else "two-point"


# =================================================================== public functions
def detect_jumps(
    sci,
    groupdq,
    gain_e_per_dn,
    readnoise_cds_dn,
    params: JumpParams | None = None,
    *,
    nframes: int = 1,
    amplifiers=None,
) -> np.ndarray:
    """Find cosmic-ray jumps in a block of ramps.

    Parameters
    ----------
    sci : float ndarray, shape (nints, ngroups, ny, nx), DN
        Ramps (after superbias; ideally after 1/f cleaning). Not modified.
    groupdq : uint8 ndarray, shape (nints, ngroups, ny, nx)
        Group DQ. Groups flagged DO_NOT_USE or SATURATED are left out and never flagged;
        existing JUMP_DET bits are ignored (the result replaces them).
    gain_e_per_dn : float or float ndarray, shape (ny, nx), e-/DN
    readnoise_cds_dn : float or float ndarray, shape (ny, nx), DN
        Read noise in the CRDS READNOISE convention (correlated double sample, sqrt(2)
        times the noise of one read).
    params : JumpParams
    nframes : int
        Frames averaged per group (NFRAMES).
    amplifiers : sequence of (x0, x1), optional
        Column ranges of the amplifiers (temporal row correction); default one amplifier.

    Returns
    -------
    jumps : bool ndarray, shape (nints, ngroups, ny, nx)
        True where JUMP_DET is to be set (neighbours included). Group 0 is never flagged.
    """
    params = params or JumpParams()
    return sweep_jumps(
        sci,
        groupdq,
        gain_e_per_dn,
        readnoise_cds_dn,
        [params.threshold],
        params,
        nframes=nframes,
        amplifiers=amplifiers,
    )[0]


def sweep_jumps(
    sci,
    groupdq,
    gain_e_per_dn,
    readnoise_cds_dn,
    thresholds,
    params: JumpParams | None = None,
    *,
    nframes: int = 1,
    amplifiers=None,
) -> list[np.ndarray]:
    """Find jumps at several thresholds at once, sharing the work that does not depend on them.

    Parameters are those of :func:`detect_jumps`, with ``thresholds`` (sequence of float,
    sigma) replacing ``params.threshold``.

    Returns
    -------
    list of bool ndarray, shape (nints, ngroups, ny, nx)
        One jump mask per threshold, in the order given.
    """
    params = params or JumpParams()
    sci = np.asarray(sci)
    groupdq = np.asarray(groupdq)
    if sci.ndim != 4:
        raise ValueError(f"sci must be 4-D (nints, ngroups, ny, nx), got shape {sci.shape}")
    if groupdq.shape != sci.shape:
        raise ValueError(f"groupdq shape {groupdq.shape} differs from sci shape {sci.shape}")
    thresholds = [float(t) for t in thresholds]
    if not thresholds or not all(np.isfinite(t) and t > 0 for t in thresholds):
        raise ValueError(f"thresholds must be positive numbers, got {thresholds}")
    if int(nframes) < 1:
        raise ValueError(f"nframes must be a positive integer, got {nframes}")
    nints, ngroups, ny, nx = sci.shape
    gain = _plane(gain_e_per_dn, (ny, nx), "gain_e_per_dn")
    rn = _plane(readnoise_cds_dn, (ny, nx), "readnoise_cds_dn")
    if ngroups < 2:
        return [np.zeros(sci.shape, dtype=bool) for _ in thresholds]
    method = choose_method(nints, params)
    bad = (groupdq & _BAD) != 0
    if method == "two-point":
        dnu = (groupdq & dqflags.DO_NOT_USE) != 0
        masks = _two_point(sci, bad, dnu, gain, rn, thresholds, params, int(nframes))
    else:
        masks = _temporal(sci, bad, gain, rn, thresholds, params, int(nframes), amplifiers)
    for m in masks:
        m[bad] = False
        m[:, 0] = False
    return masks


# ======================================================================= helpers
def _plane(value, shape, name):
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        return np.full(shape, float(arr), dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(
            f"{name} must be a number or a {shape[0]} x {shape[1]} array, got shape {arr.shape}"
        )
    return arr


def _median_sorted(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Median of the first ``m`` entries of each sorted row of ``s`` (NaN where m == 0)."""
    mm = np.maximum(m, 1)
    lo = np.take_along_axis(s, ((mm - 1) // 2)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(s, (mm // 2)[:, None], axis=1)[:, 0]
    med = (lo + hi) * s.dtype.type(0.5)
    med[m < 1] = np.nan
    return med


def _nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """NaN-ignoring median of each row of a 2-D array (NaN for an all-NaN row)."""
    s = np.sort(x, axis=1)  # NaN sort last
    n = np.count_nonzero(np.isfinite(s), axis=1)
    return _median_sorted(s, n)


def _stcal_clipped_median(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Take stcal's ``calc_med_first_diffs`` of rows sorted ascending with ``n`` finite values.

    4 or more values: the largest (all copies of it) is dropped and the rest's median
    taken; 3: their median; 2: the smaller; fewer: NaN.
    """
    rows = np.arange(s.shape[0])
    top = s[rows, np.maximum(n - 1, 0)]
    m = n.copy()
    four = n >= 4
    if four.any():
        ties = np.count_nonzero(s[four] == top[four, None], axis=1)
        m[four] = n[four] - ties
    med = _median_sorted(s, m)
    two = n == 2
    med[two] = s[two, 0]
    med[n < 2] = np.nan
    return med


def _dilate_cross(mask: np.ndarray) -> np.ndarray:
    """Return the 4 side neighbours of True pixels along the last two axes (not the pixels)."""
    out = np.zeros_like(mask)
    out[..., 1:, :] |= mask[..., :-1, :]
    out[..., :-1, :] |= mask[..., 1:, :]
    out[..., :, 1:] |= mask[..., :, :-1]
    out[..., :, :-1] |= mask[..., :, 1:]
    return out


def _to_pixels(diffs: np.ndarray) -> np.ndarray:
    """(nints, ndiffs, ny, nx) -> (ny*nx, nints*ndiffs), contiguous rows of samples per pixel."""
    nints, ndiffs, ny, nx = diffs.shape
    return np.ascontiguousarray(diffs.reshape(nints * ndiffs, ny * nx).T)


def _from_pixels(flags: np.ndarray, shape) -> np.ndarray:
    nints, ndiffs, ny, nx = shape
    return flags.T.reshape(nints, ndiffs, ny, nx)


# ===================================================================== two-point
def _two_point(sci, bad, dnu, gain, rn, thresholds, params, nframes):
    """Run stcal's ``find_crs`` with the pipeline defaults on one block of rows."""
    nints, ngroups, ny, nx = sci.shape
    out = [np.zeros(sci.shape, dtype=bool) for _ in thresholds]
    data = sci * gain  # electrons, float32 like stcal
    data[bad] = np.nan
    fd = np.diff(data, axis=1)  # (nints, ndiffs, ny, nx)
    del data
    rn_e2 = (rn * gain) ** 2
    noise_floor = rn_e2 / (0.5 * 2 * nframes)  # stcal: read_noise_2 / (0.5 * n_reads_groupdiff)
    # groups unusable on every pixel (stcal groups_all_set_dnu, on this block)
    usable = ngroups - int(np.max(np.sum(np.all(dnu, axis=(2, 3)), axis=1)))
    sigclip = nints >= params.min_sigclip_ints
    if usable < params.minimum_groups and not sigclip:
        return out
    bad_diff = bad[:, 1:]
    if sigclip:
        flags_list = [_sigma_clip_flags(fd, t) & ~bad_diff for t in thresholds]
    elif usable - 1 >= params.min_diffs_single_pass:
        med, sigma = _signed_median_sigma(fd, noise_floor)
        ratio = np.abs(fd - med) / sigma
        finite = np.isfinite(fd)
        flags_list = [(ratio > t) & finite for t in thresholds]
        del ratio
    else:
        flags_list = _iterative(fd, noise_floor, thresholds, params)
    for k, flags in enumerate(flags_list):
        jumps = out[k]
        jumps[:, 1:] = flags
        if params.flag_neighbors and flags.any():
            _stcal_neighbors(fd, flags, noise_floor, params, jumps, bad)
    return out


def _signed_median_sigma(fd, noise_floor, pixels=None):
    """Return stcal's median first difference over integrations and groups, and its sigma.

    Returns (median, sigma) of shape (ny, nx), or of the selected pixels when ``pixels``
    (flat indices) is given.
    """
    nints, ndiffs, ny, nx = fd.shape
    flat = fd.reshape(nints * ndiffs, ny * nx)
    if pixels is None:
        med = _nanmedian_rows(np.ascontiguousarray(flat.T)).reshape(ny, nx)
        floor = noise_floor
    else:
        med = _nanmedian_rows(np.ascontiguousarray(flat[:, pixels].T))
        floor = noise_floor.reshape(-1)[pixels]
    sigma = np.sqrt(np.abs(med) + floor)
    sigma[sigma == 0] = np.nan
    return med, sigma


def _iterative(fd, noise_floor, thresholds, params):
    """Run stcal's ``iterative_jump``: flag each pixel's largest outlier, recompute, repeat."""
    nints, ndiffs, ny, nx = fd.shape
    a = np.abs(_to_pixels(fd))  # (npix, N)
    npix, nsamp = a.shape
    floor = noise_floor.reshape(-1)
    s = np.sort(a, axis=1)
    n = np.count_nonzero(np.isfinite(s), axis=1)
    med = _stcal_clipped_median(s, n)
    del s
    sigma = np.sqrt(np.abs(med).astype(np.float64) + floor)
    sigma[sigma == 0] = np.nan
    with np.errstate(invalid="ignore"):
        ratio = np.abs(a - med[:, None]) / sigma[:, None].astype(np.float32)
    ratio = np.where(np.isnan(ratio), -np.inf, ratio)
    best = np.argmax(ratio, axis=1)
    top = ratio[np.arange(npix), best]
    del ratio
    results = []
    for t in thresholds:
        limit = _limits(n, t, params)
        hit = np.flatnonzero(top > limit)
        flags = np.zeros((npix, nsamp), dtype=bool)
        flags[hit, best[hit]] = True
        if hit.size:
            sub = a[hit].copy()
            sub[np.arange(hit.size), best[hit]] = np.nan
            rows = hit
            for _ in range(nsamp):
                ss = np.sort(sub, axis=1)
                nn = np.count_nonzero(np.isfinite(ss), axis=1)
                mm = _stcal_clipped_median(ss, nn)
                sg = np.sqrt(np.abs(mm).astype(np.float64) + floor[rows])
                sg[sg == 0] = np.nan
                with np.errstate(invalid="ignore"):
                    rr = np.abs(sub - mm[:, None]) / sg[:, None].astype(np.float32)
                rr = np.where(np.isnan(rr), -np.inf, rr)
                bb = np.argmax(rr, axis=1)
                tt = rr[np.arange(rows.size), bb]
                keep = tt > _limits(nn, t, params)
                if not keep.any():
                    break
                flags[rows[keep], bb[keep]] = True
                sub = sub[keep]
                rows = rows[keep]
                sub[np.arange(rows.size), bb[keep]] = np.nan
        results.append(_from_pixels(flags, fd.shape))
    return results


def _limits(n, threshold, params):
    """Per-pixel threshold by number of usable differences (stcal get_cr_locs)."""
    limit = np.full(n.shape, np.inf)
    limit[n >= 4] = threshold
    limit[n == 3] = params.four_group_threshold
    limit[n == 2] = params.three_group_threshold
    return limit


def _sigma_clip_flags(fd, threshold):
    """Run stcal's ``det_jump_sigma_clipping`` (``only_use_ints``): clip across integrations."""
    from astropy.stats import sigma_clip
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        clipped = sigma_clip(fd, sigma=threshold, axis=0, masked=True)
    return np.ma.getmaskarray(clipped) & np.isfinite(fd)


def _stcal_neighbors(fd, flags, noise_floor, params, jumps, bad):
    """Flag as stcal ``flag_four_neighbors``: the side neighbours of 10-1000 sigma jumps."""
    nints, ndiffs, ny, nx = fd.shape
    pix = np.flatnonzero(flags.any(axis=(0, 1)))
    med, sigma = _signed_median_sigma(fd, noise_floor, pixels=pix)
    sub = fd.reshape(nints, ndiffs, ny * nx)[:, :, pix]
    with np.errstate(invalid="ignore"):
        ratio = np.abs(sub - med) / sigma
    big = (ratio > params.min_neighbor_sigma) & (ratio < params.max_neighbor_sigma)
    big &= flags.reshape(nints, ndiffs, ny * nx)[:, :, pix]
    if not big.any():
        return
    seeds = np.zeros((nints, ndiffs, ny * nx), dtype=bool)
    seeds[:, :, pix] = big
    near = _dilate_cross(seeds.reshape(nints, ndiffs, ny, nx))
    jumps[:, 1:] |= near & ~bad[:, 1:]


# ====================================================================== temporal
def _temporal(sci, bad, gain, rn, thresholds, params, nframes, amplifiers):
    """Compare each group difference with its flux-scaled median over integrations."""
    nints, ngroups, ny, nx = sci.shape
    ndiffs = ngroups - 1
    d = np.diff(sci.astype(np.float32, copy=False), axis=1)
    d[bad[:, 1:] | bad[:, :-1]] = np.nan
    valid = np.isfinite(d)
    var_read = rn.astype(np.float32) ** 2 / nframes  # DN^2 per group difference

    # 1. per-integration flux scale from the bright pixels of the block
    img = _nanmedian_over(d, axis=1)  # (nints, ny, nx): each integration's typical difference
    ref = _nanmedian_over(img, axis=0)  # (ny, nx)
    scale = _flux_scale(img, ref, var_read, gain)

    # 2. residual from the scaled median over integrations, per group difference
    ds = d / scale[:, None, None, None]
    m = _nanmedian_over(ds, axis=0)  # (ndiffs, ny, nx)
    del ds
    r = d - scale[:, None, None, None] * m[None]
    del d
    if params.row_correction:
        _remove_row_medians(r, amplifiers)

    # 3. sigma: robust scatter of the residual, at least the read + Poisson expectation
    flat = _to_pixels(r)  # (npix, nints*ndiffs)
    center = _nanmedian_rows(flat)
    mad = _nanmedian_rows(np.abs(flat - center[:, None]))
    del flat
    sigma_emp = (1.4826 * mad).reshape(ny, nx)
    mbar = np.nanmedian(m, axis=0) if ndiffs > 1 else m[0]
    poisson = np.clip(np.nan_to_num(mbar), 0, None) / gain
    sigma_th = np.sqrt((var_read + poisson) * (1 + np.pi / (2 * nints)))
    sigma = np.fmax(sigma_emp, sigma_th)
    sigma[~(sigma > 0)] = np.nan
    with np.errstate(invalid="ignore"):
        ratio = np.abs(r) / sigma
    ratio[~valid] = 0.0
    del r

    out = []
    for t in thresholds:
        flags = ratio > t
        if params.flag_neighbors and flags.any():
            seeds = (
                flags & (ratio > params.min_neighbor_sigma) & (ratio < params.max_neighbor_sigma)
            )
            flags = flags | (_dilate_cross(seeds) & (ratio > params.neighbor_threshold))
        jumps = np.zeros(sci.shape, dtype=bool)
        jumps[:, 1:] = flags
        out.append(jumps)
    return out


def _nanmedian_over(x, axis):
    """NaN-ignoring median along ``axis`` via a sort of contiguous rows."""
    moved = np.moveaxis(x, axis, -1)
    shape = moved.shape[:-1]
    rows = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    return _nanmedian_rows(rows).reshape(shape)


def _flux_scale(img, ref, var_read, gain):
    """Least-squares scale of each integration's image to the reference, bright pixels only.

    1 for every integration when the block holds too little light to measure it to 1 %.
    """
    nints = img.shape[0]
    var = var_read + np.clip(np.nan_to_num(ref), 0, None) / gain
    w = np.where(np.isfinite(ref) & (ref > 3 * np.sqrt(var)), ref / var, 0.0)
    if np.nansum(w * ref) < 1e4:  # template S/N below 100 per integration
        return np.ones(nints, dtype=np.float32)
    good = np.isfinite(img) & (w > 0)
    num = np.where(good, img * w, 0).reshape(nints, -1).sum(axis=1)
    den = np.where(good, ref * w, 0).reshape(nints, -1).sum(axis=1)
    scale = num / np.where(den > 0, den, np.nan)
    # one refinement without pixels hit by outliers (a cosmic ray in a 2-group ramp)
    resid = np.abs(img - scale[:, None, None] * ref) > 5 * np.sqrt(var)
    good &= ~resid
    num = np.where(good, img * w, 0).reshape(nints, -1).sum(axis=1)
    den = np.where(good, ref * w, 0).reshape(nints, -1).sum(axis=1)
    scale = num / np.where(den > 0, den, np.nan)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return scale.astype(np.float32)


def _remove_row_medians(r, amplifiers):
    """Subtract, in place, the median of each row within each amplifier's columns."""
    nx = r.shape[-1]
    for x0, x1 in amplifiers or ((0, nx),):
        block = r[..., x0:x1]
        lead = block.shape[:-1]
        rows = np.ascontiguousarray(block.reshape(-1, x1 - x0))
        med = _nanmedian_rows(rows).reshape(lead)
        block -= np.nan_to_num(med)[..., None]
