"""Pure centroid algorithms on small synthetic arrays with known truth."""

import numpy as np
import pytest
from scipy.special import erf

from tsotools.algorithms import centroids as cen


def gaussian_image(shape, x0, y0, sigma, flux=1e5, sky=0.0):
    """Pixel-integrated circular Gaussian centred at (x0, y0), 0-based."""
    ny, nx = shape

    def integ(n, c):
        edges = np.arange(n + 1) - 0.5
        cdf = 0.5 * (1 + erf((edges - c) / (np.sqrt(2) * sigma)))
        return np.diff(cdf)

    return flux * np.outer(integ(ny, y0), integ(nx, x0)) + sky


def donut_image(shape, x0, y0, radius=20.0, sub=4, azimuthal=True):
    """A weak-lens-like pupil image: soft outer edge, dim centre, bright rim, 1- and 3-fold structure."""
    ny, nx = shape
    s = (np.arange(sub) + 0.5) / sub - 0.5
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    xs = xx[..., None, None] + s[None, None, None, :] - x0
    ys = yy[..., None, None] + s[None, None, :, None] - y0
    r = np.hypot(xs, ys)
    th = np.arctan2(ys, xs)
    edge = 0.5 * (1 + np.tanh((radius - r) / 1.2))
    inner = 0.35 + 0.65 * 0.5 * (1 + np.tanh((r - 0.3 * radius) / 1.2))
    rim = 1 + 0.5 * np.exp(-0.5 * ((r - radius + 3) / 2) ** 2)
    az = 1 + (0.15 * np.cos(th - 0.7) + 0.08 * np.cos(3 * th + 0.4)) * np.minimum(r / radius, 1) if azimuthal else 1
    return 1000.0 * (edge * inner * rim * az).mean(axis=(-1, -2))


# -------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    "cls, kwargs, field",
    [
        (cen.CentroidParams, {"method": "psf"}, "method"),
        (cen.CentroidParams, {"box": 3}, "box"),
        (cen.CentroidParams, {"tolerance_px": -1.0}, "tolerance_px"),
        (cen.CentroidParams, {"template_ints": 0}, "template_ints"),
        (cen.ShiftParams, {"converge_px": 0.0}, "converge_px"),
        (cen.DonutParams, {"level": 1.5}, "level"),
        (cen.TraceParams, {"order": 9}, "order"),
        (cen.ExcursionParams, {"window": 1}, "window"),
    ],
)
def test_params_name_the_bad_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


# --------------------------------------------------------------------- xcorr shifts
def test_template_shift_recovers_subpixel_shift_of_a_donut():
    shape = (61, 61)
    template = donut_image(shape, 30.0, 30.0)
    frame = donut_image(shape, 30.37, 29.58) * 1.02 + 5.0  # brighter, with a sky offset
    before = frame.copy()
    res = cen.TemplateShift(template).fit(frame)
    assert res.converged
    assert res.shift == pytest.approx((0.37, -0.42), abs=2e-3)
    assert res.amplitude == pytest.approx(1.02, abs=2e-3)
    np.testing.assert_array_equal(frame, before)  # input untouched


def test_template_shift_error_matches_scatter_with_noise():
    rng = np.random.default_rng(1)
    shape = (61, 61)
    template = donut_image(shape, 30.0, 30.0)
    truth = rng.uniform(-0.5, 0.5, (40, 2))
    sigma = 20.0
    fitter = cen.TemplateShift(template, np.full(shape, 1 / sigma**2))
    errs, reported = [], []
    for dx, dy in truth:
        frame = donut_image(shape, 30 + dx, 30 + dy) + rng.normal(0, sigma, shape)
        res = fitter.fit(frame)
        errs.append(np.subtract(res.shift, (dx, dy)))
        reported.append(res.shift_err)
    errs, reported = np.array(errs), np.array(reported)
    # unbiased, and the reported 1-sigma error matches the actual scatter within 30%
    assert np.abs(errs.mean(axis=0)).max() < 3 * reported.mean() / np.sqrt(len(truth))
    assert errs.std(axis=0) == pytest.approx(reported.mean(axis=0), rel=0.3)


def test_template_shift_finds_integer_offsets_then_refines():
    shape = (41, 41)
    template = gaussian_image(shape, 20.0, 20.0, 1.5)
    res = cen.TemplateShift(template).fit(gaussian_image(shape, 22.8, 17.4, 1.5))
    assert res.shift == pytest.approx((2.8, -2.6), abs=2e-3)


def test_template_shift_1d_with_per_segment_offsets():
    x = np.arange(400, dtype=float)
    spec = 1000 + 500 * np.exp(-0.5 * ((x - 120) / 2.5) ** 2) - 400 * np.exp(-0.5 * ((x - 300) / 3) ** 2)
    shifted = 1000 + 500 * np.exp(-0.5 * ((x - 120.3) / 2.5) ** 2) - 400 * np.exp(-0.5 * ((x - 300.3) / 3) ** 2)
    labels = x // 200
    stepped = shifted + np.where(labels == 0, 50.0, -80.0)  # different offsets in the two halves
    plain = cen.TemplateShift(spec).fit(stepped)
    segmented = cen.TemplateShift(spec, offset_labels=labels).fit(stepped)
    assert segmented.shift[0] == pytest.approx(0.3, abs=1e-3)
    assert abs(plain.shift[0] - 0.3) > 10 * abs(segmented.shift[0] - 0.3)


