"""Ramp fitting on synthetic ramps with known rates: exact variances, segments, flags."""

import numpy as np
import pytest

from tsotools import dqflags
from tsotools.algorithms.ramps import RampFitParams, fit_ramps, ols_variance_coefficients

GAIN = 1.8  # e-/DN
RN_CDS = 14.142136  # DN
TFRAME = 0.34  # s


def simulate(ngroups, nframes=1, groupgap=0, ny=150, nx=150, seed=3):
    """Frame-by-frame Poisson + read noise ramps averaged into groups; returns sci and true rate."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0, 3000, (ny, nx))
    nfr = ngroups * (nframes + groupgap)
    cum = np.cumsum(rng.poisson(rate * TFRAME * GAIN, (nfr, ny, nx)) / GAIN, axis=0)
    cum += rng.normal(0, RN_CDS / np.sqrt(2), cum.shape)
    idx = np.arange(ngroups)[:, None] * (nframes + groupgap) + np.arange(nframes)[None, :]
    return cum[idx].mean(axis=1).astype(np.float32), rate


def test_variance_coefficients_match_the_closed_forms():
    n = 5
    k_read, k_pois = ols_variance_coefficients(n, TFRAME)
    assert k_read == pytest.approx(12 / (n * (n**2 - 1) * TFRAME**2))
    # tail sums of the LS weights over 4 increments: (2^2 + 3^2 + 3^2 + 2^2) / 10^2 = 0.26
    # (docs/simulator.md)
    assert k_pois * TFRAME == pytest.approx(0.26)
    k2, p2 = ols_variance_coefficients(2, TFRAME)
    assert k2 == pytest.approx(2 / TFRAME**2) and p2 == pytest.approx(1 / TFRAME)


@pytest.mark.parametrize("nframes, groupgap", [(1, 0), (2, 0), (4, 1)])
def test_chi2_is_one_with_jumps_and_saturation(nframes, groupgap):
    ngroups = 6
    sci, rate = simulate(ngroups, nframes, groupgap)
    gdq = np.zeros(sci.shape, np.uint8)
    rng = np.random.default_rng(4)
    hit = rng.random(rate.shape) < 0.2
    where = rng.integers(1, ngroups, rate.shape)
    for g in range(1, ngroups):
        sel = hit & (where == g)
        sci[g:, sel] += 800.0
        gdq[g, sel] |= dqflags.JUMP_DET
    sat = rng.random(rate.shape) < 0.1
    sci[4:, sat] = 60000.0
    gdq[4:, sat] |= dqflags.SATURATED
    fit = fit_ramps(sci, gdq, GAIN, RN_CDS, tframe_s=TFRAME, nframes=nframes, groupgap=groupgap)
    chi = (fit.rate - rate) / fit.err
    assert np.isfinite(chi).all()
    # 22500 pixels: the mean of chi^2 scatters by sqrt(2 / 22500) = 0.009
    assert np.mean(chi**2) == pytest.approx(1.0, abs=0.04)
    assert abs(np.mean(chi)) < 0.03
    assert ((fit.dq & dqflags.JUMP_DET) != 0).sum() == hit.sum()
    np.testing.assert_allclose(fit.err**2, fit.var_poisson + fit.var_rnoise, rtol=1e-5)
    assert (fit.ngroups_used[sat & ~hit] == 4).all()


def test_a_flagged_jump_is_removed_and_an_unflagged_one_is_not():
    sci, rate = simulate(5, ny=4, nx=4)
    sci[3:, 1, 1] += 1000.0
    sci[3:, 2, 2] += 1000.0
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[3, 1, 1] = dqflags.JUMP_DET
    fit = fit_ramps(sci, gdq, GAIN, RN_CDS, tframe_s=TFRAME)
    assert abs(fit.rate[1, 1] - rate[1, 1]) < 5 * fit.err[1, 1]
    assert fit.rate[2, 2] - rate[2, 2] > 20 * fit.err[2, 2]


def test_one_group_and_empty_ramps():
    sci, rate = simulate(4, ny=3, nx=3)
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[1:, 0, 0] = dqflags.SATURATED  # only the first group usable
    gdq[:, 1, 1] = dqflags.SATURATED  # saturated from the start
    gdq[:, 2, 2] = dqflags.DO_NOT_USE
    fit = fit_ramps(sci, gdq, GAIN, RN_CDS, tframe_s=TFRAME)
    assert fit.rate[0, 0] == pytest.approx(sci[0, 0, 0] / TFRAME)
    assert fit.ngroups_used[0, 0] == 1 and fit.dq[0, 0] == 0
    assert np.isnan(fit.rate[1, 1]) and fit.dq[1, 1] == dqflags.DO_NOT_USE | dqflags.SATURATED
    assert np.isnan(fit.rate[2, 2]) and fit.dq[2, 2] == dqflags.DO_NOT_USE
    off = fit_ramps(
        sci, gdq, GAIN, RN_CDS, tframe_s=TFRAME, params=RampFitParams(one_group_ramps=False)
    )
    assert np.isnan(off.rate[0, 0]) and off.dq[0, 0] == dqflags.DO_NOT_USE
    assert np.isfinite(fit.rate[0, 1]) and fit.ngroups_used[0, 1] == 4


def test_inputs_untouched_and_arguments_checked():
    sci, _ = simulate(3, ny=2, nx=2)
    gdq = np.zeros(sci.shape, np.uint8)
    copy = sci.copy()
    fit_ramps(sci, gdq, np.full((2, 2), GAIN), RN_CDS, tframe_s=TFRAME)
    np.testing.assert_array_equal(sci, copy)
    with pytest.raises(ValueError, match="tframe_s"):
        fit_ramps(sci, gdq, GAIN, RN_CDS, tframe_s=0)
    with pytest.raises(ValueError, match="gain"):
        fit_ramps(sci, gdq, np.ones((3, 3)), RN_CDS, tframe_s=TFRAME)
    with pytest.raises(ValueError, match="3-D"):
        fit_ramps(sci[None], gdq[None], GAIN, RN_CDS, tframe_s=TFRAME)
    with pytest.raises(ValueError, match="one_group_ramps"):
        RampFitParams(one_group_ramps="yes")
