"""NIRCam H2RG detector geometry: amplifiers, reference pixels, read order and timing.

All pixel coordinates are 0-based ``(x, y)`` in the science (DMS) frame of the subarray,
numpy order ``[y, x]``. Only :mod:`tsotools.io` converts from the 1-based FITS keywords.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "AMP_WIDTH",
    "DETECTOR_SIZE",
    "DEFAULT_GAIN_E_PER_DN",
    "FGS_PIXEL_SCALE_ARCSEC",
    "Geometry",
    "KTC_NOISE_DN",
    "N_REFERENCE",
    "PIXEL_SCALE_ARCSEC",
    "PIXEL_TIME_S",
    "READ_NOISE_DN",
    "ROW_OVERHEAD_PIXELS",
    "default_gain",
    "default_readnoise_cds",
    "is_longwave",
]

#: Full detector size in pixels (H2RG, both axes).
DETECTOR_SIZE = 2048
#: Width of one output's stripe with NOUTPUTS=4, in pixels.
AMP_WIDTH = 512
#: Reference pixels on each detector edge (rows and columns), in pixels.
N_REFERENCE = 4
#: Pixel clock: time to read one pixel, in seconds (NIRCam, JDox "Detector Readout").
PIXEL_TIME_S = 10e-6
#: Extra pixel times at the end of every row (line overhead).
ROW_OVERHEAD_PIXELS = 12
#: Gain in e-/DN by channel, flight averages (ALGORITHMS.md; CRDS GAIN files vary by pixel).
DEFAULT_GAIN_E_PER_DN = {"LW": 1.8, "SW": 2.05}
#: White read noise of one read, in DN. CRDS READNOISE files give the CDS value, sqrt(2) larger.
READ_NOISE_DN = 10.0
#: kTC (reset) noise per pixel per integration, in DN.
KTC_NOISE_DN = 20.0
#: Pixel scales in arcsec per pixel.
PIXEL_SCALE_ARCSEC = {"LW": 0.063, "SW": 0.031}
#: FGS pixel scale in arcsec per pixel.
FGS_PIXEL_SCALE_ARCSEC = 0.069


def is_longwave(detector: str) -> bool:
    """Return True for a NIRCam long-wave detector (NRCALONG, NRCBLONG, NRCA5, NRCB5)."""
    det = (detector or "").upper()
    return det.endswith("LONG") or det.endswith("5")


def default_gain(detector: str) -> float:
    """Return the default gain for a detector, in e-/DN."""
    return DEFAULT_GAIN_E_PER_DN["LW" if is_longwave(detector) else "SW"]


def default_readnoise_cds(detector: str) -> float:
    """Return the default read noise in the CRDS READNOISE convention (CDS), in DN."""
    del detector  # the same for SW and LW to the precision known here
    return READ_NOISE_DN * np.sqrt(2.0)


@dataclass(frozen=True)
class Geometry:
    """Where a subarray sits on the detector and how it is read out.

    Parameters
    ----------
    xstart, ystart : int
        0-based full-frame position of the subarray's pixel ``[0, 0]`` (SUBSTRT1/2 - 1).
    nx, ny : int
        Subarray size in pixels (SUBSIZE1/2).
    noutputs : int
        Number of outputs (amplifiers) used, 1 or 4.
    fastaxis : int
        Fast-read direction of amplifier 1 along x: +1 or -1 (sign of FASTAXIS).
    slowaxis : int
        Slow-read direction along y: +1 or -1 (sign of SLOWAXIS).
    """

    xstart: int
    ystart: int
    nx: int
    ny: int
    noutputs: int = 4
    fastaxis: int = 1
    slowaxis: int = 1

    def __post_init__(self):
        if self.noutputs not in (1, 4):
            raise ValueError(f"noutputs must be 1 or 4, got {self.noutputs}")
        if self.fastaxis not in (1, -1) or self.slowaxis not in (1, -1):
            raise ValueError("fastaxis and slowaxis must be +1 or -1")
        if self.nx < 1 or self.ny < 1:
            raise ValueError(f"subarray size must be positive, got {self.nx} x {self.ny}")
        if not (0 <= self.xstart and self.xstart + self.nx <= DETECTOR_SIZE):
            raise ValueError(f"subarray x range {self.xstart}..{self.xstart + self.nx} is off the detector")
        if not (0 <= self.ystart and self.ystart + self.ny <= DETECTOR_SIZE):
            raise ValueError(f"subarray y range {self.ystart}..{self.ystart + self.ny} is off the detector")

    # ----------------------------------------------------------------- amplifiers
    @cached_property
    def amplifiers(self) -> tuple[tuple[int, int], ...]:
        """Column range ``[x0, x1)`` of each amplifier present, in subarray coordinates.

        With NOUTPUTS=1 the whole subarray width is one output. With NOUTPUTS=4 the
        512-px stripes of the full frame are clipped to the subarray; stripes that do not
        overlap the subarray are left out.
        """
        if self.noutputs == 1:
            return ((0, self.nx),)
        out = []
        for a in range(DETECTOR_SIZE // AMP_WIDTH):
            x0 = max(a * AMP_WIDTH - self.xstart, 0)
            x1 = min((a + 1) * AMP_WIDTH - self.xstart, self.nx)
            if x1 > x0:
                out.append((x0, x1))
        return tuple(out)

    @cached_property
    def amplifier_ids(self) -> tuple[int, ...]:
        """Full-frame amplifier number (0-3) of each entry of :attr:`amplifiers`."""
        if self.noutputs == 1:
            return (0,)
        return tuple((self.xstart + x0) // AMP_WIDTH for x0, _ in self.amplifiers)

    def amplifier_map(self) -> np.ndarray:
        """Index into :attr:`amplifiers` for every column: int ndarray, shape (nx,)."""
        amap = np.empty(self.nx, dtype=np.int16)
        for i, (x0, x1) in enumerate(self.amplifiers):
            amap[x0:x1] = i
        return amap

    # ------------------------------------------------------------ reference pixels
    @cached_property
    def reference_rows(self) -> np.ndarray:
        """Subarray row indices (0-based) that are reference rows: int ndarray."""
        yfull = self.ystart + np.arange(self.ny)
        ref = (yfull < N_REFERENCE) | (yfull >= DETECTOR_SIZE - N_REFERENCE)
        return np.flatnonzero(ref)

    @cached_property
    def reference_columns(self) -> np.ndarray:
        """Subarray column indices (0-based) that are reference columns: int ndarray."""
        xfull = self.xstart + np.arange(self.nx)
        ref = (xfull < N_REFERENCE) | (xfull >= DETECTOR_SIZE - N_REFERENCE)
        return np.flatnonzero(ref)

    def reference_mask(self) -> np.ndarray:
        """True on reference pixels: bool ndarray, shape (ny, nx)."""
        mask = np.zeros((self.ny, self.nx), dtype=bool)
        mask[self.reference_rows, :] = True
        mask[:, self.reference_columns] = True
        return mask

    # --------------------------------------------------------------- read timing
    @property
    def columns_per_output(self) -> int:
        """Pixels each output reads per row: 512 with 4 outputs, the subarray width with 1."""
        return AMP_WIDTH if self.noutputs == 4 else self.nx

    @property
    def frame_time_s(self) -> float:
        """Frame time (TFRAME) in seconds, as NIRCam computes it.

        Reproduces flight values: 0.34061 s for SUBGRISM64 and 1.34669 s for SUBGRISM256
        with 4 outputs, 0.05016 s for SUB64P with one output.
        """
        if self.noutputs == 4:
            ticks = (self.nx // 4 + ROW_OVERHEAD_PIXELS) * (self.ny + 1) + 1
        else:
            ticks = (self.nx + ROW_OVERHEAD_PIXELS) * (self.ny + 2)
        return ticks * PIXEL_TIME_S

    @property
    def ticks_per_row(self) -> int:
        """Pixel-clock ticks from the start of one row to the start of the next."""
        return self.columns_per_output + ROW_OVERHEAD_PIXELS

    def read_direction(self, amp_index: int) -> int:
        """Fast-read direction (+1 or -1 along x) of amplifier ``amp_index`` of :attr:`amplifiers`."""
        if self.noutputs == 1:
            return self.fastaxis
        amp_id = self.amplifier_ids[amp_index]
        return self.fastaxis if amp_id % 2 == 0 else -self.fastaxis

    def read_ticks(self) -> np.ndarray:
        """Pixel-clock tick at which each pixel is read, from the start of the frame.

        Returns
        -------
        ticks : int64 ndarray, shape (ny, nx)
            Ticks of :data:`PIXEL_TIME_S`. Outputs read simultaneously, so pixels at the
            same position in their amplifier's read order share a tick.
        """
        rows = np.arange(self.ny) if self.slowaxis > 0 else np.arange(self.ny)[::-1]
        row_order = np.empty(self.ny, dtype=np.int64)
        row_order[rows] = np.arange(self.ny)
        col_pos = np.empty(self.nx, dtype=np.int64)
        for i, (x0, x1) in enumerate(self.amplifiers):
            k = np.arange(x1 - x0)
            if self.read_direction(i) > 0:
                col_pos[x0:x1] = k
            else:
                col_pos[x0:x1] = k[::-1]
            if self.noutputs == 4:
                # a clipped amplifier starts its row where a full 512-px stripe would
                full_x0 = self.amplifier_ids[i] * AMP_WIDTH - self.xstart
                if self.read_direction(i) > 0:
                    col_pos[x0:x1] += x0 - full_x0
                else:
                    col_pos[x0:x1] += full_x0 + AMP_WIDTH - x1
        return row_order[:, None] * self.ticks_per_row + col_pos[None, :]

    def read_times_s(self) -> np.ndarray:
        """Time at which each pixel is read, from the start of the frame, in seconds.

        Returns
        -------
        times : float64 ndarray, shape (ny, nx)
        """
        return self.read_ticks() * PIXEL_TIME_S

    @property
    def ticks_per_frame(self) -> int:
        """Pixel-clock ticks in one frame (frame time divided by the pixel time)."""
        return int(round(self.frame_time_s / PIXEL_TIME_S))