def test_template_shift_ignores_nan_pixels():
    shape = (41, 41)
    template = gaussian_image(shape, 20.0, 20.0, 2.0)
    frame = gaussian_image(shape, 20.25, 19.9, 2.0)
    frame[18:20, 21] = np.nan
    res = cen.TemplateShift(template).fit(frame)
    assert res.shift == pytest.approx((0.25, -0.1), abs=2e-3)


def test_template_shift_rejects_bad_shapes():
    with pytest.raises(ValueError, match="template"):
        cen.TemplateShift(np.zeros((2, 2, 2)))
    fitter = cen.TemplateShift(np.ones((10, 10)))
    with pytest.raises(ValueError, match="shape"):
        fitter.fit(np.ones((9, 10)))


# ------------------------------------------------------------------------- donut
def test_donut_center_is_unbiased_by_azimuthal_structure():
    shape = (81, 81)
    x0, y0 = 40.31, 39.78
    img = donut_image(shape, x0, y0, radius=25.0)
    x, y, radius, xe, ye = cen.donut_center(img, (41.5, 38.5))
    assert (x, y) == pytest.approx((x0, y0), abs=0.02)
    assert radius == pytest.approx(25.0, abs=0.5)
    # the centre of mass is pulled by the 1-fold structure: the edge fit is what makes it accurate
    yy, xx = np.indices(shape)
    com = (np.sum(img * xx) / img.sum(), np.sum(img * yy) / img.sum())
    assert np.hypot(com[0] - x0, com[1] - y0) > 0.3


def test_donut_center_survives_a_neighbour_and_masked_pixels():
    shape = (101, 101)
    img = donut_image(shape, 45.2, 47.6, radius=25.0) + 0.05 * donut_image(shape, 75.0, 68.0, radius=25.0)
    mask = np.zeros(shape, dtype=bool)
    mask[40:43, 60:70] = True
    img[mask] = np.nan
    x, y, *_ = cen.donut_center(img, (46, 47), mask=mask)
    assert (x, y) == pytest.approx((45.2, 47.6), abs=0.03)


# -------------------------------------------------------------------- compact PSFs
@pytest.mark.parametrize("func", [cen.centroid_com, cen.centroid_gauss2d])
def test_compact_centroids_find_a_gaussian(func):
    img = gaussian_image((21, 21), 10.3, 9.6, 1.4, sky=3.0)
    res = func(img)
    assert (res.x, res.y) == pytest.approx((10.3, 9.6), abs=1e-2)
    if func is cen.centroid_gauss2d:
        # a point-sampled Gaussian fitted to pixel-integrated data: sigma^2 + 1/12 px^2
        expected = np.sqrt(1.4**2 + 1 / 12)
        assert (res.width_x, res.width_y) == pytest.approx((expected, expected), abs=2e-3)


def test_gauss2d_errors_match_noise():
    rng = np.random.default_rng(3)
    truth = gaussian_image((21, 21), 10.2, 10.1, 1.5, flux=2e4)
    err = np.full(truth.shape, 5.0)
    xs = np.array([cen.centroid_gauss2d(truth + rng.normal(0, 5.0, truth.shape), err).x for _ in range(30)])
    res = cen.centroid_gauss2d(truth + rng.normal(0, 5.0, truth.shape), err)
    assert xs.std() == pytest.approx(res.x_err, rel=0.4)


def test_gauss2d_returns_nan_on_an_empty_box():
    res = cen.centroid_gauss2d(np.zeros((11, 11)))
    assert not res.ok


# ------------------------------------------------------------------------- trace
def test_fit_trace_follows_a_tilted_trace():
    ny, nx = 40, 600
    x = np.arange(nx)
    yc = 20.3 + 1e-3 * (x - 300) + 2e-6 * (x - 300) ** 2
    edges = np.arange(ny + 1)[:, None] - 0.5
    prof = np.diff(0.5 * (1 + erf((edges - yc[None, :]) / (np.sqrt(2) * 1.1))), axis=0)
    img = 500 * prof * (1 + 0.5 * np.sin(x / 50.0))[None, :] + 2.0
    tr = cen.fit_trace(img)
    np.testing.assert_allclose(tr.y_at(x), yc, atol=5e-3)
    assert tr.width == pytest.approx(1.1, abs=0.05)


def test_fit_trace_without_signal_raises():
    with pytest.raises(ValueError, match="trace"):
        cen.fit_trace(np.zeros((20, 50)))


# -------------------------------------------------------------------- excursions
def test_flag_excursions_finds_an_antenna_move_and_nothing_else():
    rng = np.random.default_rng(7)
    n = 200
    x = 50 + rng.normal(0, 0.01, n) + np.linspace(0, 0.3, n)  # jitter plus a slow drift
    y = 40 + rng.normal(0, 0.01, n)
    t = np.arange(n) - 120.0
    move = np.where(t >= 0, 0.2 * np.exp(-t / 2.0), 0.0)
    x = x + move * np.cos(0.5)
    y = y + move * np.sin(0.5)
    flags = cen.flag_excursions(x, y)
    assert flags[120] and flags[121]
    assert not flags[:118].any() and not flags[126:].any()


def test_flag_excursions_skips_nan():
    x = np.full(30, 5.0)
    x[10] = np.nan
    assert not cen.flag_excursions(x).any()


def test_median_frame_ignores_masked_pixels():
    frames = np.stack([np.full((3, 3), v, dtype=float) for v in (1.0, 2.0, 100.0)])
    mask = np.zeros(frames.shape, dtype=bool)
    mask[2] = True
    np.testing.assert_allclose(cen.median_frame(frames, mask), 1.5)
