"""Settings of the simulator: one frozen dataclass per product kind, checked on creation.

Every field has a default small enough that a default run takes a few seconds. Defaults
come from :mod:`tsotools.detector` (gain, read noise, kTC noise) and from the figures in
``docs/simulator.md`` (1/f amplitude, cosmic-ray rate, jitter, antenna moves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..detector import DEFAULT_GAIN_E_PER_DN, KTC_NOISE_DN, READ_NOISE_DN

__all__ = [
    "GRISM_FILTERS",
    "GRISM_SUBARRAYS",
    "GrismParams",
    "GuiderParams",
    "IMAGING_FILTERS",
    "IMAGING_SUBARRAYS",
    "ImagingParams",
    "SCIENCE_PRODUCTS",
]

#: Grism subarrays: name -> height in rows (all 2048 px wide, at the bottom detector edge).
GRISM_SUBARRAYS = {"SUBGRISM64": 64, "SUBGRISM128": 128, "SUBGRISM256": 256}
#: Weak-lens imaging subarrays: name -> side in pixels (square, in a detector corner).
IMAGING_SUBARRAYS = {"SUB64P": 64, "SUB160P": 160, "SUB400P": 400}
#: Grism filters the simulator knows (in-flight GRISMR wavelength solutions).
GRISM_FILTERS = ("F322W2", "F444W")
#: Science products a simulation can write, in order (``calints``: grism scenes only).
SCIENCE_PRODUCTS = ("ramp", "rateints", "calints")
#: Short-wave filters used with the WLP8 weak lens.
IMAGING_FILTERS = ("F210M", "WLP4")
#: Start of the default exposure, MJD UTC (2024-01-01 06:00).
DEFAULT_EXPSTART_MJD = 60310.25


def _finite(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {rng}, got {value}")


def _check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    v = _finite(name, value)
    bad = (low is not None and (v < low or (low_open and v == low))) or (
        high is not None and (v > high or (high_open and v == high))
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_pair(name, value):
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a pair (x, y) of numbers, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of numbers, got {value!r}")
    for v in pair:
        _finite(name, v)


@dataclass(frozen=True)
class _CommonParams:
    """Fields shared by every simulated product (see the subclasses for their meaning)."""

    #: Seed of the numpy Generator; the same seed gives identical files.
    seed: int = 0
    #: Integrations in the whole exposure (NINTS).
    nints: int = 20
    #: Groups per integration (NGROUPS); RAPID readout, so one frame per group.
    ngroups: int = 5
    #: Multiplies every injected 1/f, pre-amplifier offset and odd/even component; 0 disables them.
    oneoverf_scale: float = 1.0
    #: Fraction of the 1/f variance common to all amplifiers (same pixel-clock stream).
    shared_fraction: float = 0.2
    #: Add per-amplifier odd/even column offsets (changing every group).
    oddeven: bool = True
    #: Add cosmic-ray jumps.
    cosmic_rays: bool = True
    #: Cosmic-ray hits per pixel per second.
    cr_rate: float = 1e-4
    #: Smallest and largest cosmic-ray jump in DN (log-uniform between them).
    cr_min_dn: float = 40.0
    cr_max_dn: float = 20000.0
    #: Pointing jitter: rms per axis of the mean pointing within one integration, in mas.
    jitter_mas: float = 1.0
    #: Correlation time of the jitter (Ornstein-Uhlenbeck process sampled at 16 Hz), seconds.
    jitter_tau_s: float = 2.0
    #: Linear drift over the exposure in science pixels, along x and y (unless given apart).
    drift_px: float = 0.0
    drift_x_px: float | None = None
    drift_y_px: float | None = None
    #: One high-gain-antenna move mid-exposure: a sudden offset that decays back.
    hga: bool = True
    #: Size of the antenna-move offset, science pixels.
    hga_px: float = 0.2
    #: Decay time of the antenna-move offset, seconds.
    hga_tau_s: float = 4.0
    #: Length of the antenna-move disturbance (truth HGA flags), seconds.
    hga_duration_s: float = 20.0
    #: White-light transit depth (relative flux drop at mid-transit); 0 for no transit.
    transit_depth: float = 0.01
    #: True star position minus the aperture reference point (XREF_SCI/YREF_SCI), pixels.
    xref_offset: tuple[float, float] = (0.3, -0.2)
    #: Uniform sky in DN/s per pixel.
    sky_rate: float = 1.0
    #: Gain in e-/DN.
    gain: float = DEFAULT_GAIN_E_PER_DN["LW"]
    #: White read noise of one read, DN.
    readnoise: float = READ_NOISE_DN
    #: kTC (reset) noise per pixel per integration, DN.
    ktc_noise: float = KTC_NOISE_DN
    #: Noise-free signal of the brightest star pixel in the last group, DN (sets the star's rate).
    peak_dn: float = 20000.0
    #: Write segment k of n (1-based) instead of the whole exposure, or None.
    segment: tuple[int, int] | None = None
    #: Exposure start, MJD UTC.
    expstart_mjd: float = DEFAULT_EXPSTART_MJD

    def __post_init__(self):
        _check_int("seed", self.seed, 0)
        _check_int("nints", self.nints, 1)
        _check_int("ngroups", self.ngroups, 2)
        _check_range("oneoverf_scale", self.oneoverf_scale, 0)
        _check_range("shared_fraction", self.shared_fraction, 0, 1)
        _check_bool("oddeven", self.oddeven)
        _check_bool("cosmic_rays", self.cosmic_rays)
        _check_range("cr_rate", self.cr_rate, 0, 0.1)
        _check_range("cr_min_dn", self.cr_min_dn, 0, low_open=True)
        _check_range("cr_max_dn", self.cr_max_dn, 0, low_open=True)
        if self.cr_max_dn < self.cr_min_dn:
            raise ValueError(
                f"cr_max_dn must be >= cr_min_dn ({self.cr_min_dn:g}), got {self.cr_max_dn!r}"
            )
        _check_range("jitter_mas", self.jitter_mas, 0, 1000)
        _check_range("jitter_tau_s", self.jitter_tau_s, 0, low_open=True)
        _check_range("drift_px", self.drift_px, -100, 100)
        for name in ("drift_x_px", "drift_y_px"):
            if getattr(self, name) is not None:
                _check_range(name, getattr(self, name), -100, 100)
        _check_bool("hga", self.hga)
        _check_range("hga_px", self.hga_px, -20, 20)
        _check_range("hga_tau_s", self.hga_tau_s, 0, low_open=True)
        _check_range("hga_duration_s", self.hga_duration_s, 0, low_open=True)
        _check_range("transit_depth", self.transit_depth, 0, 0.5, high_open=True)
        _check_pair("xref_offset", self.xref_offset)
        object.__setattr__(self, "xref_offset", tuple(float(v) for v in self.xref_offset))
        _check_range("sky_rate", self.sky_rate, 0)
        _check_range("gain", self.gain, 0, low_open=True)
        _check_range("readnoise", self.readnoise, 0)
        _check_range("ktc_noise", self.ktc_noise, 0)
        _check_range("peak_dn", self.peak_dn, 0, 1e6, low_open=True)
        _check_range("expstart_mjd", self.expstart_mjd, 40000, 90000)
        if self.segment is not None:
            try:
                k, n = (int(v) for v in self.segment)
            except (TypeError, ValueError):
                raise ValueError(
                    f"segment must be a pair (k, n) of integers, got {self.segment!r}"
                ) from None
            if not 1 <= k <= n:
                raise ValueError(f"segment must satisfy 1 <= k <= n, got {self.segment!r}")
            if n > self.nints:
                raise ValueError(f"segment count {n} is more than nints ({self.nints})")
            object.__setattr__(self, "segment", (k, n))

    # ------------------------------------------------------------------ derived
    @property
    def drift_xy_px(self) -> tuple[float, float]:
        """Drift over the exposure along (x, y), science pixels."""
        dx = self.drift_px if self.drift_x_px is None else self.drift_x_px
        dy = self.drift_px if self.drift_y_px is None else self.drift_y_px
        return float(dx), float(dy)

    def as_dict(self) -> dict:
        """Field name -> value, for provenance (HISTORY) and JSON summaries."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class GrismParams(_CommonParams):
    """Settings of a simulated NIRCam grism time series (NRC_TSGRISM, NRCALONG, GRISMR).

    Common fields (seed, nints, ngroups, 1/f, cosmic rays, pointing, transit, noise) are
    described in ``docs/simulator.md``; the grism fields follow.
    """

    #: Uniform sky, DN/s per pixel (dispersed LW background).
    sky_rate: float = 2.0
    #: Gain, e-/DN (long-wave flight average, detector.py).
    gain: float = DEFAULT_GAIN_E_PER_DN["LW"]
    #: SUBGRISM64, SUBGRISM128 or SUBGRISM256.
    subarray: str = "SUBGRISM64"
    #: F322W2 or F444W.
    filter: str = "F322W2"
    #: Number of outputs, 1 or 4.
    noutputs: int = 4
    #: Trace slope dy/dx (pixels per pixel) about the reference column.
    trace_tilt: float = 1e-3
    #: Trace curvature d2y/dx2 / 2 (pixels per pixel^2) about the reference column.
    trace_curvature: float = 2e-7
    #: Amplitude of the spectral feature in the transit depth, relative to the white-light depth.
    feature_amplitude: float = 0.1
    #: Centre of that feature, um (None: 2.8 um for F322W2, 4.3 um for F444W).
    feature_um: float | None = None
    #: Gaussian sigma of that feature, um.
    feature_width_um: float = 0.08

    def __post_init__(self):
        super().__post_init__()
        if self.subarray not in GRISM_SUBARRAYS:
            raise ValueError(
                f"subarray must be one of {', '.join(GRISM_SUBARRAYS)}, got {self.subarray!r}"
            )
        if self.filter not in GRISM_FILTERS:
            raise ValueError(
                f"filter must be one of {', '.join(GRISM_FILTERS)}, got {self.filter!r}"
            )
        if self.noutputs not in (1, 4) or isinstance(self.noutputs, bool):
            raise ValueError(f"noutputs must be 1 or 4, got {self.noutputs!r}")
        _check_range("trace_tilt", self.trace_tilt, -0.02, 0.02)
        _check_range("trace_curvature", self.trace_curvature, -1e-5, 1e-5)
        _check_range("feature_amplitude", self.feature_amplitude, -1, 1)
        if self.feature_um is not None:
            _check_range("feature_um", self.feature_um, 1.0, 6.0)
        _check_range("feature_width_um", self.feature_width_um, 0, 2, low_open=True)

    @property
    def feature_center_um(self) -> float:
        """Centre of the transit-depth feature, um."""
        if self.feature_um is not None:
            return float(self.feature_um)
        return 2.8 if self.filter == "F322W2" else 4.3


