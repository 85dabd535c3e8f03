"""In-flight GRISMR wavelength solutions (ALGORITHMS.md figures)."""

import numpy as np
import pytest

from tsotools.algorithms.wavelengths import GRISMR_FILTERS, grismr_wavelength, wavelength_image


@pytest.mark.parametrize("filt, x, um", [("F322W2", 4, 2.40), ("F322W2", 1747, 4.10), ("F444W", 750, 3.83),
                                         ("F444W", 2040, 5.09)])
def test_documented_wavelengths(filt, x, um):
    assert grismr_wavelength(x, filt) == pytest.approx(um, abs=0.006)


@pytest.mark.parametrize("filt", GRISMR_FILTERS)
def test_dispersion_is_about_a_nanometre_per_pixel(filt):
    lam = grismr_wavelength(np.arange(2048), filt)
    disp = np.diff(lam) * 1000
    assert np.all(disp > 0.9) and np.all(disp < 1.05)


def test_reference_columns_and_case():
    assert grismr_wavelength(1571, "f322w2") == pytest.approx(3.9269369110332657)
    assert grismr_wavelength(852.0756, "F444W") == pytest.approx(3.928041104137344)


def test_unknown_filter_raises():
    with pytest.raises(ValueError, match="filter_name"):
        grismr_wavelength(10, "F356W")


def test_wavelength_image_rows_equal_and_origin():
    img = wavelength_image((5, 100), "F444W", x_origin=700)
    assert img.shape == (5, 100) and img.dtype == np.float32
    assert np.all(img == img[0])
    assert img[0, 50] == pytest.approx(grismr_wavelength(750, "F444W"), rel=1e-6)
