"""In-flight NIRCam GRISMR first-order wavelength solutions.

The pipeline's WAVELENGTH comes from CRDS ``specwcs`` reference files; before September 2023
those held pre-launch data (JDox NIRCam TSO known issue NC-TS01: "Wavelengths ... have
incorrect dispersion"). These are the commissioning solutions (ALGORITHMS.md, "In-flight
NIRCam GRISMR wavelength solutions"), in the 0-based science-frame column x of the full
detector: a SUBGRISM subarray starts at x = 0, a cutout at its SLTSTRT1 - 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GRISMR_FILTERS", "GRISMR_RANGE_PX", "grismr_wavelength", "wavelength_image"]

#: Polynomial coefficients (um) in X = (x - x0) / 1000 and the reference column x0 (0-based),
#: per filter: lambda = sum c_k X^k. F322W2 and F444W from commissioning (ALGORITHMS.md).
_SOLUTIONS = {
    "F322W2": (1571.0, (3.9269369110332657, 0.9811653393151226, 0.001666535535484272, -0.002874123523765872)),
    "F444W": (852.0756, (3.928041104137344, 0.979649332832983)),
}
#: Filters with an in-flight GRISMR solution.
GRISMR_FILTERS = tuple(_SOLUTIONS)
#: Columns (0-based, science frame) where each filter transmits, for orientation only.
GRISMR_RANGE_PX = {"F322W2": (4, 1747), "F444W": (750, 2040)}


def grismr_wavelength(x, filter_name: str) -> np.ndarray:
    """Wavelength of the GRISMR first order at science-frame column x.

    Parameters
    ----------
    x : float or ndarray
        0-based column in the full-detector science frame (pixels).
    filter_name : str
        ``"F322W2"`` or ``"F444W"`` (case-insensitive).

    Returns
    -------
    float64 ndarray, same shape as ``x``
        Wavelength in micron (about 0.98 nm per pixel).

    Raises
    ------
    ValueError
        For a filter without an in-flight solution.
    """
    key = str(filter_name or "").strip().upper()
    if key not in _SOLUTIONS:
        raise ValueError(f"filter_name: no in-flight GRISMR solution for {filter_name!r} (have {', '.join(_SOLUTIONS)})")
    x0, coeffs = _SOLUTIONS[key]
    big_x = (np.asarray(x, dtype=float) - x0) / 1000.0
    return np.polynomial.polynomial.polyval(big_x, coeffs)


def wavelength_image(shape: tuple[int, int], filter_name: str, x_origin: int = 0) -> np.ndarray:
    """A 2D WAVELENGTH array as the pipeline attaches to a grism cutout.

    Parameters
    ----------
    shape : (ny, nx)
        Cutout size in pixels.
    filter_name : str
        ``"F322W2"`` or ``"F444W"``.
    x_origin : int
        Science-frame column of the cutout's column 0 (0-based).

    Returns
    -------
    float32 ndarray, shape (ny, nx), micron
        The same wavelength in every row: for a time series the source position is fixed,
        so the GRISMR dispersion depends on the column only.
    """
    ny, nx = (int(v) for v in shape)
    lam = grismr_wavelength(np.arange(nx) + int(x_origin), filter_name).astype(np.float32)
    return np.broadcast_to(lam, (ny, nx)).copy()