@dataclass(frozen=True)
class ImagingParams(_CommonParams):
    """Settings of a simulated weak-lens imaging time series (NRC_TSIMAGE, NRCA3, WLP8)."""

    #: Uniform sky, DN/s per pixel.
    sky_rate: float = 0.3
    #: Gain, e-/DN (short-wave flight average, detector.py).
    gain: float = DEFAULT_GAIN_E_PER_DN["SW"]
    #: SUB64P, SUB160P or SUB400P.
    subarray: str = "SUB160P"
    #: F210M or WLP4 (with PUPIL WLP8).
    filter: str = "F210M"
    #: Outer diameter of the weak-lens donut, pixels.
    donut_diameter_px: float = 70.0
    #: Neighbour star flux over the target's flux (0 for no neighbour).
    neighbour_ratio: float = 0.05
    #: Neighbour position minus the target position, pixels (x, y).
    neighbour_offset_px: tuple[float, float] = (33.0, 23.0)

    def __post_init__(self):
        super().__post_init__()
        if self.subarray not in IMAGING_SUBARRAYS:
            raise ValueError(
                f"subarray must be one of {', '.join(IMAGING_SUBARRAYS)}, got {self.subarray!r}"
            )
        if self.filter not in IMAGING_FILTERS:
            raise ValueError(
                f"filter must be one of {', '.join(IMAGING_FILTERS)}, got {self.filter!r}"
            )
        _check_range("donut_diameter_px", self.donut_diameter_px, 10, 300)
        _check_range("neighbour_ratio", self.neighbour_ratio, 0, 10)
        _check_pair("neighbour_offset_px", self.neighbour_offset_px)
        object.__setattr__(
            self, "neighbour_offset_px", tuple(float(v) for v in self.neighbour_offset_px)
        )

    @property
    def noutputs(self) -> int:
        """Weak-lens TSO subarrays are read through one output."""
        return 1


