"""Trace, background, box/optimal extraction, light curves and cutout planning on small arrays."""

import numpy as np
import pytest
from scipy.special import erf

from tsotools.algorithms import extraction as ex
from tsotools.algorithms import lightcurves as lc
from tsotools.algorithms.cutouts import CutoutParams, default_height, plan_cutout


def gauss_pixels(rows, center, sigma):
    """Pixel-integrated unit Gaussian: float64 (nr, nx) for centres (nx,)."""
    lo = rows[:, None] - 0.5 - center[None, :]
    s = sigma * np.sqrt(2.0)
    return 0.5 * (erf((lo + 1) / s) - erf(lo / s))


def profile_pixels(rows, center, sigma):
    """Core + wings, like a NIRCam grism trace (symmetric)."""
    return 0.88 * gauss_pixels(rows, center, sigma) + 0.12 * gauss_pixels(rows, center, 2.4)


def make_image(ny=48, nx=300, trace=lambda x: 20.3 + 1e-3 * (x - 150) + 2e-6 * (x - 150) ** 2, flux=30000.0,
               sigma=0.8, sky=3.0, noise=0.0, seed=0, shift=0.0):
    rows = np.arange(ny)
    x = np.arange(nx, dtype=float)
    center = trace(x) + shift
    img = flux * profile_pixels(rows, center, sigma) + sky
    if noise:
        img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    return img, center


# ------------------------------------------------------------------------------ params
@pytest.mark.parametrize("field, value", [("method", "sum"), ("halfwidth_px", 0), ("background", "mean"),
                                          ("bkg_inner_px", 3.0), ("trace_order", 9), ("weight_broadening", 0.5),
                                          ("profile_error", 1.5)])
def test_params_name_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        ex.ExtractionParams(**{field: value})


def test_cutout_params_and_plan():
    assert default_height(64) == 64 and default_height(256) == 256 and default_height(2048) == 256
    assert plan_cutout(256, 64, 34.0) == (2, False)
    assert plan_cutout(256, 128, 34.0) == (0, True)
    assert plan_cutout(256, 64, 250.0) == (192, True)
    with pytest.raises(ValueError, match="height"):
        plan_cutout(64, 128, 30.0)
    with pytest.raises(ValueError, match="height"):
        CutoutParams(height=0)


# ---------------------------------------------------------------------------- helpers
def test_fractional_weights_sum_to_the_aperture_height():
    rows = np.arange(20)
    w = ex.fractional_weights(np.array([9.0, 9.37, 10.5]), rows, 3.2)
    np.testing.assert_allclose(w.sum(axis=0), 6.4)
    assert w.min() >= 0 and w.max() <= 1


def test_window_centroids_recover_a_symmetric_profile():
    rows = np.arange(40)
    centers = np.linspace(18.0, 19.0, 11)
    img = profile_pixels(rows, centers, 0.6) * 1000.0
    com, flux = ex.window_centroids(img, rows, np.full(11, 18.5), 4.0)
    np.testing.assert_allclose(com, centers, atol=2e-3)
    assert np.all(flux > 950)


def test_clipped_median_ignores_outliers_and_masked_pixels():
    rng = np.random.default_rng(1)
    vals = rng.normal(5.0, 1.0, (60, 50))
    vals[::7, :] += 500.0  # bright contamination in a few rows
    use = np.ones_like(vals, dtype=bool)
    use[:, 0] = False
    use[:2, 1] = True
    use[2:, 1] = False
    med, sig, n = ex.clipped_median_columns(vals, use, nsigma=3)
    assert np.isnan(med[0]) and np.isnan(med[1])  # no pixel / too few pixels
    np.testing.assert_allclose(med[2:], 5.0, atol=0.5)
    np.testing.assert_allclose(np.median(sig[2:]), 1.0, rtol=0.15)
    assert np.all(n[2:] <= 60 - 9)



