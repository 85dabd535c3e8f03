"""Tests of tsotools.algorithms.guidestar on small synthetic arrays with known truth."""

import math

import numpy as np
import pytest
from scipy.special import erf

from tsotools.algorithms import guidestar as gs

SCALE_MAS = 69.0  # FGS mas per pixel
DAY = 86400.0


def gauss_frames(x, y, flux=31250 * 16, sigma=0.75, bkg=40.0, shape=(8, 8)):
    """Noise-free pixel-integrated Gaussian frames, DN/s; centres (x, y) 0-based."""
    ny, nx = shape
    x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
    s = sigma * math.sqrt(2)
    ex, ey = np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5
    fx = 0.5 * (erf((ex[None, 1:] - x[:, None]) / s) - erf((ex[None, :-1] - x[:, None]) / s))
    fy = 0.5 * (erf((ey[None, 1:] - y[:, None]) / s) - erf((ey[None, :-1] - y[:, None]) / s))
    return flux * fy[:, :, None] * fx[:, None, :] + bkg


def noisy(model, rng, frame_s=1 / 16, gain=2.0, rn=12.0):
    var = model * frame_s / gain + rn**2
    err = np.sqrt(var) / frame_s
    return model + rng.standard_normal(model.shape) * err, err


# =============================================================================== settings
@pytest.mark.parametrize(
    "cls, field, value",
    [
        (gs.JitterParams, "method", "moments"),
        (gs.JitterParams, "hga_margin_s", -1.0),
        (gs.HgaParams, "window_s", 0.0),
        (gs.HgaParams, "threshold_sigma", float("nan")),
        (gs.GaussFitParams, "max_iter", 0),
        (gs.GaussFitParams, "tol_px", -1e-3),
    ],
)
def test_params_reject_bad_values_naming_the_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


def test_params_defaults_are_valid():
    p = gs.JitterParams()
    assert p.method == "auto" and p.hga_margin_s == 30.0


# =============================================================================== count rates
def test_fineguide_rates_follow_guider_cds():
    rng = np.random.default_rng(1)
    tgroup = 0.01
    slope = rng.uniform(10, 500, size=(3, 8, 8))  # DN per group
    bias = rng.uniform(2000, 9000, size=(3, 1, 8, 8))
    reads = np.round(bias + slope[:, None] * np.arange(8)[None, :, None, None]).astype(np.uint16)
    rate, err = gs.fineguide_rates(reads, tgroup, gain_e_per_dn=2.0, readnoise_dn=20.0)
    r = reads.astype(float)
    diff = r[:, 4:].mean(axis=1) - r[:, :4].mean(axis=1)
    np.testing.assert_allclose(rate, diff / tgroup, rtol=1e-6)
    # the difference of the means spans 4 groups: rate = 4 * slope / tgroup (to rounding)
    np.testing.assert_allclose(rate, 4 * slope / tgroup, atol=1.0 / tgroup)
    np.testing.assert_allclose(
        err, np.sqrt(2 * (20.0 / tgroup) ** 2 + diff / (2.0 * tgroup)), rtol=1e-5
    )
    assert rate.dtype == np.float32 and err.dtype == np.float32


def test_fineguide_rates_do_not_wrap_uint16():
    reads = np.zeros((1, 8, 2, 2), dtype=np.uint16)
    reads[0, :4] = 100
    reads[0, 4:] = 50  # a decreasing ramp: uint16 subtraction would wrap to ~65000
    rate, err = gs.fineguide_rates(reads, 0.5)
    np.testing.assert_allclose(rate, -100.0)
    assert np.all(err > 0)


def test_fineguide_rates_reject_3d():
    with pytest.raises(ValueError, match="4-D"):
        gs.fineguide_rates(np.zeros((8, 8, 8)), 0.1)


def test_frame_times_spread_evenly():
    t = gs.frame_times(4, 60000.0, 60000.0 + 4 / 16 / DAY)
    np.testing.assert_allclose((t - 60000.0) * DAY, [1 / 32, 3 / 32, 5 / 32, 7 / 32], atol=1e-6)
    with pytest.raises(ValueError):
        gs.frame_times(4, 1.0, 1.0)


# =============================================================================== fits
def test_fit_frames_recovers_known_centres_to_the_noise():
    rng = np.random.default_rng(2)
    n = 400
    x = rng.uniform(2.5, 4.5, n)
    y = rng.uniform(2.5, 4.5, n)
    model = gauss_frames(x, y)
    sci, err = noisy(model, rng)
    before = sci.copy()
    fit = gs.fit_frames(sci, err)
    np.testing.assert_array_equal(sci, before)  # input untouched
    assert fit.ok.all()
    dx, dy = fit.x - x, fit.y - y
    # noise-equivalent precision of this star: ~0.004 px; bias well below it
    assert np.std(dx) < 0.006 and np.std(dy) < 0.006
    assert abs(np.mean(dx)) < 0.001 and abs(np.mean(dy)) < 0.001
    # the reported errors describe the scatter
    assert 0.7 < np.std(dx) / np.median(fit.x_err) < 1.4
    np.testing.assert_allclose(np.median(fit.flux), 31250 * 16, rtol=0.01)
    np.testing.assert_allclose(np.median(fit.sigma_x), 0.75, rtol=0.02)


