"""Detector noise: the injected 1/f + pre-amplifier offset + odd/even component, cosmic rays.

The 1/f noise is made as a time stream per output, indexed by pixel-clock tick
(:meth:`tsotools.detector.Geometry.read_ticks`), running continuously through every group
of an integration including the row overheads, then sampled at each pixel's read time.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

from ..detector import PIXEL_TIME_S, Geometry

__all__ = [
    "ODDEVEN_DN",
    "ONEOVERF_PSD_DN2",
    "PREAMP_OFFSET_DN",
    "draw_cosmic_rays",
    "injected_component",
    "oneoverf_stream",
]

#: 1/f power spectral density S(f) = ONEOVERF_PSD_DN2 / f, in DN^2/Hz * Hz, per output.
#: Chosen so that the row means of one amplifier (512 px) scatter by about 2 DN rms in a
#: single frame of SUBGRISM64 (measured figures in docs/simulator.md), so that 1/f dominates
#: binned grism precision as found by Schlawin et al. 2020 (AJ 160, 231).
ONEOVERF_PSD_DN2 = 1.0
#: Pre-amplifier reset offset: rms per amplifier per group, DN ("tens of DN", ALGORITHMS.md).
PREAMP_OFFSET_DN = 20.0
#: Odd/even column offsets: rms per amplifier, per column parity, per group, DN.
ODDEVEN_DN = 2.0


def oneoverf_stream(
    rng: np.random.Generator, nticks: int, psd_dn2: float = ONEOVERF_PSD_DN2
) -> np.ndarray:
    """Make a stream of 1/f noise sampled at the pixel clock.

    Parameters
    ----------
    rng : numpy Generator
    nticks : int
        Number of samples (pixel-clock ticks of :data:`~tsotools.detector.PIXEL_TIME_S`).
    psd_dn2 : float
        One-sided power spectral density is ``psd_dn2 / f`` (DN^2/Hz) from the lowest
        frequency of the stream up to the Nyquist frequency; the mean is zero.

    Returns
    -------
    stream : float32 ndarray, shape (nticks,), DN
    """
    n = next_fast_len(int(nticks), real=True)
    spec = rfft(rng.standard_normal(n))
    freq = rfftfreq(n, PIXEL_TIME_S)
    gain = np.zeros_like(freq)
    # unit-variance white noise has one-sided PSD 2*dt; scale it to psd/f
    gain[1:] = np.sqrt(psd_dn2 / (2.0 * PIXEL_TIME_S * freq[1:]))
    return irfft(spec * gain, n)[:nticks].astype(np.float32)


def injected_component(
    geometry: Geometry,
    ngroups: int,
    rng: np.random.Generator,
    *,
    scale: float = 1.0,
    shared_fraction: float = 0.2,
    oddeven: bool = True,
    psd_dn2: float = ONEOVERF_PSD_DN2,
    preamp_dn: float = PREAMP_OFFSET_DN,
    oddeven_dn: float = ODDEVEN_DN,
) -> np.ndarray:
    """Make the component P added to every group of one integration: 1/f + offsets.

    P = scale * (pre-amp offset[g, amp] + sqrt(1 - s) * 1/f_amp[tick] + sqrt(s) * 1/f_shared[tick]
    + odd/even offset[g, amp, parity]), with s = ``shared_fraction`` (part of the 1/f
    variance common to all outputs). Each stream runs through the ``ngroups`` frames of
    the integration, ``ticks_per_frame`` ticks each; outputs are read at the same time, so
    the shared stream is sampled at the same tick in every amplifier (mirrored where the
    read direction alternates). Reference pixels get P like any other pixel.

    Returns
    -------
    P : float32 ndarray, shape (ngroups, ny, nx), DN. All zero when ``scale`` is 0.
    """
    ny, nx = geometry.ny, geometry.nx
    if scale == 0:
        return np.zeros((ngroups, ny, nx), dtype=np.float32)
    amap = geometry.amplifier_map().astype(np.intp)
    namp = len(geometry.amplifiers)
    per_frame = geometry.ticks_per_frame
    nticks = ngroups * per_frame
    ticks = geometry.read_ticks()
    idx = (np.arange(ngroups, dtype=np.int64)[:, None, None] * per_frame + ticks[None]).astype(
        np.intp
    )
    streams = np.stack([oneoverf_stream(rng, nticks, psd_dn2) for _ in range(namp)])
    shared = oneoverf_stream(rng, nticks, psd_dn2)
    out = streams[amap[None, None, :], idx]
    out *= np.float32(np.sqrt(1.0 - shared_fraction))
    out += np.float32(np.sqrt(shared_fraction)) * shared[idx]
    offsets = rng.normal(0.0, preamp_dn, size=(ngroups, namp)).astype(np.float32)
    out += offsets[:, amap][:, None, :]
    if oddeven:
        parity = (geometry.xstart + np.arange(nx)) % 2
        oe = rng.normal(0.0, oddeven_dn, size=(ngroups, namp, 2)).astype(np.float32)
        out += oe[:, amap, parity][:, None, :]
    if scale != 1:
        out *= np.float32(scale)
    return out


def draw_cosmic_rays(
    rng: np.random.Generator,
    light_mask: np.ndarray,
    ngroups: int,
    tgroup_s: float,
    rate_per_px_s: float,
    min_dn: float,
    max_dn: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cosmic-ray hits of one integration.

    Hits arrive uniformly in time between the first and the last read (hits before the
    first read only raise a pixel's zero point and are not simulated) on light-sensitive
    pixels (``light_mask``; reference pixels are not hit). A hit between reads g-1 and g
    adds its amplitude to groups g..ngroups-1.

    Returns
    -------
    group, y, x : int ndarrays, shape (nhits,)
        First group containing the jump (1..ngroups-1), 0-based row and column.
    amplitude_dn : float32 ndarray, shape (nhits,)
        Log-uniform between ``min_dn`` and ``max_dn``.
    """
    pixels = np.flatnonzero(light_mask.ravel())
    expected = rate_per_px_s * len(pixels) * (ngroups - 1) * tgroup_s
    nhits = int(rng.poisson(expected)) if expected > 0 else 0
    flat = pixels[rng.integers(0, len(pixels), nhits)] if nhits else np.zeros(0, dtype=np.int64)
    group = 1 + np.minimum((rng.random(nhits) * (ngroups - 1)).astype(np.int64), ngroups - 2)
    amp = np.exp(rng.uniform(np.log(min_dn), np.log(max_dn), nhits)).astype(np.float32)
    y, x = np.divmod(flat, light_mask.shape[1])
    order = np.lexsort((x, y, group))
    return group[order], y[order], x[order], amp[order]
