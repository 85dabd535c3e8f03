"""Source masks from a median (or mean) image: threshold above the background, then dilation.

Pure functions on numpy arrays (no file I/O; inputs never modified). Used by ``oneoverf``
to keep the star (grism trace, weak-lens donut and their wings) out of background
estimates; photometry and spectral extraction can use them the same way.

The background level and noise are robust statistics of the whole image (median and
``astropy.stats.mad_std``), as in photutils ``detect_threshold``; pixels more than
``threshold_sigma`` noise above it are the source, and the mask is grown by a disk of
``dilation_px`` (``scipy.ndimage.binary_dilation``) so that wings below the threshold are
covered too (photutils ``make_source_mask`` did the same with a footprint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MaskParams", "disk_footprint", "make_source_mask"]


@dataclass(frozen=True)
class MaskParams:
    """Settings of :func:`make_source_mask`.

    Parameters
    ----------
    threshold_sigma : float
        Pixels this many robust standard deviations above the background are the source
        (photutils ``detect_threshold`` uses 2-3 on smoothed images; 5 on a median of
        frames keeps noise peaks out). Default 5.
    dilation_px : float
        Radius of the disk the mask is grown by, pixels. Default 6: the grism PSF's
        Lorentzian wings have a 6 px half width (docs/simulator.md), the weak-lens donut's
        r^-4 wings fall below the noise within a few pixels of its edge.
    min_pixels : int
        Connected groups of fewer source pixels are noise or hot pixels and are dropped
        before dilation. Default 3.
    """

    threshold_sigma: float = 5.0
    dilation_px: float = 6.0
    min_pixels: int = 3

    def __post_init__(self):
        if not np.isfinite(self.threshold_sigma) or self.threshold_sigma <= 0:
            raise ValueError(f"threshold_sigma must be positive, got {self.threshold_sigma}")
        if not np.isfinite(self.dilation_px) or self.dilation_px < 0:
            raise ValueError(f"dilation_px must be >= 0, got {self.dilation_px}")
        if int(self.min_pixels) != self.min_pixels or self.min_pixels < 1:
            raise ValueError(f"min_pixels must be a positive integer, got {self.min_pixels}")


def disk_footprint(radius_px: float) -> np.ndarray:
    """Return a disk of the given radius: bool ndarray, shape (2r+1, 2r+1), r = floor(radius)."""
    r = int(np.floor(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx**2 + yy**2) <= radius_px**2 + 1e-9


def make_source_mask(image, params: MaskParams = MaskParams(), bad=None, exclude=None) -> np.ndarray:
    """Mask the sources of an image: threshold above a robust background, then dilate.

    Parameters
    ----------
    image : float ndarray, shape (ny, nx)
        A median or mean over integrations, any unit (DN, DN/s); NaN pixels are ignored.
    params : MaskParams
    bad : bool ndarray, shape (ny, nx), optional
        Pixels left out of the statistics and of the threshold (flagged pixels); the
        dilation may still cover them.
    exclude : bool ndarray, shape (ny, nx), optional
        Pixels left out of the statistics and of the mask (reference pixels, which see no
        light).

    Returns
    -------
    mask : bool ndarray, shape (ny, nx)
        True on the source and its dilated surroundings.
    """
    from astropy.stats import mad_std
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    skip = ~np.isfinite(img)
    for extra, name in ((bad, "bad"), (exclude, "exclude")):
        if extra is not None:
            extra = np.asarray(extra, dtype=bool)
            if extra.shape != img.shape:
                raise ValueError(f"{name} must have the image's shape {img.shape}, got {extra.shape}")
            skip = skip | extra
    values = img[~skip]
    if values.size < 10:
        return np.zeros(img.shape, dtype=bool)
    level = float(np.median(values))
    noise = float(mad_std(values))
    if not np.isfinite(noise) or noise <= 0:
        return np.zeros(img.shape, dtype=bool)
    seed = (img > level + params.threshold_sigma * noise) & ~skip
    if params.min_pixels > 1 and seed.any():
        labels, n = ndimage.label(seed)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < params.min_pixels
        small[0] = False
        seed &= ~small[labels]
    if params.dilation_px >= 1 and seed.any():
        seed = ndimage.binary_dilation(seed, structure=disk_footprint(params.dilation_px))
    if exclude is not None:
        seed &= ~np.asarray(exclude, dtype=bool)
    return seed