def test_fit_frames_is_exact_without_noise():
    x, y = np.array([3.1, 3.77, 4.02]), np.array([3.4, 2.9, 4.45])
    fit = gs.fit_frames(gauss_frames(x, y))
    np.testing.assert_allclose(fit.x, x, atol=2e-4)
    np.testing.assert_allclose(fit.y, y, atol=2e-4)
    np.testing.assert_allclose(fit.background, 40.0, atol=0.5)


def test_fit_frames_ignores_bad_and_nan_pixels():
    rng = np.random.default_rng(3)
    x, y = np.full(50, 3.3), np.full(50, 3.6)
    sci, err = noisy(gauss_frames(x, y), rng)
    bad = np.zeros((8, 8), dtype=bool)
    bad[3, 3] = True  # the brightest pixel
    sci_bad = sci.copy()
    sci_bad[:, 3, 3] = 1e7  # garbage under the flag
    sci_bad[:, 0, 0] = np.nan
    fit = gs.fit_frames(sci_bad, err, bad)
    assert fit.ok.all()
    assert abs(np.mean(fit.x) - 3.3) < 0.01 and abs(np.mean(fit.y) - 3.6) < 0.01


def test_fit_frames_fails_cleanly_without_a_star():
    rng = np.random.default_rng(4)
    frames = np.stack(
        [gauss_frames(3.5, 3.5)[0], 40 + rng.standard_normal((8, 8)), np.full((8, 8), np.nan)]
    )
    fit = gs.fit_frames(frames)
    assert fit.ok[0] and not fit.ok[2]
    assert np.isnan(fit.x[2]) and np.isnan(fit.flux[2])
    # noise only: either no star or an implausible one; never a confident position
    assert not fit.ok[1] or fit.flux[1] < 1e-2 * fit.flux[0]


def test_moments_give_the_centre_of_a_symmetric_star():
    m = gs.moments_frames(gauss_frames(np.array([3.0]), np.array([4.0])))
    np.testing.assert_allclose(m[0, 1:3], [3.0, 4.0], atol=0.02)
    np.testing.assert_allclose(m[0, 5], 40.0, atol=1.0)


# =============================================================================== frames and sky
def test_pixels_to_ideal_and_orientation_from_a_reference():
    rng = np.random.default_rng(5)
    px = rng.uniform(2, 5, 300)
    py = rng.uniform(2, 5, 300)
    flipped = np.array([[-1.0, 0.0], [0.0, 1.0]]) * SCALE_MAS  # x axis reversed
    ref = flipped @ np.vstack([px, py]) + np.array([[12.0], [-7.0]])
    xr, yr = ref[0] + rng.normal(0, 0.3, 300), ref[1] + rng.normal(0, 0.3, 300)
    free, *_ = gs.calibrate_to_reference(px, py, xr, yr)
    orient = gs.nearest_orientation(free)
    np.testing.assert_allclose(orient, flipped)
    m, off, rms, nused = gs.calibrate_to_reference(px, py, xr, yr, orient)
    np.testing.assert_allclose(off, [12.0, -7.0], atol=0.1)
    assert 0.25 < rms < 0.35 and nused >= 290
    xm, ym = gs.pixels_to_ideal_mas(np.array([4.0]), np.array([3.0]), (3.0, 3.0))
    np.testing.assert_allclose([xm[0], ym[0]], [SCALE_MAS, 0.0])