def _clipped_median_reference(values, use, nsigma, maxiters):
    """The clipped median one column at a time, the plain way (float32 values, IQR scale,
    ``value < low`` and ``value <= high`` kept, repeat until no column changes)."""
    v = np.where(use, values, np.nan).astype(np.float32)
    nr, nx = v.shape
    cols = [np.sort(v[:, x]) for x in range(nx)]
    lo = np.zeros(nx, int)
    hi = np.array([np.isfinite(c).sum() for c in cols])

    def stats(x):
        s, n = cols[x], hi[x] - lo[x]
        ranks = ((n - 1) // 2, n // 2, (n - 1) // 4, (3 * (n - 1)) // 4)
        at = [float(s[min(max(lo[x] + r, 0), nr - 1)]) for r in ranks]
        return 0.5 * (at[0] + at[1]), (at[3] - at[2]) * (1.0 / 1.3489795)

    st = [stats(x) for x in range(nx)]
    for _ in range(maxiters):
        new = []
        for x in range(nx):
            (med, sig), s = st[x], cols[x]
            ok = hi[x] - lo[x] >= 3
            low, high = (med - nsigma * sig, med + nsigma * sig) if ok else (-np.inf, np.inf)
            a, b = int((s < low).sum()), int((s <= high).sum())
            new.append((a, max(b, a)))
        if all(new[x] == (lo[x], hi[x]) for x in range(nx)):
            break
        for x in range(nx):
            lo[x], hi[x] = new[x]
        st = [stats(x) for x in range(nx)]
    n = hi - lo
    med = np.array([m for m, _ in st])
    sig = np.array([s for _, s in st])
    return np.where(n < 3, np.nan, med), np.where(n < 3, np.nan, sig), n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_median_equals_a_per_column_reference(seed):
    """The vectorised search (binary search per column, only changing columns revisited)
    gives the plain per-column algorithm's numbers exactly: gradients make the clipping
    iterate, rounding makes ties, NaN/inf/unused pixels and nearly empty columns."""
    rng = np.random.default_rng(seed)
    nr, nx = 70, 60
    vals = rng.normal(5.0, 1.0, (nr, nx)) + np.linspace(0, 6 * seed, nr)[:, None]
    hot = rng.random((nr, nx)) < 0.05
    vals[hot] += rng.uniform(5, 500, hot.sum())
    vals[rng.random((nr, nx)) < 0.02] = np.nan
    vals[3, 7], vals[4, 8] = np.inf, -np.inf
    if seed == 1:
        vals = np.round(vals, 1)
    use = rng.random((nr, nx)) > 0.1
    use[:, 0] = False
    use[2:, 1] = False
    for maxiters in (0, 1, 5):
        got = ex.clipped_median_columns(vals, use, nsigma=2.5, maxiters=maxiters)
        want = _clipped_median_reference(vals, use, 2.5, maxiters)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_window_sums_ignore_rows_outside_the_window():
    """Centroids, shifts and box sums only visit the rows their windows reach: rows added
    far from the trace, whatever they hold, change nothing (bit for bit)."""
    rows = np.arange(48)
    img, center = make_image(sky=2.0, noise=5.0, seed=8)
    tall_rows = np.arange(48 + 30)
    tall = np.vstack([img, np.random.default_rng(9).normal(1e4, 1e3, (30, img.shape[1]))])
    a = ex.window_centroids(img, rows, center, 4.0)
    b = ex.window_centroids(tall, tall_rows, center, 4.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    weights = np.ones(len(center))
    weights[::5] = 0.0  # columns left out of the shift: their pixels must not matter
    ref_com, _ = ex.window_centroids(img, rows, center, 4.0, iters=1)
    shifted, _ = make_image(sky=0.0, shift=0.07, noise=5.0, seed=10)
    garbage = shifted.copy()
    garbage[:, ::5] = np.nan
    good = np.ones_like(img, bool)
    assert ex.measure_shift(shifted, rows, good, center, ref_com, weights, 4.0) == \
        ex.measure_shift(garbage, rows, good, center, ref_com, weights, 4.0)
    params = ex.ExtractionParams()
    _r, _c, tmpl, var = _template(params)
    box = ex.fractional_weights(center, rows, 4.0)
    tall_box = ex.fractional_weights(center, tall_rows, 4.0)
    pad = np.zeros((30, img.shape[1]))
    kw = dict(var_poisson=1.6 * img, var_rnoise=np.full_like(img, 1700.0),
              background=np.full_like(img, 2.0), bkg_var=np.full(img.shape[1], 0.01))
    tall_kw = {k: (np.vstack([v, pad + 7.0]) if v.ndim == 2 else v) for k, v in kw.items()}
    good[20, 50] = False
    full = ex.extract_box(img, good, box, tmpl.profile, **kw)
    tall_profile = np.vstack([tmpl.profile, pad + 0.3])
    more = ex.extract_box(tall, np.vstack([good, pad > 0]), tall_box, tall_profile, **tall_kw)
    for name in ("flux", "var_poisson", "var_rnoise", "var_total", "background", "bkg_var",
                 "npixels"):
        np.testing.assert_array_equal(getattr(full, name), getattr(more, name))


def test_median_image_helper_equals_nanmedian():
    from tsotools.steps.spectra import _nanmedian_first_axis

    rng = np.random.default_rng(4)
    for k in (1, 2, 8, 9):
        stack = rng.normal(0, 1, (k, 30, 40)).astype(np.float32)
        stack[rng.random(stack.shape) < 0.2] = np.nan
        stack[:, 0, 0] = np.nan  # a pixel without a value
        with pytest.warns(RuntimeWarning):
            want = np.nanmedian(stack, axis=0)
        got = _nanmedian_first_axis(stack)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_polynomial_background_recovers_a_gradient():
    rows = np.arange(64)
    x = np.arange(30)
    truth = 2.0 + 0.05 * rows[:, None] + 0.01 * x[None, :]
    noisy = truth + np.random.default_rng(2).normal(0, 0.2, truth.shape)
    use = np.abs(rows[:, None] - 32) >= 10 + np.zeros((1, 30), bool)
    bkg = ex.fit_background(noisy, rows, use, np.arange(28, 37), method="poly", order=1)
    np.testing.assert_allclose(bkg.level, truth[28:37], atol=0.1)
    assert np.all(bkg.var > 0)
    med = ex.fit_background(noisy, rows, use, np.arange(28, 37), method="median")
    assert np.all(np.isfinite(med.level))


# ------------------------------------------------------------------------------ trace
def test_find_trace_recovers_a_curved_trace():
    img, center = make_image(noise=5.0)
    sol = ex.find_trace(img, np.ones_like(img, dtype=bool), ex.ExtractionParams(trace_order=2))
    assert np.sqrt(np.mean((sol.center - center) ** 2)) < 0.005
    assert sol.used.sum() > 250


def test_find_trace_fails_cleanly_without_a_spectrum():
    img = np.random.default_rng(3).normal(0, 1, (40, 200))
    with pytest.raises(ValueError, match="image"):
        ex.find_trace(img, np.ones_like(img, dtype=bool), ex.ExtractionParams())


def test_measure_shift_recovers_a_known_offset():
    rows = np.arange(48)
    ref, center = make_image(sky=0.0)
    ref_com, _ = ex.window_centroids(ref, rows, center, 4.0, iters=1)
    weights = np.ones(len(center))
    for true in (-0.23, 0.0, 0.11):
        img, _ = make_image(sky=0.0, shift=true, noise=5.0, seed=4)
        got, ncols = ex.measure_shift(img, rows, np.ones_like(img, bool), center, ref_com, weights, 4.0)
        assert got == pytest.approx(true, abs=2e-3)
        assert ncols > 250


# ------------------------------------------------------------------------- extraction
def _template(params, sigma=0.8, flux=30000.0):
    rows = np.arange(48)
    img, center = make_image(sky=0.0, sigma=sigma, flux=flux)
    var = 1.6 * img + 1700.0
    good = np.ones_like(img, dtype=bool)
    tmpl = ex.TemplateProfile.from_median(img, rows, good, center, var, params)
    return rows, center, tmpl, var


def test_template_variance_model_and_width():
    params = ex.ExtractionParams()
    _rows, _center, tmpl, _var = _template(params)
    assert tmpl.var_a == pytest.approx(1.6, rel=1e-6)
    np.testing.assert_allclose(tmpl.var_b, 1700.0, rtol=0.01)
    np.testing.assert_allclose(tmpl.profile.sum(axis=0), 1.0)
    assert 0.7 < np.median(tmpl.sigma_px) < 1.2


@pytest.mark.parametrize("sigma", [0.6, 0.9])
def test_optimal_flux_barely_moves_with_a_subpixel_shift(sigma):
    """Smooth weights that follow the shift: < 100 ppm for 0.1 px (fixed pixel weights: ~300+)."""
    params = ex.ExtractionParams()
    rows, center, tmpl, var = _template(params, sigma=sigma)
    w0 = ex.smooth_weights(tmpl, center, 0.0, params.optimal_halfwidth_px, params.weight_broadening)
    norm = (w0 * tmpl.profile).sum(axis=0)
    good = np.ones((48, len(center)), dtype=bool)
    ref = ex.extract_optimal(make_image(sky=0.0, sigma=sigma)[0], good, w0, tmpl, norm, tmpl.profile, iters=0)
    for d in (0.1, -0.2):
        img, _ = make_image(sky=0.0, sigma=sigma, shift=d)
        w = ex.smooth_weights(tmpl, center, d, params.optimal_halfwidth_px, params.weight_broadening)
        res = ex.extract_optimal(img, good, w, tmpl, norm, tmpl.shifted(d), iters=0)
        rel = np.median(res.flux / ref.flux) - 1
        assert abs(rel) < 1e-4 * (abs(d) / 0.1) ** 2
        fixed = (w0 * img).sum(axis=0) / norm  # what fixed weights would give
        assert abs(np.median(fixed / ref.flux) - 1) > abs(rel)


def test_optimal_rejects_a_cosmic_ray_and_box_fills_a_flagged_pixel():
    params = ex.ExtractionParams()
    rows, center, tmpl, var = _template(params)
    img, _ = make_image(sky=0.0, noise=0.0)
    w0 = ex.smooth_weights(tmpl, center, 0.0, params.optimal_halfwidth_px, params.weight_broadening)
    norm = (w0 * tmpl.profile).sum(axis=0)
    good = np.ones_like(img, dtype=bool)
    clean = ex.extract_optimal(img, good, w0, tmpl, norm, tmpl.profile, var_poisson=1.6 * img, var_rnoise=np.full_like(img, 1700.0))
    hit = img.copy()
    hit[22, 100] += 20000.0
    res = ex.extract_optimal(hit, good, w0, tmpl, norm, tmpl.profile)
    assert res.nrejected[100] == 1 and res.nrejected.sum() == 1
    assert res.flux[100] == pytest.approx(clean.flux[100], rel=1e-3)
    # errors: sum of the parts
    np.testing.assert_allclose(clean.var_total, clean.var_poisson + clean.var_rnoise)
    box_w = ex.fractional_weights(center, rows, 4.0)
    flagged = good.copy()
    flagged[20, 50] = False
    full = ex.extract_box(img, good, box_w, tmpl.profile)
    part = ex.extract_box(img, flagged, box_w, tmpl.profile)
    assert part.flux[50] == pytest.approx(full.flux[50], rel=2e-3)
    assert part.npixels[50] < full.npixels[50]
    assert full.flux[50] == pytest.approx((box_w * img).sum(axis=0)[50])


# ------------------------------------------------------------------------ light curves
def test_bins_cover_the_valid_columns():
    lam = np.linspace(2.4, 4.0, 1000)
    valid = np.zeros(1000, bool)
    valid[100:900] = True
    bins = lc.make_bins(lam, valid, nbins=8)
    assert bins.nbins == 8 and bins.ncols.sum() == 800
    assert set(np.unique(bins.index[~valid])) == {-1}
    byw = lc.make_bins(lam, valid, bin_width_um=0.1, wave_range=(3.0, 3.5))
    assert np.all(byw.wave_hi - byw.wave_lo == pytest.approx(0.1))
    np.testing.assert_allclose(lc.sum_bins(np.ones(1000), bins), bins.ncols)
    with pytest.raises(ValueError, match="nbins"):
        lc.make_bins(lam, valid)


def test_noise_accumulator_white_and_correlated_noise():
    rng = np.random.default_rng(5)
    nx, nints = 400, 300
    valid = np.ones(nx, bool)
    white = lc.NoiseAccumulator(valid, 32)
    corr = lc.NoiseAccumulator(valid, 32)
    for _ in range(nints):
        f = 1000 + rng.normal(0, 10, nx)
        white.add(f, np.full(nx, 100.0))
        corr.add(f + rng.normal(0, 3.0), np.full(nx, 100.0))  # a common offset: 1/f-like stripe
    tw, tc = white.table(), corr.table()
    assert tw["RATIO"][0] == pytest.approx(1.0)
    assert abs(tw["RATIO"][-1] - 1) < 0.15
    assert tw["ERROR_PPM"][0] == pytest.approx(10000, rel=0.01)
    # 32 columns: sqrt(32*100 + 32**2*9) against sqrt(32*(100 + 9)) if independent
    assert tc["RATIO"][-1] == pytest.approx(np.sqrt((32 * 100 + 32**2 * 9) / (32 * 109)), rel=0.1)


def test_fit_depth_recovers_a_transit():
    rng = np.random.default_rng(6)
    shape = np.clip(1 - np.abs(np.linspace(-2, 2, 400)), 0, 1)
    depths, errs = [], []
    for _ in range(200):
        f = 1000 * (1 - 0.01 * shape) + rng.normal(0, 0.5, 400)
        d, e = lc.fit_depth(f, shape)
        depths.append(d)
        errs.append(e)
    z = (np.array(depths) - 0.01) / np.array(errs)
    assert abs(np.mean(z)) < 0.25 and 0.85 < np.std(z) < 1.15
