"""Fine-guide (FGS) frames and tables, and the guider-to-science pixel transform.

Frames and angles follow the SIAF conventions (pysiaf ``idl_to_tel``, linear part):
V2 = VIdlParity * x_idl * cos(a) + y_idl * sin(a), V3 = -VIdlParity * x_idl * sin(a) +
y_idl * cos(a), with a = V3IdlYAngle. A pointing change moves every star by the same
(V2, V3) offset, so a guide-star offset in the FGS ideal frame maps to science pixels
through V2/V3. The science frame is taken parallel to its ideal frame (distortion and
the small sci-to-ideal rotation are ignored: they change offsets of a few mas by < 1%).
"""

from __future__ import annotations

import numpy as np
from astropy.time import Time
from scipy.special import erf

from ..detector import FGS_PIXEL_SCALE_ARCSEC

__all__ = [
    "FGS_V3IDLYANGLE_DEG",
    "FGS_VIDLPARITY",
    "SCIENCE_V3IDLYANGLE_DEG",
    "Transform",
    "guider_frames",
]

#: FGS1 (FGS1_FULL) V3IdlYAngle in degrees and ideal-frame parity (SIAF, 2023 alignment).
FGS_V3IDLYANGLE_DEG = -1.24120427
FGS_VIDLPARITY = 1
#: NIRCam V3IdlYAngle (degrees) of the detectors simulated (SIAF-like, rounded); parity -1.
SCIENCE_V3IDLYANGLE_DEG = {"NRCALONG": -0.55, "NRCA3": -0.40}
SCIENCE_VIDLPARITY = -1
#: Guide star: count rate at GS_MAG 12 (DN/s, whole PSF), PSF Gaussian sigma (FGS px),
#: background (DN/s/px), read noise per frame (DN), gain (e-/DN), ideal-frame position (arcsec).
GS_RATE_MAG12 = 5.0e5
GS_SIGMA_PX = 0.75
GS_BACKGROUND = 40.0
GS_READNOISE_DN = 12.0
GS_GAIN = 2.0
GS_IDEAL_XY_ARCSEC = (-12.41, 7.96)
FRAME_S = 1.0 / 16.0
_DAY = 86400.0


def _idl_to_v(parity: int, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[parity * np.cos(a), np.sin(a)], [-parity * np.sin(a), np.cos(a)]])


class Transform:
    """Linear map between FGS ideal-frame offsets (mas) and science-pixel offsets.

    Attributes
    ----------
    guider_to_science : float64 (2, 2)
        (dx_pix, dy_pix) = guider_to_science @ (dx_mas, dy_mas).
    science_to_guider : float64 (2, 2)
        Its inverse, mas per science pixel.
    """

    def __init__(self, detector: str, science_scale_arcsec: float):
        self.detector = detector
        self.science_scale = science_scale_arcsec
        self.science_v3yangle = SCIENCE_V3IDLYANGLE_DEG[detector]
        self.science_vparity = SCIENCE_VIDLPARITY
        fgs = _idl_to_v(FGS_VIDLPARITY, FGS_V3IDLYANGLE_DEG)
        sci = _idl_to_v(SCIENCE_VIDLPARITY, self.science_v3yangle)
        # both matrices are orthogonal: the inverse is the transpose
        self.guider_to_science = sci.T @ fgs / (1000.0 * science_scale_arcsec)
        self.science_to_guider = np.linalg.inv(self.guider_to_science)
        self.fgs_to_v = fgs

    def header_cards(self) -> dict:
        """Truth keywords describing the transform."""
        g, s = self.guider_to_science, self.science_to_guider
        return {
            "FGS_V3YA": (FGS_V3IDLYANGLE_DEG, "[deg] FGS1 V3IdlYAngle (guider V3I_YANG)"),
            "FGS_VPAR": (FGS_VIDLPARITY, "FGS1 VIdlParity (guider VPARITY)"),
            "FGS_SCAL": (FGS_PIXEL_SCALE_ARCSEC, "[arcsec/px] FGS pixel scale"),
            "SCI_V3YA": (self.science_v3yangle, "[deg] science V3IdlYAngle (SCI V3I_YANG)"),
            "SCI_VPAR": (self.science_vparity, "science VIdlParity (SCI VPARITY)"),
            "SCI_SCAL": (self.science_scale, "[arcsec/px] science pixel scale"),
            "G2S_11": (g[0, 0], "[px/mas] dx_pix = G2S_11 dx_mas + G2S_12 dy_mas"),
            "G2S_12": (g[0, 1], "[px/mas]"),
            "G2S_21": (g[1, 0], "[px/mas] dy_pix = G2S_21 dx_mas + G2S_22 dy_mas"),
            "G2S_22": (g[1, 1], "[px/mas]"),
            "S2G_11": (s[0, 0], "[mas/px] inverse of G2S"),
            "S2G_12": (s[0, 1], "[mas/px]"),
            "S2G_21": (s[1, 0], "[mas/px]"),
            "S2G_22": (s[1, 1], "[mas/px]"),
        }