@dataclass(frozen=True)
class GuiderParams(_CommonParams):
    """Settings of simulated fine-guide (FGS) files plus the science exposure they cover.

    The science exposure is made with the common fields and ``science`` ("imaging" by
    default, or "grism"); ``subarray``/``filter`` None take that kind's defaults.
    """

    #: Science product the guider data accompany: "imaging" or "grism".
    science: str = "imaging"
    #: Science subarray (None: the science kind's default).
    subarray: str | None = None
    #: Science filter (None: the science kind's default).
    filter: str | None = None
    #: Uniform sky, DN/s per pixel (None: the science kind's default).
    sky_rate: float | None = None
    #: Gain, e-/DN (None: the science detector's default).
    gain: float | None = None
    #: Linear drift over the exposure, science pixels (slow drift is on for guider data).
    drift_px: float = 0.05
    #: Write the Pointing and FGS Centroid Packet tables.
    tables: bool = True
    #: Fine-guide frames (16 Hz) per file; longer spans are split into several files.
    frames_per_file: int = 3072
    #: Guide-star magnitude (GS_MAG); sets its count rate.
    gs_mag: float = 12.0
    #: Guider data start this long before the science exposure and end this long after, s.
    margin_s: float = 5.0

    def __post_init__(self):
        if self.science not in ("imaging", "grism"):
            raise ValueError(f"science must be 'imaging' or 'grism', got {self.science!r}")
        # fill per-kind defaults so the common checks see numbers
        base = ImagingParams if self.science == "imaging" else GrismParams
        defaults = {f.name: f.default for f in fields(base)}
        for name in ("sky_rate", "gain", "subarray", "filter"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        super().__post_init__()
        _check_bool("tables", self.tables)
        _check_int("frames_per_file", self.frames_per_file, 16)
        _check_range("gs_mag", self.gs_mag, 5, 20)
        _check_range("margin_s", self.margin_s, 0, 3600)
        self.science_params()  # checks subarray and filter for the science kind

    def science_params(self) -> GrismParams | ImagingParams:
        """Return the settings of the science exposure these guider data cover."""
        base = ImagingParams if self.science == "imaging" else GrismParams
        common = {f.name: getattr(self, f.name) for f in fields(_CommonParams)}
        return base(**common, subarray=self.subarray, filter=self.filter)
