"""Pure photometry algorithms on small synthetic arrays with known truth."""

import numpy as np
import pytest
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry

from tsotools.algorithms import photometry as ph


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"radii": (0.0,)}, "radii"),
        ({"radii": (3.0, 3.0)}, "radii"),
        ({"annulus": (5.0, 4.0)}, "annulus"),
        ({"radii": (10.0,), "annulus": (5.0, 12.0)}, "annulus"),
        ({"position": "centre"}, "position"),
        ({"background": "mode"}, "background"),
        ({"dilution": 1.0}, "dilution"),
        ({"clip_sigma": 0.0}, "clip_sigma"),
    ],
)
def test_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ph.PhotometryParams(**kwargs)


def test_aperture_weights_equal_photutils_exact_masks():
    for x, y, r in ((20.3, 19.7, 7.5), (3.2, 30.9, 6.0), (0.0, 0.0, 2.5)):
        sl, w = ph.aperture_weights((40, 40), x, y, r)
        full = np.zeros((40, 40))
        full[sl] = w
        ref = CircularAperture((x, y), r).to_mask(method="exact").to_image((40, 40))
        np.testing.assert_allclose(full, ref, atol=1e-12)


def test_measure_apertures_matches_photutils_and_known_sky():
    rng = np.random.default_rng(2)
    data = rng.normal(10.0, 1.0, (60, 60))
    yy, xx = np.indices(data.shape)
    data += 500 * np.exp(-0.5 * ((xx - 30.4) ** 2 + (yy - 29.8) ** 2) / 2.0**2)
    err = np.full(data.shape, 1.0)
    before = data.copy()
    out = ph.measure_apertures(data, 30.4, 29.8, (4.0, 6.5), (10.0, 20.0), err=err)
    np.testing.assert_array_equal(data, before)
    for res, r in zip(out, (4.0, 6.5)):
        ref = aperture_photometry(data, CircularAperture((30.4, 29.8), r), error=err, method="exact")
        assert res.aperture_sum == pytest.approx(float(ref["aperture_sum"][0]), rel=1e-12)
        assert res.aperture_sum_err == pytest.approx(float(ref["aperture_sum_err"][0]), rel=1e-12)
        assert res.area == pytest.approx(np.pi * r**2, rel=1e-9)
    ann = CircularAnnulus((30.4, 29.8), 10.0, 20.0).to_mask(method="center").to_image(data.shape).astype(bool)
    assert out[0].annulus_sum == pytest.approx(data[ann].sum(), rel=1e-12)
    # sky level within its stated error of the truth (10), and the error is the right size
    assert abs(out[0].annulus_mean - 10.0) < 4 * out[0].annulus_mean_err
    assert out[0].annulus_mean_err == pytest.approx(np.sqrt(np.pi / 2) / np.sqrt(ann.sum()), rel=0.1)
    assert out[0].net_aperture_sum == pytest.approx(out[0].aperture_sum - out[0].aperture_bkg)
    assert out[0].net_aperture_sum_err == pytest.approx(np.hypot(out[0].aperture_sum_err, out[0].aperture_bkg_err))


def test_sky_median_ignores_a_bright_neighbour_in_the_annulus():
    rng = np.random.default_rng(4)
    values = rng.normal(2.0, 0.5, 2000)
    values[:150] += 300.0  # part of a neighbour's donut
    model, err, nused = ph.sky_background(values, np.zeros(2000), np.zeros(2000), "median")
    assert abs(model(0.0, 0.0) - 2.0) < 4 * err
    assert nused <= 1850


def test_plane_sky_recovers_a_gradient():
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(0, 50, 3000), rng.uniform(0, 50, 3000)
    values = 3.0 + 0.1 * xs - 0.05 * ys + rng.normal(0, 0.2, 3000)
    model, err, _ = ph.sky_background(values, xs, ys, "plane")
    assert model(20.0, 30.0) == pytest.approx(3.0 + 2.0 - 1.5, abs=5 * err)
    flat, _, _ = ph.sky_background(values, xs, ys, "median")
    assert abs(flat(20.0, 30.0) - 3.5) > 10 * err  # a constant misses the gradient at that point


def test_plane_sky_in_apertures_integrates_the_plane():
    yy, xx = np.indices((80, 80)).astype(float)
    data = 1.0 + 0.02 * xx + 0.01 * yy
    out = ph.measure_apertures(data, 40.2, 39.7, (8.0,), (15.0, 25.0), background="plane")
    assert out[0].net_aperture_sum == pytest.approx(0.0, abs=1e-8)


def test_sky_background_needs_pixels():
    with pytest.raises(ValueError, match="annulus"):
        ph.sky_background(np.ones(2), np.zeros(2), np.zeros(2))


def test_point_to_point_scatter_and_choice():
    rng = np.random.default_rng(6)
    base = 1000 * (1 - 0.01 * (np.abs(np.arange(300) - 150) < 60))
    noisy = base + rng.normal(0, 2.0, 300)
    quiet = base + rng.normal(0, 1.0, 300)
    assert ph.point_to_point_scatter(quiet) == pytest.approx(1e-3, rel=0.15)
    assert ph.choose_radius(np.stack([noisy, quiet, noisy])) == 1


def test_correct_dilution_restores_the_true_depth():
    n = 400
    shape = (np.abs(np.arange(n) - 200) < 100).astype(float)
    target = 1e6 * (1 - 0.01 * shape)
    contamination = 0.02
    neighbour = contamination / (1 - contamination) * 1e6  # 2% of the out-of-transit total
    rng = np.random.default_rng(8)
    observed = target + neighbour + rng.normal(0, 50.0, n)
    corrected, _, ref = ph.correct_dilution(observed, np.full(n, 50.0), contamination)
    depth = 1 - np.median(corrected[shape == 1]) / np.median(corrected[shape == 0])
    assert ref == pytest.approx(1e6 + neighbour, rel=1e-4)
    assert depth == pytest.approx(0.01, abs=2e-5)
    undiluted = 1 - np.median(observed[shape == 1]) / np.median(observed[shape == 0])
    assert abs(undiluted - 0.01) > 1e-4


def test_curve_of_growth_radius_of_a_disk():
    yy, xx = np.indices((101, 101))
    disk = (np.hypot(xx - 50, yy - 50) <= 20).astype(float)
    assert ph.curve_of_growth_radius(disk, 50, 50, 0.97) == pytest.approx(20 * np.sqrt(0.97), abs=0.5)


def test_radius_label():
    assert ph.radius_label(35.0) == "r35"
    assert ph.radius_label(33.2) == "r33p2"
