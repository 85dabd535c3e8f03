"""Jump detection on small synthetic ramps with known jumps; two-point against stcal itself."""

import numpy as np
import pytest

from tsotools import dqflags
from tsotools.algorithms import jumps

GAIN = 1.8  # e-/DN
RN_CDS = 14.142136  # DN, CRDS convention (10 DN per read)
TGROUP = 0.34  # s


def make_ramps(nints, ngroups, ny=32, nx=96, seed=1, cr_fraction=3e-3, row_noise_dn=0.0, depth=0.0):
    """Photon + read noise ramps with step jumps; returns sci, groupdq, truth mask, jump sigma."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0, 300, (ny, nx))
    rate[10:12] = 5000.0  # a bright "trace"
    shape = np.ones(nints)
    shape[nints // 3 : 2 * nints // 3] -= depth  # a transit
    electrons = rng.poisson(
        rate * shape[:, None, None, None] * TGROUP * GAIN, (nints, ngroups, ny, nx)
    )
    sci = np.cumsum(electrons / GAIN, axis=1) + rng.normal(
        0, RN_CDS / np.sqrt(2), (nints, ngroups, ny, nx)
    )
    if row_noise_dn:
        sci += rng.normal(0, row_noise_dn, (nints, ngroups, ny, 1))  # 1/f-like stripes + offsets
    truth = np.zeros(sci.shape, bool)
    n = int(cr_fraction * sci.size / ngroups)
    i, g = rng.integers(0, nints, n), rng.integers(1, ngroups, n)
    y, x = rng.integers(0, ny, n), rng.integers(0, nx, n)
    amp = np.exp(rng.uniform(np.log(40), np.log(20000), n))
    for k in range(n):
        sci[i[k], g[k] :, y[k], x[k]] += amp[k]
    truth[i, g, y, x] = True
    sigma = amp / np.sqrt(RN_CDS**2 + rate[y, x] * TGROUP / GAIN)
    return sci.astype(np.float32), np.zeros(sci.shape, np.uint8), truth, (i, g, y, x, sigma)


def stcal_jumps(sci, gdq, threshold):
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    ny, nx = sci.shape[2:]
    jd = JumpData(
        gain2d=np.full((ny, nx), GAIN, np.float32),
        rnoise2d=np.full((ny, nx), RN_CDS, np.float32),
        dqflags={
            "GOOD": 0,
            "SATURATED": 2,
            "JUMP_DET": 4,
            "NO_GAIN_VALUE": 2**19,
            "DO_NOT_USE": 1,
            "REFERENCE_PIXEL": 2**31,
        },
    )
    jd.init_arrays_from_arrays(sci.copy(), gdq.copy(), np.zeros((ny, nx), np.uint32))
    jd.nframes, jd.dt_group, jd.n_reads_groupdiff = 1, np.ones(1), np.full(1, 2.0)
    jd.rejection_thresh, jd.max_cores = threshold, "none"
    out = detect_jumps_data(jd)[0]
    return (out & dqflags.JUMP_DET) != 0


@pytest.mark.parametrize(
    "nints, ngroups, threshold, branch",
    [
        (10, 5, 4.0, "iterative"),
        (6, 3, 5.0, "iterative, few groups"),
        (1, 3, 4.0, "3-group threshold"),
        (1, 4, 4.0, "4-group threshold"),
        (3, 12, 6.0, "single pass"),
        (100, 3, 5.0, "sigma clip"),
    ],
)
def test_two_point_reproduces_stcal(nints, ngroups, threshold, branch):
    sci, gdq, _, _ = make_ramps(nints, ngroups, ny=24, nx=64)
    gdq[0, 2:, 5, 5] = dqflags.SATURATED
    gdq[:, :, 7, 7] = dqflags.DO_NOT_USE
    ref = stcal_jumps(sci, gdq, threshold)
    mine = jumps.detect_jumps(
        sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method="two-point", threshold=threshold)
    )
    assert ref.sum() > 0, branch
    jaccard = (ref & mine).sum() / (ref | mine).sum()
    assert jaccard >= 0.999, f"{branch}: Jaccard {jaccard:.4f}"


def test_two_point_flags_the_four_neighbours_of_a_large_jump():
    sci, gdq, _, _ = make_ramps(4, 6, cr_fraction=0)
    sci[2, 3:, 20, 40] += 3000.0  # ~200 sigma on a faint pixel
    gdq[2, 3, 21, 40] = dqflags.SATURATED  # a neighbour that must not be flagged
    out = jumps.detect_jumps(sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method="two-point"))
    assert out[2, 3, 20, 40]
    assert out[2, 3, 19, 40] and out[2, 3, 20, 39] and out[2, 3, 20, 41]
    assert not out[2, 3, 21, 40]
    assert out.sum() == 4
    no = jumps.detect_jumps(
        sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method="two-point", flag_neighbors=False)
    )
    assert no.sum() == 1


def test_temporal_resists_row_noise_and_transits():
    """Stripes of 20 DN per row and group and a 5 % transit: temporal keeps its error rate."""
    sci, gdq, truth, (i, g, y, x, sigma) = make_ramps(30, 5, row_noise_dn=20.0, depth=0.05)
    params = jumps.JumpParams(method="temporal", threshold=5.0)
    out = jumps.detect_jumps(sci, gdq, GAIN, RN_CDS, params)
    recall = out[i, g, y, x][sigma > 10].mean()
    false = (out & ~truth).sum() / (truth.size * 4 / 5)
    assert recall >= 0.98
    assert false < 1e-4
    # the pipeline's algorithm on the same ramps takes the stripes for jumps
    two = jumps.detect_jumps(
        sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method="two-point", threshold=5.0)
    )
    assert (two & ~truth).sum() > 20 * (out & ~truth).sum()


def test_temporal_neighbours_only_where_they_stand_out():
    sci, gdq, _, _ = make_ramps(20, 4, cr_fraction=0)
    sci[5, 2:, 20, 40] += 4000.0
    sci[5, 2:, 20, 41] += 400.0  # charge spread into a neighbour: a jump of its own (~28 sigma)
    sci[5, 2:, 19, 40] += 50.0  # ~3.5 sigma: flagged only as a neighbour
    out = jumps.detect_jumps(sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method="temporal"))
    assert out[5, 2, 20, 40] and out[5, 2, 20, 41] and out[5, 2, 19, 40]
    assert not out[5, 2, 21, 40] and not out[5, 2, 20, 39]


def test_bad_groups_and_group_zero_are_never_flagged_and_inputs_untouched():
    sci, gdq, truth, _ = make_ramps(12, 5)
    gdq[:, 2] = dqflags.DO_NOT_USE
    sci_copy, gdq_copy = sci.copy(), gdq.copy()
    for method in ("two-point", "temporal"):
        out = jumps.detect_jumps(sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method=method))
        assert not out[:, 0].any() and not out[:, 2].any()
        assert out[:, 3:].sum() > 0
    np.testing.assert_array_equal(sci, sci_copy)
    np.testing.assert_array_equal(gdq, gdq_copy)


def test_sweep_equals_separate_runs():
    sci, gdq, _, _ = make_ramps(15, 5, row_noise_dn=5.0)
    for method in ("two-point", "temporal"):
        params = jumps.JumpParams(method=method)
        swept = jumps.sweep_jumps(sci, gdq, GAIN, RN_CDS, [4.0, 6.0, 10.0], params)
        for t, mask in zip((4.0, 6.0, 10.0), swept):
            single = jumps.detect_jumps(
                sci, gdq, GAIN, RN_CDS, jumps.JumpParams(method=method, threshold=t)
            )
            np.testing.assert_array_equal(mask, single)
        assert swept[0].sum() >= swept[1].sum() >= swept[2].sum()


def test_choose_method():
    p = jumps.JumpParams()
    assert jumps.choose_method(p.min_temporal_ints, p) == "temporal"
    assert jumps.choose_method(p.min_temporal_ints - 1, p) == "two-point"
    assert jumps.choose_method(500, jumps.JumpParams(method="two-point")) == "two-point"


@pytest.mark.parametrize(
    "field, value",
    [
        ("method", "median"),
        ("threshold", 0.0),
        ("threshold", float("nan")),
        ("min_temporal_ints", 2),
        ("max_neighbor_sigma", 5.0),
        ("minimum_groups", 0),
    ],
)
def test_params_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        jumps.JumpParams(**{field: value})


def test_shapes_are_checked():
    sci = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match="groupdq"):
        jumps.detect_jumps(sci, np.zeros((2, 3, 4, 4), np.uint8), GAIN, RN_CDS)
    with pytest.raises(ValueError, match="gain"):
        jumps.detect_jumps(sci, np.zeros(sci.shape, np.uint8), np.ones((3, 3)), RN_CDS)
    with pytest.raises(ValueError, match="4-D"):
        jumps.detect_jumps(sci[0], np.zeros(sci.shape[1:], np.uint8), GAIN, RN_CDS)
