"""Tests of the 1/f algorithms and source masks on small synthetic arrays with known truth."""

import numpy as np
import pytest
from astropy.io import fits

from tsotools.algorithms import oneoverf as oof
from tsotools.algorithms.masks import MaskParams, disk_footprint, make_source_mask

SIGMA = 10.0  # white noise per pixel of the synthetic frames, DN


def _frame(rng, ny=40, nx=64, amps=((0, 32), (32, 64)), shared=False):
    """Offsets + row stripes + odd/even per amplifier + white noise; returns frame and truth."""
    offsets = np.array([25.0, -40.0])[: len(amps)]
    common = rng.normal(0, 3.0, ny)
    stripes = np.stack([common if shared else rng.normal(0, 3.0, ny) for _ in amps])
    parity = np.array([[1.5, -1.5], [-2.0, 2.0]])[: len(amps)]
    truth = np.zeros((ny, nx))
    for a, (x0, x1) in enumerate(amps):
        par = np.where(np.arange(x0, x1) % 2 == 0, parity[a, 0], parity[a, 1])
        truth[:, x0:x1] = offsets[a] + stripes[a][:, None] + par[None, :]
    frame = truth + rng.normal(0, SIGMA, (ny, nx))
    return frame.astype(np.float32), truth, stripes, offsets, parity


def test_estimate_frame_recovers_offsets_rows_and_oddeven():
    rng = np.random.default_rng(1)
    frame, truth, stripes, offsets, parity = _frame(rng)
    frame[5, 7] += 5000.0  # a cosmic ray
    frame[9, 40] = np.nan
    weights = np.ones_like(frame)
    weights[:, 10:20] = 0  # masked source columns
    before = frame.copy()
    est = oof.estimate_frame(frame, weights, ((0, 32), (32, 64)), oof.OneOverFParams(shrink=False))
    np.testing.assert_array_equal(np.isnan(frame), np.isnan(before))
    np.testing.assert_array_equal(frame[np.isfinite(frame)], before[np.isfinite(before)])  # input untouched
    # each row mean uses >= 22 pixels: noise <= 10/sqrt(22) = 2.1 DN; 5 sigma
    resid = truth - est.correction
    assert np.all(np.abs(resid - resid.mean()) < 5 * SIGMA / np.sqrt(22))
    assert (est.row_source == 0).all()
    np.testing.assert_allclose(est.parity[:, 0], parity[:, 0], atol=5 * SIGMA / np.sqrt(40 * 11))
    np.testing.assert_allclose(est.offsets - est.offsets.mean(), offsets - offsets.mean(), atol=3.0)
    # what is left in each amplifier is the noise of its row means: 10 DN / sqrt(22 or 32)
    for (x0, x1), n in (((0, 32), 22), ((32, 64), 32)):
        block = resid[:, x0:x1] - resid[:, x0:x1].mean()
        assert np.std(block) < 1.3 * SIGMA / np.sqrt(n)


def test_rows_without_pixels_take_the_other_amplifiers_model_when_it_predicts_them():
    rng = np.random.default_rng(2)
    frame, truth, stripes, offsets, _ = _frame(rng, shared=True)  # 1/f common to both outputs
    weights = np.ones_like(frame)
    weights[10:20, 0:32] = 0  # rows of amplifier 0 crossed by the trace: no background
    est = oof.estimate_frame(frame, weights, ((0, 32), (32, 64)), oof.OneOverFParams(shrink=False, oddeven=False))
    assert (est.row_source[0, 10:20] == 2).all() and (est.row_source[1] == 0).all()
    stripe0 = est.rows[0, 10:20] - est.offsets[0]
    np.testing.assert_allclose(stripe0, stripes[0, 10:20], atol=5 * SIGMA / np.sqrt(32))


def test_fallback_to_the_offset_when_the_other_amplifiers_do_not_predict():
    rng = np.random.default_rng(3)
    frame, truth, stripes, offsets, _ = _frame(rng, shared=False)
    weights = np.ones_like(frame)
    weights[10:20, 0:32] = 0
    est = oof.estimate_frame(frame, weights, ((0, 32), (32, 64)), oof.OneOverFParams(shrink=False, oddeven=False))
    # independent stripes: the scaled model adds less than the stripes' own variance
    err = est.rows[0, 10:20] - est.offsets[0] - stripes[0, 10:20]
    assert np.mean(err**2) < 1.5 * np.mean(stripes[0, 10:20] ** 2)