def _iso(mjd: np.ndarray) -> np.ndarray:
    return np.array([s[:23] for s in Time(mjd, format="mjd", scale="utc").isot], dtype="S23")


def guider_frames(mjd, x_mas, y_mas, gs_mag, rng: np.random.Generator):
    """Fine-guide 8x8 frames of the guide star and what the FGS reports for them.

    Parameters
    ----------
    mjd : float64 (nframes,), frame mid times
    x_mas, y_mas : float64 (nframes,), true guide-star offsets in the FGS ideal frame, mas

    Returns
    -------
    dict with ``sci``, ``err`` float32 (nframes, 8, 8) DN/s, ``flux`` (true DN/s),
    ``meas_x_mas``, ``meas_y_mas`` (measured centroid offsets, mas), ``counts`` and ``snr``.
    """
    n = len(mjd)
    flux = GS_RATE_MAG12 * 10 ** (-0.4 * (gs_mag - 12.0))
    scale_mas = FGS_PIXEL_SCALE_ARCSEC * 1000.0
    # ideal x to FGS pixels: frames taken parallel to the ideal frame
    cx = 3.5 + 0.12 + x_mas / scale_mas
    cy = 3.5 - 0.08 + y_mas / scale_mas
    edges = np.arange(9) - 0.0
    s = GS_SIGMA_PX * np.sqrt(2)
    fx = 0.5 * (
        erf((edges[None, 1:] - cx[:, None]) / s) - erf((edges[None, :-1] - cx[:, None]) / s)
    )
    fy = 0.5 * (
        erf((edges[None, 1:] - cy[:, None]) / s) - erf((edges[None, :-1] - cy[:, None]) / s)
    )
    model = flux * fy[:, :, None] * fx[:, None, :] + GS_BACKGROUND
    var_dn = model * FRAME_S / GS_GAIN + GS_READNOISE_DN**2
    sci = model + rng.standard_normal(model.shape) * np.sqrt(var_dn) / FRAME_S
    err = np.sqrt(var_dn) / FRAME_S
    star_dn = flux * FRAME_S
    snr = star_dn / np.sqrt(
        star_dn / GS_GAIN + 64 * (GS_READNOISE_DN**2 + GS_BACKGROUND * FRAME_S / GS_GAIN)
    )
    nea_mas = np.sqrt(2.0) * GS_SIGMA_PX * scale_mas / snr
    noise = rng.standard_normal((3, n))
    return {
        "sci": sci.astype(np.float32),
        "err": err.astype(np.float32),
        "flux": np.full(n, flux),
        "meas_x_mas": x_mas + nea_mas * noise[0],
        "meas_y_mas": y_mas + nea_mas * noise[1],
        "counts": flux * (1 + noise[2] / snr),
        "snr": np.full(n, snr),
    }


