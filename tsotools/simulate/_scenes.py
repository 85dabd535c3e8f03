"""What the star looks like on the detector: grism trace and weak-lens donut, analytically.

A scene gives the noise-free count rate (DN/s) of one integration for a pointing offset
and a transit shape; sub-pixel shifts come from evaluating the analytic model at the
shifted position, never from interpolating an image.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from ..detector import DETECTOR_SIZE, PIXEL_SCALE_ARCSEC, Geometry
from .params import GRISM_SUBARRAYS, IMAGING_SUBARRAYS

__all__ = ["GrismScene", "ImagingScene", "grism_wavelength"]

#: Column range (0-based, science frame) where each grism filter transmits.
FILTER_COLUMNS = {"F322W2": (4.0, 1747.0), "F444W": (750.0, 2040.0)}
#: Aperture reference point (0-based x, y) of each grism filter: the wavelength-solution
#: reference column and the trace row (trace centre near row 34 in every SUBGRISM).
GRISM_REFERENCE = {"F322W2": (1571.0, 34.0), "F444W": (852.0, 34.0)}
#: Taper of the filter edges, pixels (transmission rises from 0 to 1 over this many columns).
EDGE_TAPER_PX = 40.0
#: Cross-dispersion profile: (weight, kind, width) with width the Gaussian sigma or the
#: Lorentzian half width, pixels at 3.5 um (the core scales with wavelength).
PROFILE = ((0.86, "gauss", 0.85), (0.11, "gauss", 2.4), (0.03, "lorentz", 6.0))
#: Stellar absorption lines: (wavelength um, fractional depth, Gaussian sigma um).
LINES = (
    (2.626, 0.12, 0.0025),  # Br beta
    (3.039, 0.06, 0.0025),  # Pf delta
    (3.297, 0.08, 0.0025),  # Pf gamma - 3.3 um
    (3.741, 0.10, 0.0025),  # Pf gamma
    (4.052, 0.15, 0.0030),  # Br alpha
    (4.654, 0.10, 0.0030),  # Pf beta
    (4.67, 0.05, 0.0200),  # CO fundamental band (blended)
)


def grism_wavelength(x, filter_name: str):
    """In-flight NIRCam GRISMR first-order wavelength (um) of 0-based science column x."""
    x = np.asarray(x, dtype=float)
    if filter_name == "F322W2":
        X = (x - 1571.0) / 1000.0
        return (
            3.9269369110332657
            + 0.9811653393151226 * X
            + 0.001666535535484272 * X**2
            - 0.002874123523765872 * X**3
        )
    return 3.928041104137344 + 0.979649332832983 * (x - 852.0756) / 1000.0


def _taper(u, width):
    """0 for u <= 0, 1 for u >= width, raised cosine between."""
    t = np.clip(np.asarray(u, dtype=float) / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _profile_pixel_integrals(edges_lo, edges_hi, sigma_scale):
    """Pixel-integrated cross-dispersion profile between offsets lo and hi from the centre."""
    total = 0.0
    for weight, kind, width in PROFILE:
        if kind == "gauss":
            s = width * sigma_scale * np.sqrt(2.0)
            total = total + weight * 0.5 * (erf(edges_hi / s) - erf(edges_lo / s))
        else:
            total = (
                total + weight * (np.arctan(edges_hi / width) - np.arctan(edges_lo / width)) / np.pi
            )
    return total


class GrismScene:
    """NIRCam long-wave GRISMR time series on a SUBGRISM subarray (NRCALONG).

    The subarray is full width at the bottom detector edge (SUBSTRT1 = SUBSTRT2 = 1): 4
    reference rows at the bottom, 4 reference columns at each side. The spectrum at column
    x for a shift ``dx`` along dispersion is the star's spectrum at wavelength
    ``lambda(x - dx)``; the trace centre is ``y_nominal(x - dx) + dy``.
    """

    kind = "grism"

    def __init__(self, params):
        self.params = params
        ny = GRISM_SUBARRAYS[params.subarray]
        self.geometry = Geometry(0, 0, DETECTOR_SIZE, ny, params.noutputs, fastaxis=-1, slowaxis=1)
        self.detector, self.exp_type, self.pupil = "NRCALONG", "NRC_TSGRISM", "GRISMR"
        self.filter = params.filter
        self.scale_arcsec = PIXEL_SCALE_ARCSEC["LW"]
        self.xref, self.yref = GRISM_REFERENCE[params.filter]
        self.x = np.arange(self.geometry.nx, dtype=float)
        self.y = np.arange(self.geometry.ny, dtype=float)
        self.light = ~self.geometry.reference_mask()
        self.norm = 1.0
        self._wbar = 0.0
        static = self._image_unit(*params.xref_offset, 0.0)
        self._static_unit = static
        # the flux-weighted mean of the depth feature, so that the white-light depth is exact
        spec = self._column_flux(params.xref_offset[0]) * self._rows_on_subarray(
            *params.xref_offset
        )
        self._wbar = float(
            np.sum(spec * self._feature(self.x - params.xref_offset[0])) / np.sum(spec)
        )

    # -------------------------------------------------------------- spectrum pieces
    def nominal_trace(self, x):
        """Nominal 0-based trace centre row at column x (no pointing offset)."""
        u = np.asarray(x, dtype=float) - self.xref
        return self.yref + self.params.trace_tilt * u + self.params.trace_curvature * u**2

    def _column_flux(self, dx):
        """Star spectrum per column (arbitrary units) for a shift dx along dispersion."""
        xs = self.x - dx
        lam = grism_wavelength(xs, self.filter)
        lo, hi = FILTER_COLUMNS[self.filter]
        trans = _taper(xs - lo, EDGE_TAPER_PX) * _taper(hi - xs, EDGE_TAPER_PX)
        sed = (lam / 3.5) ** -2.0 * np.exp(-0.5 * ((lam - 3.8) / 1.3) ** 2)
        for wl, depth, sig in LINES:
            sed = sed * (1.0 - depth * np.exp(-0.5 * ((lam - wl) / sig) ** 2))
        return sed * trans

    def _feature(self, xs):
        p = self.params
        lam = grism_wavelength(xs, self.filter)
        return np.exp(-0.5 * ((lam - p.feature_center_um) / p.feature_width_um) ** 2)

    def depth_at(self, xs):
        """Transit depth at the wavelength of shifted column xs (exposure x minus dx)."""
        p = self.params
        return p.transit_depth * (1.0 + p.feature_amplitude * (self._feature(xs) - self._wbar))

    def _profile(self, dx, dy):
        """Pixel-integrated cross-dispersion profile: float64 (ny, nx), columns sum to ~1."""
        xs = self.x - dx
        centre = self.nominal_trace(xs) + dy
        sigma_scale = grism_wavelength(xs, self.filter) / 3.5
        lo = self.y[:, None] - 0.5 - centre[None, :]
        return _profile_pixel_integrals(lo, lo + 1.0, sigma_scale[None, :])

    def _rows_on_subarray(self, dx, dy):
        return (self._profile(dx, dy) * self.light).sum(axis=0)

    def _image_unit(self, dx, dy, shape):
        flux = self._column_flux(dx)
        if shape:
            flux = flux * (1.0 - self.depth_at(self.x - dx) * shape)
        return flux[None, :] * self._profile(dx, dy) * self.light

    # ------------------------------------------------------------------ public
    def set_peak(self, peak_rate: float) -> None:
        """Scale the star so its brightest pixel has ``peak_rate`` DN/s out of transit."""
        self.norm = peak_rate / float(self._static_unit.max())

    def star_rate(self, dx: float, dy: float, shape: float) -> np.ndarray:
        """Noise-free star count rate for total offsets (dx, dy) px: float64 (ny, nx), DN/s."""
        return self.norm * self._image_unit(dx, dy, shape)

    def render(self, dx: float, dy: float, shape: float) -> tuple[np.ndarray, float]:
        """Star rate (float64 (ny, nx), DN/s) and the star's total DN/s on the subarray."""
        img = self.star_rate(dx, dy, shape)
        return img, float(img.sum())

    def position(self, dx: float, dy: float) -> tuple[float, float]:
        """INTEGRATIONS X, Y for the grism: the shift along dispersion and the trace offset."""
        return dx, dy

    def trace_table(self):
        """Columns of the truth TRACE table (at the static pointing, out of transit)."""
        dx, dy = self.params.xref_offset
        spectrum = (self.norm * self._static_unit).sum(axis=0)
        return {
            "X": np.arange(self.geometry.nx, dtype=np.int32),
            "Y_CENTER": self.nominal_trace(self.x),
            "WAVELENGTH": grism_wavelength(self.x - dx, self.filter),
            "DEPTH": self.depth_at(self.x - dx),
            "SPECTRUM": spectrum,
        }

    def contamination(self) -> float:
        return 0.0


