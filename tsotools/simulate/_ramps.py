"""Ramps of one integration and their least-squares slopes.

The slope is the ordinary least-squares slope of group value against read time; a
cosmic-ray jump starts a new segment with its own intercept (a perfect jump step: the
group difference holding the jump is not used), saturated groups are left out. Variances
are the exact ones of that estimator for Poisson increments and white read noise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SATURATION_DN", "RampFit", "build_ramp", "plain_fit_weights"]

#: Signal above the superbias at which a pixel saturates, DN (NIRCam full well ~ 1e5 e-).
SATURATION_DN = 55000.0


def plain_fit_weights(ngroups: int, tgroup_s: float) -> tuple[np.ndarray, float, float]:
    """Weights of the plain least-squares slope over all groups.

    Returns
    -------
    w : float64 ndarray (ngroups,)
        slope = sum(w * ramp), in 1/s.
    sxx : float
        Sum of squared read-time deviations, s^2 (read-noise variance = RN^2 / sxx).
    poisson_coeff : float
        Sum over increments of the squared tail sums of w, 1/s^2: the Poisson variance of
        the slope is rate * tgroup / gain * poisson_coeff, (DN/s)^2.
    """
    t = (np.arange(ngroups) + 1.0) * tgroup_s
    dev = t - t.mean()
    sxx = float(np.sum(dev**2))
    w = dev / sxx
    tails = np.cumsum(w[::-1])[::-1][1:]
    return w, sxx, float(np.sum(tails**2))


def build_ramp(
    rate: np.ndarray,
    injected: np.ndarray,
    rng: np.random.Generator,
    *,
    tgroup_s: float,
    gain: float,
    readnoise_dn: float,
    ktc_dn: float,
    cr: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One integration of a post-superbias ramp.

    ramp[g] = kTC + Poisson(rate * gain * tgroup) accumulated over g+1 groups / gain
    + read noise + cosmic-ray steps + injected[g], clipped at :data:`SATURATION_DN`
    (before the injected component and read noise are added).

    Parameters
    ----------
    rate : float32 ndarray (ny, nx), DN/s, noise-free
    injected : float32 ndarray (ngroups, ny, nx), DN (the 1/f + offsets component P)
    cr : (group, y, x, amplitude) arrays or None

    Returns
    -------
    ramp : float32 ndarray (ngroups, ny, nx), DN
    saturated : bool ndarray (ngroups, ny, nx)
    """
    ngroups, ny, nx = injected.shape
    lam = rate.astype(np.float64) * (gain * tgroup_s)
    electrons = rng.poisson(lam, size=(ngroups, ny, nx))
    signal = np.cumsum(electrons, axis=0, dtype=np.float64).astype(np.float32)
    signal /= np.float32(gain)
    del electrons
    signal += (rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(ktc_dn))[None]
    if cr is not None and len(cr[0]):
        group, y, x, amp = cr
        for g in range(1, ngroups):
            sel = group <= g
            np.add.at(signal[g], (y[sel], x[sel]), amp[sel])
    saturated = signal >= SATURATION_DN
    if saturated.any():
        saturated = np.cumsum(saturated, axis=0, dtype=np.int32) > 0
        np.minimum(signal, np.float32(SATURATION_DN), out=signal)
    signal += rng.standard_normal((ngroups, ny, nx), dtype=np.float32) * np.float32(readnoise_dn)
    signal += injected
    return signal, saturated