def test_reference_columns_stand_in_smoothed_when_a_row_has_no_background():
    ny, nx = 60, 32
    drift = np.linspace(-20, 20, ny)  # slow 1/f drift across rows
    frame = np.tile(drift[:, None], (1, nx)).astype(np.float32)
    weights = np.zeros_like(frame)
    weights[:, :4] = 1  # only the reference columns are usable
    est = oof.estimate_frame(frame, weights, ((0, nx),), oof.OneOverFParams(shrink=False), reference_columns=range(4))
    inner = slice(6, ny - 6)  # the running window is complete there
    assert (est.row_source[0, inner] == 1).all()
    np.testing.assert_allclose(est.rows[0, inner], drift[inner], atol=1e-3)


def test_shrinkage_leaves_noisy_rows_near_the_offset():
    rng = np.random.default_rng(4)
    frame, truth, stripes, offsets, _ = _frame(rng, amps=((0, 64),), ny=60)
    weights = np.ones_like(frame)
    weights[30] = 1e-6  # a row of very noisy pixels (the bright trace core)
    frame[30] += rng.normal(0, SIGMA / np.sqrt(1e-6), 64).astype(np.float32)
    plain = oof.estimate_frame(frame, weights, ((0, 64),), oof.OneOverFParams(shrink=False))
    shrunk = oof.estimate_frame(frame, weights, ((0, 64),), oof.OneOverFParams(shrink=True))
    assert abs(shrunk.rows[0, 30] - shrunk.offsets[0]) < 0.01 * abs(plain.rows[0, 30] - plain.offsets[0])
    # well-measured rows keep S / (S + N) of their stripe: S = 9 DN^2, N = 100 / 64 DN^2 -> 0.85
    ok = (np.arange(60) != 30) & (np.abs(plain.rows[0] - plain.offsets[0]) > 2)
    factor = (shrunk.rows[0, ok] - shrunk.offsets[0]) / (plain.rows[0, ok] - plain.offsets[0])
    assert np.all((factor > 0.7) & (factor < 0.97))



def test_noisy_rows_lean_on_their_correlated_neighbours():
    """1/f stripes of neighbouring rows are alike: a row too noisy to measure is predicted
    from the rows read before and after it, not left at the offset."""
    rng = np.random.default_rng(8)
    ny, nx, r, sd = 60, 256, 0.7, 3.0
    noisy = [20, 30, 31, 45]
    err = {True: [], False: []}
    for _ in range(100):
        stripes = np.empty(ny)
        stripes[0] = rng.normal(0, sd)
        for y in range(1, ny):  # AR(1): variance sd**2, correlation r**k between rows k apart
            stripes[y] = r * stripes[y - 1] + rng.normal(0, sd * np.sqrt(1 - r * r))
        frame = (stripes[:, None] + rng.normal(0, SIGMA, (ny, nx))).astype(np.float32)
        weights = np.ones_like(frame)
        weights[noisy] = 1e-6
        frame[noisy] += rng.normal(0, SIGMA * 1e3, (len(noisy), nx)).astype(np.float32)
        for shrink in (True, False):
            est = oof.estimate_frame(frame, weights, ((0, nx),), oof.OneOverFParams(shrink=shrink, oddeven=False))
            truth = stripes - np.median(stripes)
            err[shrink].append((est.rows[0] - est.offsets[0]) - truth)
    smooth, plain = (np.array(err[k]) for k in (True, False))
    # a lone noisy row between measured neighbours keeps S (1 - r^2) / (1 + r^2) = 0.34 S of error
    lone = np.mean(smooth[:, [20, 45]] ** 2) / sd**2
    pair = np.mean(smooth[:, [30, 31]] ** 2) / sd**2
    assert 0.2 < lone < 0.5, lone
    assert lone < pair < 0.7, pair
    assert np.mean(plain[:, noisy] ** 2) > 100 * sd**2  # measured as is, they are useless
    # the well-measured rows are not made worse than measured (N = 100 / 256 DN^2 each)
    good = np.setdiff1d(np.arange(ny), noisy)
    assert np.mean(smooth[:, good] ** 2) <= np.mean(plain[:, good] ** 2)