def test_guider_to_science_conventions():
    # same frame orientation and parity: a pure scale
    m = gs.guider_to_science(0.0, 1, 0.0, 1, 0.063)
    np.testing.assert_allclose(m, np.eye(2) / 63.0)
    # opposite parity flips x; an orthogonal map scaled by 1/pixel scale
    m = gs.guider_to_science(-1.2412, 1, -0.55, -1, 0.063)
    np.testing.assert_allclose(m @ m.T, np.eye(2) / 63.0**2, atol=1e-12)
    assert m[0, 0] < 0 < m[1, 1]
    # FGS V3IdlYAngle 1 deg, science 0 deg, both parity +1: SIAF V2 = x cos a + y sin a,
    # V3 = -x sin a + y cos a, so an FGS-ideal (1, 0) mas offset is (cos a, -sin a) mas
    m = gs.guider_to_science(1.0, 1, 0.0, 1, 0.031)
    a = math.radians(1.0)
    np.testing.assert_allclose(
        m * 31.0, [[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], atol=1e-12
    )
    with pytest.raises(ValueError, match="sci_vparity"):
        gs.guider_to_science(0, 1, 0, 2, 0.031)


# =============================================================================== antenna moves
def test_moves_from_flags_one_per_run():
    t = 60000 + np.arange(10) / 16 / DAY
    moving = np.array([0, 1, 1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    mv = gs.moves_from_flags(t, moving)
    np.testing.assert_allclose(mv, [[t[1], t[2]], [t[6], t[8]]])
    assert gs.moves_from_flags(t, np.zeros(10, bool)).shape == (0, 2)


def _ou(rng, n, dt, tau, sigma):
    a = math.exp(-dt / tau)
    out = np.empty(n)
    out[0] = rng.normal(0, sigma)
    kicks = rng.normal(0, sigma * math.sqrt(1 - a * a), n)
    for k in range(1, n):
        out[k] = a * out[k - 1] + kicks[k]
    return out


def pointing_series(seed, step_mas=6.0, t_step=120.0, duration=300.0):
    """16 Hz offsets: OU jitter (1.2 mas, tau 2 s) + measurement noise + an optional
    ringing step like an antenna move."""
    rng = np.random.default_rng(seed)
    dt = 1 / 16
    t = np.arange(0, duration, dt)
    x = _ou(rng, len(t), dt, 2.0, 1.2) + rng.normal(0, 0.35, len(t))
    y = _ou(rng, len(t), dt, 2.0, 1.2) + rng.normal(0, 0.35, len(t))
    if step_mas:
        after = t >= t_step
        ring = step_mas * np.exp(-(t - t_step) / 4.0) * np.cos(2 * np.pi * (t - t_step) / 16.0)
        x = x + np.where(after, ring * math.cos(math.radians(30)), 0.0)
        y = y + np.where(after, ring * math.sin(math.radians(30)), 0.0)
    return 60000.0 + t / DAY, x, y


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_detect_hga_moves_finds_the_step_start(seed):
    mjd, x, y = pointing_series(seed)
    mv = gs.detect_hga_moves(mjd, x, y)
    assert mv.shape == (1, 2)
    start_s = (mv[0, 0] - 60000.0) * DAY
    stop_s = (mv[0, 1] - 60000.0) * DAY
    assert abs(start_s - 120.0) < 2.0
    assert 120.0 < stop_s < 120.0 + 60.0


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_detect_hga_moves_quiet_series_has_none(seed):
    mjd, x, y = pointing_series(seed, step_mas=0.0, duration=600.0)
    # slow drift does not count either
    x = x + np.linspace(0, 2.0, len(x))
    assert gs.detect_hga_moves(mjd, x, y).shape == (0, 2)


def test_detect_hga_moves_skips_nan_frames_and_file_gaps():
    mjd, x, y = pointing_series(31, step_mas=0.0)
    x[100:110] = np.nan
    gap = np.concatenate([mjd[:2000], mjd[2000:] + 30.0 / DAY])  # 30 s between two files
    assert gs.detect_hga_moves(gap, x, y).shape == (0, 2)


def test_flag_near_moves_uses_the_margin():
    start = 60000 + np.arange(0, 200, 10.0) / DAY
    end = start + 9.0 / DAY
    moves = np.array([[60000 + 100 / DAY, 60000 + 110 / DAY]])
    flag = gs.flag_near_moves(start, end, moves, margin_s=15.0)
    flagged_starts = np.round((start[flag] - 60000) * DAY)
    np.testing.assert_array_equal(flagged_starts, [80, 90, 100, 110, 120])
    assert not gs.flag_near_moves(start, end, np.empty((0, 2)), 30.0).any()


# =============================================================================== science clock
def test_integration_offsets_average_the_frames_inside():
    t = 60000 + np.arange(100) / 16 / DAY
    x = np.arange(100, dtype=float)
    y = -2.0 * x
    start = 60000 + np.array([0.0, 1.0, 2.0]) / DAY
    end = start + 0.5 / DAY
    out = gs.integration_offsets(t, x, y, start, end)
    # frames k/16 s in [0, 0.5): k = 0..7; [1, 1.5): 16..23; [2, 2.5): 32..39
    np.testing.assert_array_equal(out.nframes, [8, 8, 8])
    np.testing.assert_allclose(out.dx_mas, [3.5, 19.5, 35.5])
    np.testing.assert_allclose(out.dy_mas, [-7.0, -39.0, -71.0])
    np.testing.assert_allclose(out.rms_mas, np.sqrt(5.0) * np.std(np.arange(8)))


def test_integration_offsets_short_and_uncovered_integrations():
    t = 60000 + np.arange(32) / 16 / DAY
    x = np.arange(32, dtype=float)
    start = 60000 + np.array([0.51 / 16, 100.0]) / DAY  # inside one frame gap; far outside
    end = start + 0.2 / 16 / DAY
    out = gs.integration_offsets(t, x, x, start, end)
    np.testing.assert_array_equal(out.nframes, [0, 0])
    assert out.dx_mas[0] in (0.0, 1.0)  # the nearest frame
    assert np.isnan(out.dx_mas[1]) and np.isnan(out.rms_mas[1])