# =============================================================================== imaging
#: Azimuthal structure of the donut: (m, amplitude, phase rad) terms of
#: 1 + sum a cos(m theta + phase). No m=1 term, so the light centroid stays at the true
#: position (the truth X, Y).
DONUT_AZIMUTHAL = ((2, 0.05, -0.7), (3, 0.08, 0.4), (6, 0.04, 1.1))
#: Donut radial shape: edge softness (px), inner (obscured) radius over outer radius,
#: brightness of the centre relative to the ring, bright-rim excess and width (px),
#: faint-wing amplitude relative to the ring.
DONUT_EDGE_PX = 1.2
DONUT_INNER_FRACTION = 0.3
DONUT_CENTRE_LEVEL = 0.35
DONUT_RIM_EXCESS, DONUT_RIM_WIDTH_PX = 0.5, 2.0
DONUT_WING = 0.01
#: Sub-pixel samples per axis when evaluating the donut.
SUBSAMPLE = 3


def donut(dx, dy, radius_px: float):
    """Unnormalised weak-lens donut surface brightness at offsets (dx, dy) px from its centre.

    A pupil image of outer radius ``radius_px`` with tanh-smoothed edges, a dimmer centre
    (secondary-mirror obscuration blurred), a bright rim just inside the outer edge, some
    azimuthal structure (2, 3 and 6-fold, none that moves the centroid), and faint wings
    decaying as r^-4 outside.
    """
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)

    def edge(u):
        return 0.5 * (1.0 + np.tanh(u / DONUT_EDGE_PX))

    rin = DONUT_INNER_FRACTION * radius_px
    pupil = edge(radius_px - r) * (DONUT_CENTRE_LEVEL + (1 - DONUT_CENTRE_LEVEL) * edge(r - rin))
    rim = 1.0 + DONUT_RIM_EXCESS * np.exp(
        -0.5 * ((r - (radius_px - 3.0)) / DONUT_RIM_WIDTH_PX) ** 2
    )
    azim = 1.0
    for m, amp, phase in DONUT_AZIMUTHAL:
        azim = azim + amp * np.cos(m * theta + phase) * np.minimum(r / radius_px, 1.0)
    wings = DONUT_WING * (1.0 + (r / radius_px) ** 2) ** -2
    return pupil * rim * azim + wings