class RampFit:
    """Slopes of one integration: plain fit everywhere, segment fit where jumps or saturation.

    Parameters
    ----------
    ngroups, ny, nx : int
    tgroup_s : float
    cr : (group, y, x, amplitude) arrays or None
    saturated : bool ndarray (ngroups, ny, nx) or None

    Attributes
    ----------
    sxx : float64 ndarray (ny, nx), s^2; 0 where fewer than 2 usable groups
    poisson_coeff : float64 ndarray (ny, nx), 1/s^2
    jump : bool ndarray (ny, nx), a cosmic ray hit this integration
    any_saturated : bool ndarray (ny, nx)
    """

    def __init__(self, ngroups, ny, nx, tgroup_s, cr=None, saturated=None):
        self.ngroups, self.tgroup_s = ngroups, tgroup_s
        self.w, sxx, pc = plain_fit_weights(ngroups, tgroup_s)
        self.sxx = np.full((ny, nx), sxx)
        self.poisson_coeff = np.full((ny, nx), pc)
        self.jump = np.zeros((ny, nx), dtype=bool)
        self.any_saturated = (
            np.zeros((ny, nx), dtype=bool) if saturated is None else saturated[-1].copy()
        )
        special = self.any_saturated.copy()
        if cr is not None and len(cr[0]):
            self.jump[cr[1], cr[2]] = True
            special |= self.jump
        self.yy, self.xx = np.nonzero(special)
        m = len(self.yy)
        t = (np.arange(ngroups) + 1.0) * tgroup_s
        seg = np.zeros((ngroups, m), dtype=np.int16)
        if m and cr is not None and len(cr[0]):
            index = np.full((ny, nx), -1, dtype=np.int64)
            index[self.yy, self.xx] = np.arange(m)
            cols = index[cr[1], cr[2]]
            starts = np.zeros((ngroups, m), dtype=np.int16)
            np.add.at(starts, (cr[0], cols), 1)
            seg = np.cumsum(starts, axis=0, dtype=np.int16)
        valid = (
            np.ones((ngroups, m), dtype=bool)
            if saturated is None
            else ~saturated[:, self.yy, self.xx]
        )
        # per-segment centred times -> weights
        wsub = np.zeros((ngroups, m))
        den = np.zeros(m)
        nseg = int(seg.max()) + 1 if m else 0
        for s in range(nseg):
            msk = valid & (seg == s)
            n = msk.sum(axis=0)
            tbar = np.where(n > 0, (t[:, None] * msk).sum(axis=0) / np.maximum(n, 1), 0.0)
            dev = np.where(msk, t[:, None] - tbar[None, :], 0.0)
            wsub += dev
            den += (dev**2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            wsub = np.where(den > 0, wsub / den, 0.0)
        coeff = np.zeros(m)
        for s in range(nseg):
            ws = np.where(seg == s, wsub, 0.0)
            tails = np.cumsum(ws[::-1], axis=0)[::-1]
            same = (seg[1:] == s) & (seg[:-1] == s)
            coeff += ((tails[1:] * same) ** 2).sum(axis=0)
        self.wsub = wsub
        self.sxx[self.yy, self.xx] = den
        self.poisson_coeff[self.yy, self.xx] = coeff

    @property
    def usable(self) -> np.ndarray:
        """True where the slope is defined (at least 2 usable groups in one segment)."""
        return self.sxx > 0

    def slope(self, ramp: np.ndarray) -> np.ndarray:
        """Least-squares slope of ``ramp`` (ngroups, ny, nx) DN: float32 (ny, nx) DN/s.

        NaN where the slope is not defined (see :attr:`usable`).
        """
        out = np.zeros(ramp.shape[1:], dtype=np.float64)
        for g in range(self.ngroups):
            out += self.w[g] * ramp[g]
        if len(self.yy):
            sub = ramp[:, self.yy, self.xx].astype(np.float64)
            out[self.yy, self.xx] = (self.wsub * sub).sum(axis=0)
        out[~self.usable] = np.nan
        return out.astype(np.float32)

    def variances(
        self, rate: np.ndarray, gain: float, readnoise_dn: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Poisson, read-noise) variance of the slope at count rate ``rate`` (DN/s), (DN/s)^2.

        Negative or NaN rates count as 0 for the Poisson part (as the pipeline does).
        """
        r = np.nan_to_num(np.clip(rate, 0, None), nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_p = r * self.tgroup_s / gain * self.poisson_coeff
            var_r = np.where(self.usable, readnoise_dn**2 / self.sxx, np.nan)
        var_p = np.where(self.usable, var_p, np.nan)
        return var_p.astype(np.float32), var_r.astype(np.float32)
