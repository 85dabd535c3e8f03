"""Time-dependent truth: integration times, pointing (jitter, drift, antenna move), transit.

Pure functions of the settings; the only randomness is the jitter, drawn from the
Generator the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = [
    "FGS_RATE_HZ",
    "LIMB_DARKENING",
    "TARGET_RA_DEG",
    "TARGET_DEC_DEG",
    "Pointing",
    "Timeline",
    "bjd_tdb",
    "integration_means",
    "make_pointing",
    "make_timeline",
    "transit_shape",
]

#: Fine-guide frame rate, Hz (JWST FGS fine guide: 64 ms frames).
FGS_RATE_HZ = 16.0
#: Quadratic limb-darkening coefficients (u1, u2), typical of a K dwarf at 2-4 um.
LIMB_DARKENING = (0.15, 0.15)
#: Impact parameter of the simulated transit, stellar radii.
IMPACT_PARAMETER = 0.3
#: Target coordinates (degrees), used for the barycentric correction only (HD 189733).
TARGET_RA_DEG = 300.182
TARGET_DEC_DEG = 22.711
#: Direction of the antenna-move offset in the science frame, degrees from +x.
HGA_ANGLE_DEG = 30.0
_DAY = 86400.0


@dataclass(frozen=True)
class Timeline:
    """When each integration of the whole exposure happens (MJD UTC, float64 arrays (nints,)).

    Integration ``i`` starts with its reset at ``start[i]``; group ``g`` is read at
    ``start[i] + (g + 1) * tgroup``; ``end[i]`` is the last read; one reset frame follows.
    """

    tframe_s: float
    tgroup_s: float
    ngroups: int
    start: np.ndarray
    mid: np.ndarray
    end: np.ndarray

    @property
    def nints(self) -> int:
        return len(self.start)

    @property
    def expstart(self) -> float:
        return float(self.start[0])

    @property
    def expend(self) -> float:
        return float(self.end[-1])

    @property
    def span_s(self) -> float:
        """Exposure length from the first reset to the last read, seconds."""
        return (self.expend - self.expstart) * _DAY

    @property
    def integration_s(self) -> float:
        """Length of one integration from reset to last read, seconds."""
        return self.ngroups * self.tgroup_s


def make_timeline(expstart_mjd: float, nints: int, ngroups: int, tframe_s: float) -> Timeline:
    """Integration start/mid/end times for RAPID readout (TGROUP = TFRAME, one reset frame)."""
    cycle = (ngroups + 1) * tframe_s
    start = expstart_mjd + np.arange(nints) * cycle / _DAY
    end = start + ngroups * tframe_s / _DAY
    return Timeline(tframe_s, tframe_s, ngroups, start, 0.5 * (start + end), end)


def bjd_tdb(mjd_utc: np.ndarray) -> np.ndarray:
    """Barycentric Julian Date (TDB) of MJD UTC times, for the simulated target.

    Uses astropy's built-in ephemeris and a geocentric observer (JWST at L2 differs by a
    few seconds; good enough for simulated products).
    """
    import astropy.units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time

    t = Time(
        np.asarray(mjd_utc, dtype=float),
        format="mjd",
        scale="utc",
        location=EarthLocation.from_geocentric(0 * u.m, 0 * u.m, 0 * u.m),
    )
    target = SkyCoord(TARGET_RA_DEG * u.deg, TARGET_DEC_DEG * u.deg)
    ltt = t.light_travel_time(target, kind="barycentric", ephemeris="builtin")
    return (t.tdb + ltt).jd


# ------------------------------------------------------------------------- pointing
@dataclass(frozen=True)
class Pointing:
    """The true pointing offset at 16 Hz, in science pixels, without the static offset.

    ``mjd`` are frame mid times (MJD UTC); ``dx``, ``dy`` float64 arrays (nframes,) in
    science pixels; ``hga_start``/``hga_stop`` the antenna-move window (MJD) or None.
    """

    mjd: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    hga_start: float | None
    hga_stop: float | None


def _ou_variance_of_mean(t_over_tau: float) -> float:
    """Variance of the time average over T of a unit-variance OU process (correlation time tau)."""
    x = max(t_over_tau, 1e-9)
    return 2.0 / x**2 * (x - 1.0 + np.exp(-x))


def make_pointing(
    params, timeline: Timeline, scale_arcsec: float, rng: np.random.Generator, margin_s: float = 5.0
) -> Pointing:
    """Pointing offsets at 16 Hz from ``margin_s`` before the exposure to ``margin_s`` after.

    Jitter is an Ornstein-Uhlenbeck process per axis (correlation time ``jitter_tau_s``)
    scaled so that the mean over one integration has rms ``jitter_mas``; drift is linear
    from 0 at the exposure start to ``drift_xy_px`` at its end (constant outside); the
    antenna move starts
    mid-exposure with a sudden offset of ``hga_px`` that rings down with ``hga_tau_s``.
    """
    t0 = timeline.expstart - margin_s / _DAY
    nframes = int(np.ceil((timeline.span_s + 2 * margin_s) * FGS_RATE_HZ))
    dt = 1.0 / FGS_RATE_HZ
    mjd = t0 + (np.arange(nframes) + 0.5) * dt / _DAY
    tau = params.jitter_tau_s
    sigma_mas = params.jitter_mas / np.sqrt(_ou_variance_of_mean(timeline.integration_s / tau))
    sigma_px = sigma_mas / (1000.0 * scale_arcsec)
    phi = np.exp(-dt / tau)
    eps = rng.standard_normal((2, nframes))
    eps[:, 0] *= 1.0 / np.sqrt(1 - phi**2)  # stationary start
    jit = lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], eps, axis=1) * sigma_px
    # the drift runs over the exposure only; the guider margins before and after stay put
    frac = np.clip(
        (mjd - timeline.expstart) / max(timeline.expend - timeline.expstart, 1e-12), 0.0, 1.0
    )
    ddx, ddy = params.drift_xy_px
    dx = jit[0] + ddx * frac
    dy = jit[1] + ddy * frac
    hga_start = hga_stop = None
    if params.hga:
        hga_start = timeline.expstart + 0.5 * (timeline.expend - timeline.expstart)
        hga_stop = hga_start + params.hga_duration_s / _DAY
        delta = (mjd - hga_start) * _DAY
        on = delta >= 0
        ring = np.zeros_like(mjd)
        ring[on] = np.exp(-delta[on] / params.hga_tau_s) * np.cos(
            2 * np.pi * delta[on] / (4 * params.hga_tau_s)
        )
        ang = np.deg2rad(HGA_ANGLE_DEG)
        dx = dx + params.hga_px * np.cos(ang) * ring
        dy = dy + params.hga_px * np.sin(ang) * ring
    return Pointing(mjd, dx, dy, hga_start, hga_stop)


def integration_means(mjd: np.ndarray, values: np.ndarray, timeline: Timeline) -> np.ndarray:
    """Mean of a 16 Hz series over the frames inside each integration.

    A frame belongs to integration ``i`` when ``start[i] <= mjd < end[i]``; an integration
    shorter than a frame takes the frame nearest its mid time.

    Returns
    -------
    means : float64 ndarray, shape (nints,) + values.shape[1:]
    """
    values = np.asarray(values, dtype=float)
    lo = np.searchsorted(mjd, timeline.start, side="left")
    hi = np.searchsorted(mjd, timeline.end, side="left")
    csum = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    count = (hi - lo).astype(float)
    out = np.empty((timeline.nints,) + values.shape[1:])
    ok = count > 0
    out[ok] = (csum[hi[ok]] - csum[lo[ok]]) / count[ok].reshape((-1,) + (1,) * (values.ndim - 1))
    if not ok.all():
        nearest = np.clip(np.searchsorted(mjd, timeline.mid[~ok]), 0, len(mjd) - 1)
        out[~ok] = values[nearest]
    return out


def hga_flags(timeline: Timeline, pointing: Pointing) -> np.ndarray:
    """Flag integrations that overlap the antenna-move window: bool ndarray (nints,)."""
    if pointing.hga_start is None:
        return np.zeros(timeline.nints, dtype=bool)
    return (timeline.end >= pointing.hga_start) & (timeline.start <= pointing.hga_stop)


# -------------------------------------------------------------------------- transit
def _blocked_fraction(z: np.ndarray, p: float, u1: float, u2: float, nr: int = 4000) -> np.ndarray:
    """Fraction of a limb-darkened star hidden by a planet, by integration over annuli.

    Quadratic limb darkening (u1, u2), planet radius ratio p, projected separations z in
    stellar radii.
    """
    r = (np.arange(nr) + 0.5) / nr
    mu = np.sqrt(1 - r**2)
    weight = (1 - u1 * (1 - mu) - u2 * (1 - mu) ** 2) * 2 * np.pi * r / nr
    z = np.atleast_1d(np.asarray(z, dtype=float))
    out = np.empty(z.shape)
    for sl in range(0, len(z), 2048):
        zz = z[sl : sl + 2048, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            cosang = (r**2 + zz**2 - p**2) / (2 * r * zz)
        frac = np.arccos(np.clip(cosang, -1, 1)) / np.pi
        frac = np.where(zz + r <= p, 1.0, np.where(np.abs(r - zz) >= p, 0.0, frac))
        out[sl : sl + 2048] = frac @ weight
    return out / weight.sum()


def transit_shape(mjd: np.ndarray, timeline: Timeline, depth: float) -> np.ndarray:
    """Transit shape for unit depth: relative flux = 1 - depth * shape, shape 1 at mid-transit.

    The transit is centred mid-exposure and lasts half of it (first to fourth contact),
    impact parameter 0.3, quadratic limb darkening :data:`LIMB_DARKENING`, planet radius
    ratio sqrt(depth) (0.1 when depth is 0, for the shape only).

    Returns
    -------
    shape : float64 ndarray, same shape as ``mjd``, between 0 and 1
    """
    p = float(np.sqrt(depth)) if depth > 0 else 0.1
    b = IMPACT_PARAMETER
    tmid = timeline.expstart + 0.5 * (timeline.expend - timeline.expstart)
    half = 0.25 * max(timeline.expend - timeline.expstart, 1e-9)
    speed = np.sqrt((1 + p) ** 2 - b**2) / half
    z = np.sqrt(b**2 + (speed * (np.asarray(mjd, dtype=float) - tmid)) ** 2)
    u1, u2 = LIMB_DARKENING
    blocked = _blocked_fraction(z.ravel(), p, u1, u2).reshape(np.shape(z))
    return blocked / _blocked_fraction(np.array([b]), p, u1, u2)[0]