class ImagingScene:
    """Weak-lens (WLP8) imaging on a square SW subarray of NRCA3 in a detector corner.

    The subarray sits in the bottom-right corner of the science frame (SUBSTRT1 =
    2048 - n + 1, SUBSTRT2 = 1): reference rows 0-3 at the bottom and reference columns
    n-4..n-1 at the right; with FASTAXIS=-1 the single output starts every row at them.
    """

    kind = "imaging"

    def __init__(self, params):
        self.params = params
        n = IMAGING_SUBARRAYS[params.subarray]
        self.geometry = Geometry(DETECTOR_SIZE - n, 0, n, n, 1, fastaxis=-1, slowaxis=1)
        self.detector, self.exp_type, self.pupil = "NRCA3", "NRC_TSIMAGE", "WLP8"
        self.filter = params.filter
        self.scale_arcsec = PIXEL_SCALE_ARCSEC["SW"]
        self.xref = self.yref = n / 2.0
        self.radius = params.donut_diameter_px / 2.0
        self.light = ~self.geometry.reference_mask()
        self._sub = (np.arange(SUBSAMPLE) + 0.5) / SUBSAMPLE - 0.5
        self._yy, self._xx = np.mgrid[0:n, 0:n].astype(float)
        self.norm = 1.0
        self._static = self._unit(*params.xref_offset)

    def _donut_image(self, xc, yc):
        """Render the donut centred at (xc, yc) px, reference pixels dark.

        Pixel averages of SUBSAMPLE^2 samples where it has structure (within the outer
        radius + 4 px), pixel-centre values in the smooth wings.
        """
        img = donut(self._xx - xc, self._yy - yc, self.radius)
        n = self.geometry.nx
        half = self.radius + 4.0
        x0, x1 = max(int(np.floor(xc - half)), 0), min(int(np.ceil(xc + half)) + 1, n)
        y0, y1 = max(int(np.floor(yc - half)), 0), min(int(np.ceil(yc + half)) + 1, n)
        if x1 > x0 and y1 > y0:
            xs = self._xx[y0:y1, x0:x1, None, None] + self._sub[None, None, None, :]
            ys = self._yy[y0:y1, x0:x1, None, None] + self._sub[None, None, :, None]
            img[y0:y1, x0:x1] = donut(xs - xc, ys - yc, self.radius).mean(axis=(-1, -2))
        return img * self.light

    def _unit(self, dx, dy):
        xt, yt = self.xref + dx, self.yref + dy
        ox, oy = self.params.neighbour_offset_px
        target = self._donut_image(xt, yt)
        neighbour = 0.0
        if self.params.neighbour_ratio:
            neighbour = self.params.neighbour_ratio * self._donut_image(xt + ox, yt + oy)
        return target, neighbour

    def set_peak(self, peak_rate: float) -> None:
        target, neighbour = self._static
        self.norm = peak_rate / float(np.max(target + neighbour))

    def star_rate(self, dx: float, dy: float, shape: float) -> np.ndarray:
        """Target (with transit) plus neighbour, float64 (ny, nx), DN/s."""
        target, neighbour = self._unit(dx, dy)
        return self.norm * (target * (1.0 - self.params.transit_depth * shape) + neighbour)

    def render(self, dx: float, dy: float, shape: float) -> tuple[np.ndarray, float]:
        """Star + neighbour rate (float64 (ny, nx), DN/s) and the target's DN/s on the subarray."""
        target, neighbour = self._unit(dx, dy)
        target = self.norm * target * (1.0 - self.params.transit_depth * shape)
        return target + self.norm * neighbour, float(target.sum())

    def position(self, dx: float, dy: float) -> tuple[float, float]:
        """INTEGRATIONS X, Y for imaging: the true 0-based star position."""
        return self.xref + dx, self.yref + dy

    def contamination(self) -> float:
        """Neighbour flux over total flux within the target donut's outer radius."""
        if not self.params.neighbour_ratio:
            return 0.0
        step = 0.25
        g = np.arange(-self.radius, self.radius + step / 2, step)
        xx, yy = np.meshgrid(g, g)
        inside = np.hypot(xx, yy) <= self.radius
        ox, oy = self.params.neighbour_offset_px
        ft = donut(xx, yy, self.radius)[inside].sum()
        fn = self.params.neighbour_ratio * donut(xx - ox, yy - oy, self.radius)[inside].sum()
        return float(fn / (ft + fn))