@pytest.mark.parametrize("field,value", [("method", "magic"), ("min_row_pixels", 0), ("clip_sigma", 0.5),
                                         ("oddeven", "yes"), ("model_ints", 1)])
def test_params_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        oof.OneOverFParams(**{field: value})


def test_estimate_frame_rejects_bad_shapes():
    with pytest.raises(ValueError, match="one shape"):
        oof.estimate_frame(np.zeros((4, 4)), np.zeros((4, 5)), ((0, 4),))
    with pytest.raises(ValueError, match="outside"):
        oof.estimate_frame(np.zeros((4, 4)), np.ones((4, 4)), ((0, 8),))


def test_source_mask_covers_the_source_and_its_dilation():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:80, :120]
    image = 1000 * np.exp(-((xx - 60) ** 2 + (yy - 40) ** 2) / (2 * 2.0**2)) + rng.normal(0, 1, (80, 120))
    exclude = np.zeros(image.shape, bool)
    exclude[:4] = True
    mask = make_source_mask(image, MaskParams(threshold_sigma=5, dilation_px=4), exclude=exclude)
    # threshold 5 sigma of unit noise: r with 1000 exp(-r^2/8) > 5 -> r < 6.5; plus 4 px
    r = np.hypot(xx - 60, yy - 40)
    assert mask[r <= 9].all() and not mask[r >= 12].any()
    assert not mask[exclude].any()
    assert disk_footprint(2).sum() == 13


def test_source_mask_of_pure_noise_is_empty():
    rng = np.random.default_rng(6)
    assert not make_source_mask(rng.normal(0, 1, (50, 50)), MaskParams(threshold_sigma=6)).any()


def test_fit_scene_recovers_scale_and_shift():
    yy, xx = np.mgrid[:40, :60].astype(float)

    def star(dx, dy):
        return 5000 * np.exp(-((xx - 30 - dx) ** 2 + (yy - 20 - dy) ** 2) / (2 * 3.0**2))

    model = star(0, 0)
    data = 0.98 * star(0.05, -0.03) + 7.0
    src = np.flatnonzero((model > 10).ravel())
    derivs = oof.scene_derivatives(model, src)
    s, ax, ay = oof.fit_scene(data.ravel()[src], model.ravel()[src], derivs, np.ones(src.size))
    assert s == pytest.approx(0.98, abs=2e-3)
    assert -ax / s == pytest.approx(0.05, abs=3e-3) and -ay / s == pytest.approx(-0.03, abs=3e-3)
    pred = oof.predict_scene(model, derivs, src, (s, ax, ay))
    assert np.max(np.abs((data - 7.0) - pred)) < 0.01 * model.max()


def test_profile_shift():
    x = np.arange(200.0)
    ref = np.exp(-((x - 100) ** 2) / (2 * 5.0**2)) + 0.3 * np.exp(-((x - 60) ** 2) / 8)
    moved = 1.02 * (np.exp(-((x - 100.04) ** 2) / (2 * 5.0**2)) + 0.3 * np.exp(-((x - 60.04) ** 2) / 8))
    scale, shift = oof.profile_shift(moved, ref)
    assert scale == pytest.approx(1.02, abs=1e-3) and shift == pytest.approx(0.04, abs=2e-3)


def test_pixel_regression_from_running_sums():
    rng = np.random.default_rng(7)
    n, npix = 30, 50
    u = np.column_stack([1 + rng.normal(0, 0.01, n), rng.normal(0, 0.02, n)])
    a_true, b_true = rng.normal(100, 10, npix), rng.normal(0, 500, (2, npix))
    d = a_true + (u - u.mean(0)) @ b_true
    b, ubar = oof.solve_pixel_regression(d.mean(0), u.T @ d, u.sum(0), u.T @ u, n)
    np.testing.assert_allclose(b, b_true, rtol=1e-6, atol=1e-6)
    scene = oof.predict_pixels(np.full((5, 10), 3.0, np.float32), b, np.arange(npix), u[4] - ubar)
    np.testing.assert_allclose(scene.ravel(), (3.0 + (u[4] - ubar) @ b_true), rtol=1e-5)