def pointing_rows(
    mjd, x_mas, y_mas, data_start, hga_start, hga_stop, transform: Transform, pa_v3_deg: float
):
    """Rows of the ``Pointing`` table (one per frame).

    ``time`` is ms from the file's DATASTRT; ``jitter`` the distance of the guide star
    from its nominal position (mas); the delta_* columns give the attitude offset that
    moved the stars (minus the star offset in V2/V3, rotated to RA/Dec by PA_V3), mas.
    """
    dv = transform.fgs_to_v @ np.vstack([x_mas, y_mas])  # star offset in V2/V3, mas
    pa = np.deg2rad(pa_v3_deg)
    dra = -(dv[0] * np.cos(pa) + dv[1] * np.sin(pa))
    ddec = -(-dv[0] * np.sin(pa) + dv[1] * np.cos(pa))
    n = len(mjd)
    rows = np.zeros(
        n,
        dtype=[
            ("time", "f8"),
            ("jitter", "f8"),
            ("delta_ddc_ra", "f8"),
            ("delta_ddc_dec", "f8"),
            ("delta_aperture_pa", "f8"),
            ("delta_v1_ra", "f8"),
            ("delta_v1_dec", "f8"),
            ("delta_v3_pa", "f8"),
            ("delta_j1_ra", "f8"),
            ("delta_j1_dec", "f8"),
            ("delta_j3_pa", "f8"),
            ("HGA_motion", "S16"),
        ],
    )
    rows["time"] = (mjd - data_start) * _DAY * 1000.0
    rows["jitter"] = np.hypot(x_mas, y_mas)
    for prefix in ("delta_ddc", "delta_v1", "delta_j1"):
        rows[f"{prefix}_ra"] = dra
        rows[f"{prefix}_dec"] = ddec
    moving = (
        np.zeros(n, dtype=bool) if hga_start is None else (mjd >= hga_start) & (mjd <= hga_stop)
    )
    rows["HGA_motion"] = np.where(moving, b"MOVING", b"NOT_MOVING")
    return rows


def centroid_rows(mjd, frames):
    """Rows of the ``FGS Centroid Packet`` table, one per frame; positions in arcsec (ideal)."""
    n = len(mjd)
    rows = np.zeros(
        n,
        dtype=[
            ("observatory_time", "S23"),
            ("centroid_time", "S23"),
            ("guide_star_position_x", "f8"),
            ("guide_star_position_y", "f8"),
            ("guide_star_instrument_counts_per_sec", "f8"),
            ("signal_to_noise_current_frame", "f8"),
            ("delta_signal", "f8"),
            ("delta_noise", "f8"),
            ("psf_width_x", "i4"),
            ("psf_width_y", "i4"),
            ("data_quality", "i4"),
            ("bad_pixel_flag", "S4"),
            ("bad_centroid_dq_flag", "S12"),
            ("cosmic_ray_hit_flag", "S5"),
            ("sw_subwindow_loc_change_flag", "S5"),
            ("guide_star_at_detector_subwindow_boundary_flag", "S5"),
            ("subwindow_out_of_FOV_flag", "S5"),
        ],
    )
    iso = _iso(mjd)
    rows["observatory_time"] = iso
    rows["centroid_time"] = iso
    rows["guide_star_position_x"] = GS_IDEAL_XY_ARCSEC[0] + frames["meas_x_mas"] / 1000.0
    rows["guide_star_position_y"] = GS_IDEAL_XY_ARCSEC[1] + frames["meas_y_mas"] / 1000.0
    rows["guide_star_instrument_counts_per_sec"] = frames["counts"]
    rows["signal_to_noise_current_frame"] = frames["snr"]
    rows["delta_signal"] = frames["counts"] - frames["flux"]
    rows["delta_noise"] = frames["flux"] / frames["snr"]
    width = int(round(2.3548 * GS_SIGMA_PX))
    rows["psf_width_x"] = width
    rows["psf_width_y"] = width
    rows["bad_pixel_flag"] = b"NO"
    rows["bad_centroid_dq_flag"] = b"NO_BAD_CENT"
    for name in (
        "cosmic_ray_hit_flag",
        "sw_subwindow_loc_change_flag",
        "guide_star_at_detector_subwindow_boundary_flag",
        "subwindow_out_of_FOV_flag",
    ):
        rows[name] = b"FALSE"
    return rows