def test_row_levels_follow_a_drift_through_a_gap():
    ny, nx = 80, 40
    drift = 0.2 * np.arange(ny)
    frame = np.tile(drift[:, None], (1, nx)) + np.random.default_rng(8).normal(0, 1, (ny, nx))
    usable = np.ones((ny, nx), bool)
    usable[30:50] = False  # the trace
    lev = oof.row_levels(frame, usable, ((0, nx),))
    np.testing.assert_allclose(lev[10:70, 0], drift[10:70], atol=0.5)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_of_planes_equals_numpy(dtype):
    rng = np.random.default_rng(9)
    for k in list(range(1, 21)) + [oof.MAX_NETWORK_PLANES, oof.MAX_NETWORK_PLANES + 3]:
        stack = rng.normal(0, 50, (k, 6, 40)).astype(dtype)
        stack[:, 0] = np.round(stack[:, 0] / 50)  # ties
        stack[rng.integers(0, k), 1, :7] = np.nan  # NaN in one plane: NaN, as np.median
        stack[rng.integers(0, k), 2, :5] = np.inf
        before = stack.copy()
        med = oof.median_of_planes(stack)
        np.testing.assert_array_equal(stack, before)  # input untouched
        assert med.dtype == np.median(stack, axis=0).dtype
        np.testing.assert_array_equal(med, np.median(stack, axis=0))
        np.testing.assert_array_equal(oof.median_of_planes(stack.copy(), overwrite_input=True), med)


def test_robust_statistics_equal_numpy_medians():
    rng = np.random.default_rng(10)
    for n in (1, 2, 3, 10, 11, 24_999, 25_000, 60_001):
        for dtype in (np.float32, np.float64):
            v = rng.standard_t(3, n).astype(dtype)
            assert oof._median(v) == np.median(v) and oof._median(v).dtype == np.median(v).dtype
            t = v[:: max(1, n // oof.MAX_SAMPLES)]
            assert oof.robust_std(v) == float(1.482602218505602 * np.median(np.abs(t - np.median(t))))
    assert np.isnan(oof._median(np.array([1.0, np.nan, 2.0], np.float32)))
    assert np.isnan(oof.robust_std(np.array([])))


def test_correction_pass_rebuilds_the_scene_pass_cleaning_exactly(simulated, tmp_path, monkeypatch):
    """The second pass rebuilds each integration's cleaning from what the first kept, or
    cleans it again past the memory budget: the corrected ramp is the same bit for bit."""
    from tsotools.steps import oneoverf as step

    sim = simulated("grism", truth=False, seed=11, nints=12, ngroups=2)
    kept = step.run_oneoverf(sim["ramp"], tmp_path / "kept.fits", progress=False)
    monkeypatch.setattr(step, "_CACHE_BYTES", 0)
    again = step.run_oneoverf(sim["ramp"], tmp_path / "again.fits", progress=False)
    assert kept["method"] == again["method"] == "timeseries"
    a, b = fits.getdata(tmp_path / "kept.fits", "SCI"), fits.getdata(tmp_path / "again.fits", "SCI")
    assert np.isfinite(a).mean() > 0.99
    np.testing.assert_array_equal(a, b)


def test_read_group_into_a_buffer_equals_read_group(simulated):
    from tsotools.io import open_product, read_group, read_group_into

    sim = simulated("grism", truth=False, seed=11, nints=12, ngroups=2)
    with open_product(sim["ramp"]) as prod:
        for ext in ("SCI", "GROUPDQ"):
            buf = np.full(prod.shape(ext)[-2:], 7, dtype=prod.dtype(ext))
            for i, g in ((0, 0), (5, 1), (-1, -1)):
                want = read_group(prod, ext, i, g)
                got = read_group_into(prod, ext, i, g, buf)
                assert got is buf and got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
        with pytest.raises(ValueError):
            read_group_into(prod, "SCI", 0, 0, np.empty((3, 3), np.float32))
