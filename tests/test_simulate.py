"""The simulator: products the pipeline opens, and physics checked against the truth file.

Products are small (a few integrations of a few groups) and made once per module.
Tolerances come from the noise the simulator claims (docs/simulator.md).
"""

import json
import math
import warnings

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from stdatamodels.jwst import datamodels as dm

from tsotools import dqflags
from tsotools.cli import main
from tsotools.detector import Geometry
from tsotools.simulate import (
    GrismParams,
    GuiderParams,
    ImagingParams,
    simulate_grism,
    simulate_guider,
    simulate_imaging,
)
from tsotools.simulate._scenes import GrismScene, ImagingScene

KEYWORDS = [
    "INSTRUME",
    "DETECTOR",
    "EXP_TYPE",
    "FILTER",
    "PUPIL",
    "SUBARRAY",
    "SUBSTRT1",
    "SUBSTRT2",
    "SUBSIZE1",
    "SUBSIZE2",
    "FASTAXIS",
    "SLOWAXIS",
    "NOUTPUTS",
    "NINTS",
    "NGROUPS",
    "NFRAMES",
    "GROUPGAP",
    "TFRAME",
    "TGROUP",
    "READPATT",
    "INTSTART",
    "INTEND",
    "EXSEGNUM",
    "EXSEGTOT",
    "EXPSTART",
    "EXPEND",
]


@pytest.fixture(scope="module")
def grism(module_tmp):
    out = module_tmp.mktemp("grism")
    return simulate_grism(out, GrismParams(seed=7, nints=6, ngroups=4))


@pytest.fixture(scope="module")
def imaging(module_tmp):
    out = module_tmp.mktemp("imaging")
    return simulate_imaging(out, ImagingParams(seed=8, nints=4, ngroups=3))


@pytest.fixture(scope="module")
def guider(module_tmp):
    out = module_tmp.mktemp("guider")
    return simulate_guider(
        out,
        GuiderParams(seed=9, nints=6, ngroups=3, subarray="SUB64P", frames_per_file=64),
        prefix="gs",
    )


def _open(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = dm.open(path)
    problems = [
        str(w.message)
        for w in caught
        if "Validat" in type(w.message).__name__ or "valid" in str(w.message)
    ]
    assert not problems, problems
    return model


def _truth(paths):
    return fits.open(paths["truth"])


def _cr_mask(truth, shape):
    """True on (int, y, x) hit by a cosmic ray."""
    cr = truth["COSMIC_RAYS"].data
    mask = np.zeros(shape, dtype=bool)
    mask[cr["INT"] - truth[0].header["INTSTART"], cr["Y"], cr["X"]] = True
    return mask


# =============================================================================== products
def test_grism_products_open_as_pipeline_models_with_keywords(grism):
    kinds = {"ramp": "RampModel", "rateints": "CubeModel", "calints": "SlitModel"}
    for kind, cls in kinds.items():
        model = _open(grism[kind])
        assert type(model).__name__ == cls
        hdr = fits.getheader(grism[kind])
        missing = [k for k in KEYWORDS if k not in hdr]
        assert not missing, (kind, missing)
        # set through the meta: the ASDF tree agrees with the FITS keywords
        assert model.meta.exposure.frame_time == hdr["TFRAME"] == pytest.approx(0.34061)
        assert model.meta.subarray.name == hdr["SUBARRAY"] == "SUBGRISM64"
        sci = fits.getheader(grism[kind], "SCI")
        assert (sci["XREF_SCI"], sci["YREF_SCI"]) == (1572.0, 35.0)
        assert model.meta.wcsinfo.siaf_xref_sci == 1572.0
    h = fits.getheader(grism["ramp"])
    assert (h["DETECTOR"], h["PUPIL"], h["EXP_TYPE"], h["FILTER"]) == (
        "NRCALONG",
        "GRISMR",
        "NRC_TSGRISM",
        "F322W2",
    )
    assert (h["SUBSTRT1"], h["SUBSTRT2"], h["SUBSIZE1"], h["SUBSIZE2"]) == (1, 1, 2048, 64)
    assert (h["FASTAXIS"], h["SLOWAXIS"], h["NOUTPUTS"], h["READPATT"]) == (-1, 2, 4, "RAPID")
    assert (h["NINTS"], h["NGROUPS"], h["NFRAMES"], h["GROUPGAP"], h["INTSTART"], h["INTEND"]) == (
        6,
        4,
        1,
        0,
        1,
        6,
    )
    assert h["S_SUPERB"] == "COMPLETE" and h["S_REFPIX"] == "SKIPPED" and "S_JUMP" not in h
    r = fits.getheader(grism["rateints"])
    assert all(r[k] == "COMPLETE" for k in ("S_DQINIT", "S_SATURA", "S_SUPERB", "S_JUMP", "S_RAMP"))
    assert r["S_REFPIX"] == "SKIPPED"
    c = fits.getheader(grism["calints"])
    assert c["S_EXTR2D"] == "COMPLETE" and c["S_PHOTOM"] == "SKIPPED"
    s = fits.getheader(grism["calints"], "SCI")
    assert (s["SLTSTRT1"], s["SLTSTRT2"], s["SLTSIZE1"], s["SLTSIZE2"]) == (1, 1, 2048, 64)
    assert (s["SPORDER"], s["DISPAXIS"], s["BUNIT"]) == (1, 1, "DN/s")
    assert "SLTNAME" in s and "SRCXPOS" in s and "SRCYPOS" in s


def test_frame_times_are_the_flight_values(tmp_path):
    assert GrismScene(GrismParams()).geometry.frame_time_s == pytest.approx(0.34061)
    assert GrismScene(GrismParams(subarray="SUBGRISM256")).geometry.frame_time_s == pytest.approx(
        1.34669
    )
    assert ImagingScene(ImagingParams(subarray="SUB64P")).geometry.frame_time_s == pytest.approx(
        0.05016
    )


def test_calints_is_the_64_row_cutout_of_rateints_with_wavelengths(grism):
    cal = fits.open(grism["calints"])
    rate = fits.open(grism["rateints"])
    np.testing.assert_array_equal(cal["SCI"].data, rate["SCI"].data[:, :64])
    np.testing.assert_array_equal(cal["DQ"].data, rate["DQ"].data[:, :64])
    wl = cal["WAVELENGTH"].data
    assert wl.shape == (64, 2048)
    assert wl[0, 4] == pytest.approx(2.40, abs=0.01) and wl[0, 1747] == pytest.approx(
        4.10, abs=0.01
    )


def test_imaging_products(imaging):
    for kind, cls in (("ramp", "RampModel"), ("rateints", "CubeModel")):
        assert type(_open(imaging[kind])).__name__ == cls
    h = fits.getheader(imaging["rateints"])
    assert (h["DETECTOR"], h["EXP_TYPE"], h["PUPIL"], h["FILTER"], h["NOUTPUTS"]) == (
        "NRCA3",
        "NRC_TSIMAGE",
        "WLP8",
        "F210M",
        1,
    )
    assert (h["SUBARRAY"], h["SUBSIZE1"], h["SUBSIZE2"]) == ("SUB160P", 160, 160)
    assert h["TFRAME"] == pytest.approx(0.27864)
    # a detector corner: reference pixels on one row edge and one column edge
    geo = Geometry(h["SUBSTRT1"] - 1, h["SUBSTRT2"] - 1, 160, 160, 1, -1, 1)
    assert list(geo.reference_rows) == [0, 1, 2, 3]
    assert list(geo.reference_columns) == [156, 157, 158, 159]


def test_reference_pixels_are_flagged_and_dark(grism):
    ramp = fits.open(grism["ramp"])
    pdq = ramp["PIXELDQ"].data
    ref = (pdq & dqflags.REFERENCE_PIXEL) > 0
    expected = np.zeros((64, 2048), dtype=bool)
    expected[:4] = True
    expected[:, :4] = True
    expected[:, -4:] = True
    np.testing.assert_array_equal(ref, expected)
    truth = _truth(grism)
    assert np.all(truth["RATE"].data[:, ref] == 0)
    # but they carry the injected component like any pixel
    assert np.std(truth["ONEOVERF"].data[:, :, ref]) > 1.0
    rdq = fits.getdata(grism["rateints"], "DQ")
    assert np.all(rdq[:, ref] & dqflags.REFERENCE_PIXEL)


# ===================================================================== noise against truth
def test_ramp_minus_signal_minus_injected_is_ktc_poisson_and_read_noise(grism):
    truth = _truth(grism)
    h = truth[0].header
    ramp = fits.getdata(grism["ramp"], "SCI").astype(np.float64)
    rate = truth["RATE"].data.astype(np.float64)
    P = truth["ONEOVERF"].data
    nints, ngroups = ramp.shape[:2]
    t = (np.arange(ngroups) + 1.0) * h["TGROUP"]
    resid = ramp - rate[:, None] * t[None, :, None, None] - P
    clean = ~_cr_mask(truth, rate.shape)
    diff = np.diff(resid, axis=1)  # kTC cancels
    expected = np.sqrt(2 * h["RDNOISE"] ** 2 + rate * h["TGROUP"] / h["GAIN"])
    z = (diff / expected[:, None]).transpose(1, 0, 2, 3)[:, clean]
    assert np.std(z) == pytest.approx(1.0, abs=0.01)
    bright = (rate > 5000) & clean
    zb = (diff / expected[:, None]).transpose(1, 0, 2, 3)[:, bright]
    assert bright.sum() > 5000 and np.std(zb) == pytest.approx(1.0, abs=0.03)
    # group 0 carries kTC + one read; kTC is the same for every group of an integration
    dark = (rate < 5) & clean
    assert np.std(resid[:, 0][dark]) == pytest.approx(
        math.hypot(h["KTCNOISE"], h["RDNOISE"]), rel=0.02
    )
    mean_resid = resid.mean(axis=1)[dark]
    assert np.std(mean_resid) == pytest.approx(
        math.hypot(h["KTCNOISE"], h["RDNOISE"] / 2), rel=0.03
    )


def test_rateints_is_the_least_squares_slope_with_jumps_excluded(grism):
    truth = _truth(grism)
    tg = truth[0].header["TGROUP"]
    ramp = fits.getdata(grism["ramp"], "SCI").astype(np.float64)
    sci = fits.getdata(grism["rateints"], "SCI")
    ngroups = ramp.shape[1]
    t = (np.arange(ngroups) + 1.0) * tg
    w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    slope = np.tensordot(w, ramp, axes=(0, 1))
    clean = ~_cr_mask(truth, sci.shape)
    np.testing.assert_allclose(sci[clean], slope[clean], atol=2e-3)
    # cosmic-ray pixels: one slope, an intercept per segment (np.linalg.lstsq per pixel)
    cr = truth["COSMIC_RAYS"].data
    assert len(cr) > 10
    for row in cr[:40]:
        i, y, x = row["INT"] - 1, row["Y"], row["X"]
        starts = cr["GROUP"][(cr["INT"] == row["INT"]) & (cr["Y"] == y) & (cr["X"] == x)]
        seg = np.searchsorted(np.sort(starts), np.arange(ngroups), side="right")
        design = np.column_stack([t] + [(seg == s).astype(float) for s in np.unique(seg)])
        coef, *_ = np.linalg.lstsq(design, ramp[i, :, y, x], rcond=None)
        if np.all(np.bincount(seg) < 2):
            assert np.isnan(sci[i, y, x])
        else:
            assert sci[i, y, x] == pytest.approx(coef[0], abs=2e-3)


def test_rateints_minus_truth_has_the_claimed_variance(grism):
    truth = _truth(grism)
    rate = fits.open(grism["rateints"])
    sci = rate["SCI"].data
    clean = ~_cr_mask(truth, sci.shape).any(axis=0)
    resid = sci - truth["ONEOVERF_RATE"].data - truth["RATE"].data
    rv = truth["RATE_VAR"].data
    z = resid[:, clean] / np.sqrt(rv[clean])
    assert np.std(z) == pytest.approx(1.0, abs=0.01)
    # VAR_POISSON + VAR_RNOISE estimate RATE_VAR from the measured slope
    bright = (truth["RATE"].data[0] > 5000) & clean
    ratio = (rate["VAR_POISSON"].data[0] + rate["VAR_RNOISE"].data[0])[bright] / rv[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(
        rate["ERR"].data ** 2, rate["VAR_POISSON"].data + rate["VAR_RNOISE"].data, rtol=1e-5
    )


def test_oneoverf_rate_is_the_slope_of_the_injected_component(grism):
    truth = _truth(grism)
    tg = truth[0].header["TGROUP"]
    P = truth["ONEOVERF"].data.astype(np.float64)
    t = (np.arange(P.shape[1]) + 1.0) * tg
    w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    clean = ~_cr_mask(truth, P[:, 0].shape)
    np.testing.assert_allclose(
        truth["ONEOVERF_RATE"].data[clean], np.tensordot(w, P, axes=(0, 1))[clean], atol=1e-3
    )


def test_injected_stripes_differ_between_amplifiers_and_follow_read_order(grism):
    truth = _truth(grism)
    P = truth["ONEOVERF"].data.astype(np.float64)  # (nints, ngroups, ny, nx)
    geo = Geometry(0, 0, 2048, 64, 4, -1, 1)
    # row-mean stripes per amplifier, the amplifier's frame mean (pre-amp offset) removed
    stripes = np.stack([P[..., x0:x1].mean(axis=-1) for x0, x1 in geo.amplifiers])
    stripes -= stripes.mean(axis=-1, keepdims=True)
    rms = stripes.std()
    assert 1.5 < rms < 3.0  # "a few DN" per frame (docs/simulator.md)
    corr = np.corrcoef(stripes.reshape(4, -1))
    assert np.all(corr[~np.eye(4, dtype=bool)] < 0.8)
    # neighbours in time are more alike than neighbours in space: the fast read runs along rows
    a = P[..., 4:508] - P[..., 4:508].mean(axis=(-1, -2), keepdims=True)
    along_row = np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1]
    along_col = np.corrcoef(a[..., :-1, :].ravel(), a[..., 1:, :].ravel())[0, 1]
    assert along_row > 0.5 and along_row > along_col + 0.1


def test_shared_1overf_is_sampled_at_the_same_tick_in_every_amplifier():
    from tsotools.simulate._noise import injected_component

    geo = Geometry(0, 0, 2048, 16, 4, -1, 1)
    P = injected_component(geo, 2, np.random.default_rng(3), shared_fraction=1.0, oddeven=False)
    # amplifier 0 reads right to left (FASTAXIS=-1), amplifier 1 left to right: mirror images
    a0 = P[..., 0:512] - P[..., 0:512].mean(axis=(-1, -2), keepdims=True)
    a1 = P[..., 512:1024] - P[..., 512:1024].mean(axis=(-1, -2), keepdims=True)
    np.testing.assert_allclose(a0, a1[..., ::-1], atol=1e-4)
    assert np.std(a0 - a1) > 0.5  # and not the same columns
    ticks = geo.read_ticks()
    assert ticks[0, 511] == ticks[0, 512] == 0


def test_oneoverf_dominates_binned_white_light_noise(tmp_path):
    paths = simulate_grism(
        tmp_path, GrismParams(seed=21, nints=10, ngroups=2, cosmic_rays=False, hga=False)
    )
    truth = fits.open(paths["truth"])
    Pr = truth["ONEOVERF_RATE"].data.astype(np.float64)
    geo = Geometry(0, 0, 2048, 64, 4, -1, 1)
    for (
        x0,
        x1,
    ) in geo.amplifiers:  # the simplest correction: remove each amplifier's background level
        Pr[..., x0:x1] -= np.median(Pr[:, 50:64, x0:x1], axis=(1, 2))[:, None, None]
    aperture = (slice(None), slice(28, 41), slice(4, 1748))
    oneoverf = Pr[aperture].sum(axis=(1, 2)).std()
    photon = np.sqrt(truth["RATE_VAR"].data[aperture[1:]].sum())
    flux = truth["RATE"].data[aperture].sum(axis=(1, 2)).mean()
    assert oneoverf > 3 * photon
    assert 300e-6 < oneoverf / flux < 3000e-6  # Schlawin et al. 2020: 230-1000 ppm for 2 groups


def test_cosmic_rays_are_visible_jumps_and_flagged(grism):
    truth = _truth(grism)
    h = truth[0].header
    cr = truth["COSMIC_RAYS"].data
    ramp = fits.getdata(grism["ramp"], "SCI").astype(np.float64)
    P = truth["ONEOVERF"].data
    rate = truth["RATE"].data
    i, g, y, x = cr["INT"] - 1, cr["GROUP"], cr["Y"], cr["X"]
    assert np.all((g >= 1) & (g < ramp.shape[1]))
    step = (
        ramp[i, g, y, x]
        - ramp[i, g - 1, y, x]
        - (P[i, g, y, x] - P[i, g - 1, y, x])
        - rate[i, y, x] * h["TGROUP"]
    )
    noise = np.sqrt(2 * h["RDNOISE"] ** 2 + rate[i, y, x] * h["TGROUP"] / h["GAIN"])
    single = np.array(
        [np.sum((i == a) & (y == b) & (x == c) & (g == d)) == 1 for a, b, c, d in zip(i, y, x, g)]
    )
    assert np.all(np.abs(step - cr["AMPLITUDE_DN"])[single] < 6 * noise[single])
    np.testing.assert_allclose(cr["SIGMA"], cr["AMPLITUDE_DN"] / noise, rtol=1e-4)
    assert cr["AMPLITUDE_DN"].min() >= 40 and cr["AMPLITUDE_DN"].max() <= 20000
    dq = fits.getdata(grism["rateints"], "DQ")
    jump = (dq & dqflags.JUMP_DET) > 0
    hit = _cr_mask(truth, jump.shape)
    np.testing.assert_array_equal(jump, hit)
    # about the rate asked for: 1e-4 hits per pixel per second between first and last read
    expected = 1e-4 * (60 * 2040) * (ramp.shape[1] - 1) * h["TGROUP"] * ramp.shape[0]
    assert abs(len(cr) - expected) < 5 * math.sqrt(expected)


# ====================================================================== scene and transit
def test_grism_trace_spectrum_and_filter_edges(grism):
    truth = _truth(grism)
    tr = truth["TRACE"].data
    integ = truth["INTEGRATIONS"].data
    rate = truth["RATE"].data - truth[0].header["SKYRATE"] * (truth["RATE"].data > 0)
    assert tr["Y_CENTER"][1571] == pytest.approx(34.0)
    assert np.all(np.abs(tr["Y_CENTER"][4:1748] - 34) < 3)
    star = rate[0]
    cols = np.flatnonzero(tr["SPECTRUM"] > 0.2 * tr["SPECTRUM"].max())
    assert cols.min() < 100 and cols.max() > 1650
    assert np.all(star[:, :4] == 0) and np.all(np.abs(star[:, 1751:]) < 1e-3)
    yy = np.arange(64)[:, None]
    centroid = (star[:, cols] * yy).sum(axis=0) / star[:, cols].sum(axis=0)
    expected = np.interp(cols - integ["X"][0], tr["X"], tr["Y_CENTER"]) + integ["Y"][0]
    np.testing.assert_allclose(centroid, expected, atol=0.03)
    # the brightest pixel reaches ~20000 DN in the last group
    h = truth[0].header
    assert h["PEAKRATE"] * h["NGROUPS"] * h["TGROUP"] == pytest.approx(20000, rel=0.01)
    # a wavelength-dependent depth whose flux-weighted mean is the white-light depth
    depth = tr["DEPTH"]
    assert np.ptp(depth[cols]) > 0.05 * h["TRANSDEP"]
    assert np.sum(depth * tr["SPECTRUM"]) / np.sum(tr["SPECTRUM"]) == pytest.approx(
        h["TRANSDEP"], rel=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, columns",
    [
        ({"filter": "F444W", "subarray": "SUBGRISM128", "noutputs": 1}, (750, 2040)),
        ({"filter": "F322W2", "subarray": "SUBGRISM256", "noutputs": 4}, (4, 1747)),
    ],
)
def test_other_grism_modes(tmp_path, kwargs, columns):
    paths = simulate_grism(tmp_path, GrismParams(nints=1, ngroups=2, **kwargs))
    h = fits.getheader(paths["ramp"])
    ny = {"SUBGRISM128": 128, "SUBGRISM256": 256}[kwargs["subarray"]]
    assert (h["SUBSIZE2"], h["NOUTPUTS"], h["FILTER"]) == (ny, kwargs["noutputs"], kwargs["filter"])
    geo = Geometry(0, 0, 2048, ny, kwargs["noutputs"], -1, 1)
    assert h["TFRAME"] == pytest.approx(geo.frame_time_s)
    truth = fits.open(paths["truth"])
    spectrum = truth["TRACE"].data["SPECTRUM"]
    lit = np.flatnonzero(spectrum > 0)
    assert abs(lit.min() - columns[0]) <= 2 and abs(lit.max() - columns[1]) <= 2
    tr = truth["TRACE"].data
    assert tr["Y_CENTER"][int(truth[0].header["XREF"])] == pytest.approx(34.0)
    assert fits.getheader(paths["calints"], "SCI")["SLTSIZE2"] == 64
    assert fits.getdata(paths["calints"], "SCI").shape == (1, 64, 2048)


def test_grism_shifts_come_from_the_analytic_model():
    scene = GrismScene(GrismParams())
    scene.set_peak(1000.0)
    base = scene.star_rate(0.0, 0.0, 0.0)
    along = scene.star_rate(1.0, 0.0, 0.0)
    across = scene.star_rate(0.0, 1.0, 0.0)
    np.testing.assert_allclose(along[5:, 5:2043], base[5:, 4:2042], atol=1e-6)
    np.testing.assert_allclose(across[6:, 4:2044], base[5:-1, 4:2044], atol=1e-6)
    half = scene.star_rate(0.0, 0.5, 0.0)
    assert not np.allclose(half, base) and not np.allclose(half, across)


def test_transit_shape_and_white_light_flux(grism):
    truth = _truth(grism)
    integ = truth["INTEGRATIONS"].data
    h = truth[0].header
    shape = integ["SHAPE"]
    assert shape.max() <= 1 and shape[0] == 0 and shape[-1] == 0 and shape[2] > 0.9
    oot = truth["TRACE"].data["SPECTRUM"].sum()
    np.testing.assert_allclose(integ["FLUX"] / oot, 1 - h["TRANSDEP"] * shape, atol=2e-4)
    t = integ["MJD_MID"]
    assert np.all(np.diff(t) > 0)
    barycentric_s = (integ["BJD_MID"] - t) * 86400 - 69.184  # TDB - UTC is 69.18 s in 2024
    assert np.all(np.abs(barycentric_s) < 500) and np.ptp(barycentric_s) < 0.1


def test_imaging_donut_neighbour_and_truth_position(imaging):
    truth = _truth(imaging)
    h = truth[0].header
    integ = truth["INTEGRATIONS"].data
    assert 0.005 < h["CONTAM"] < 0.05
    scene = ImagingScene(ImagingParams(neighbour_ratio=0.0))
    scene.set_peak(1000.0)
    x, y = integ["X"][0], integ["Y"][0]
    img = scene.star_rate(x - 80.0, y - 80.0, 0.0)
    yy, xx = np.mgrid[0:160, 0:160]
    inner = np.hypot(xx - x, yy - y) < 45
    assert (img * xx)[inner].sum() / img[inner].sum() == pytest.approx(x, abs=0.01)
    assert (img * yy)[inner].sum() / img[inner].sum() == pytest.approx(y, abs=0.01)
    row = img[int(round(y))]
    lit = np.flatnonzero(row > 0.1 * row.max())
    assert 64 <= lit.max() - lit.min() + 1 <= 76  # ~70 px across
    assert img[int(round(y)), int(round(x))] < 0.5 * img.max()  # dimmer centre
    ring = img[np.abs(np.hypot(xx - x, yy - y) - 30) < 1]
    assert ring.std() / ring.mean() > 0.03  # azimuthal structure
    assert abs(integ["X"][0] - 80 - h["XOFFSET"]) < 0.2


# ==================================================================== determinism, segments
def test_same_seed_identical_different_seed_different(tmp_path):
    small = dict(nints=2, ngroups=2, subarray="SUB64P")
    a = simulate_imaging(tmp_path / "a", ImagingParams(seed=4, **small))
    b = simulate_imaging(tmp_path / "b", ImagingParams(seed=4, **small))
    c = simulate_imaging(tmp_path / "c", ImagingParams(seed=5, **small))
    for ext, kind in (
        ("SCI", "ramp"),
        ("SCI", "rateints"),
        ("ONEOVERF", "truth"),
        ("RATE", "truth"),
    ):
        np.testing.assert_array_equal(fits.getdata(a[kind], ext), fits.getdata(b[kind], ext))
        assert not np.array_equal(fits.getdata(a[kind], ext), fits.getdata(c[kind], ext))


def test_segment_holds_the_same_integrations_as_the_whole_exposure(tmp_path):
    small = dict(seed=3, nints=5, ngroups=2, hga=False)
    whole = simulate_grism(tmp_path, GrismParams(**small), prefix="whole", truth=False)
    seg = simulate_grism(tmp_path, GrismParams(**small, segment=(2, 2)), prefix="seg")
    assert "truth" not in whole and not (tmp_path / "whole_truth.fits").exists()
    h = fits.getheader(seg["ramp"])
    first, last = h["INTSTART"], h["INTEND"]
    assert (h["EXSEGNUM"], h["EXSEGTOT"], h["NINTS"], first, last) == (2, 2, 5, 4, 5)
    np.testing.assert_array_equal(
        fits.getdata(seg["ramp"], "SCI"), fits.getdata(whole["ramp"], "SCI")[3:5]
    )
    np.testing.assert_array_equal(
        fits.getdata(seg["rateints"], "SCI"), fits.getdata(whole["rateints"], "SCI")[3:5]
    )
    times = fits.getdata(seg["rateints"], "INT_TIMES")
    assert list(times["integration_number"]) == [1, 2, 3, 4, 5]
    integ = fits.getdata(seg["truth"], "INTEGRATIONS")
    assert list(integ["INT_NUM"]) == [4, 5] and not integ["HGA"].any()
    assert len(fits.getdata(seg["truth"], "HGA_MOVES")) == 0


def test_existing_outputs_are_kept_without_overwrite(tmp_path):
    from tsotools.errors import OutputError

    small = GrismParams(nints=1, ngroups=2)
    simulate_grism(tmp_path, small, truth=False)
    before = (tmp_path / "grism_ramp.fits").stat().st_mtime_ns
    with pytest.raises(OutputError):
        simulate_grism(tmp_path, small)
    assert (tmp_path / "grism_ramp.fits").stat().st_mtime_ns == before
    assert not (tmp_path / "grism_truth.fits").exists()
    simulate_grism(tmp_path, small, overwrite=True)
    assert (tmp_path / "grism_truth.fits").exists()



def test_products_writes_only_those_and_the_same_data(tmp_path):
    small = GrismParams(seed=6, nints=2, ngroups=2)
    every = simulate_grism(tmp_path / "all", small, truth=False)
    some = simulate_grism(tmp_path / "some", small, products=["calints", "rateints"])
    assert set(some) == {"rateints", "calints", "truth"}
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == [
        "grism_calints.fits", "grism_rateints.fits", "grism_truth.fits"]
    for kind in ("rateints", "calints"):
        np.testing.assert_array_equal(fits.getdata(some[kind], "SCI"), fits.getdata(every[kind], "SCI"))
    with pytest.raises(ValueError, match="ramp, rateints; got calints"):
        simulate_imaging(tmp_path / "bad", ImagingParams(nints=1, ngroups=2), products=["calints"])
    assert not (tmp_path / "bad").exists()


# ================================================================================ guider
def test_guider_files_cover_the_science_span(guider):
    files = sorted(v for k, v in guider.items() if k.startswith("gs-fg_"))
    truth = _truth(guider)
    nframes = len(truth["GUIDER"].data)
    assert len(files) == math.ceil(nframes / 64) >= 2
    sci = fits.getheader(guider["rateints"])
    first, last = fits.getheader(files[0]), fits.getheader(files[-1])
    assert first["DATASTRT"] <= sci["EXPSTART"] and last["DATAEND"] >= sci["EXPEND"]
    total = 0
    for path in files:
        model = _open(path)
        assert type(model).__name__ == "GuiderCalModel"
        h = fits.getheader(path)
        assert (h["EXP_TYPE"], h["GS_MAG"]) == ("FGS_FINEGUIDE", 12.0) and h["GDSTARID"]
        assert (
            h["V3I_YANG"] == truth[0].header["FGS_V3YA"]
            and h["VPARITY"] == truth[0].header["FGS_VPAR"]
        )
        n = model.data.shape[0]
        assert (
            model.data.shape == (n, 8, 8)
            and model.data.dtype.kind == "f"
            and model.data.dtype.itemsize == 4
        )
        assert (
            len(fits.getdata(path, "Pointing")) == n
            and len(fits.getdata(path, "FGS Centroid Packet")) == n
        )
        assert (h["DATAEND"] - h["DATASTRT"]) * 86400 == pytest.approx(n / 16.0, rel=1e-6)
        total += n
    assert total == nframes
    assert fits.getheader(guider["rateints"], "SCI")["V3I_YANG"] == truth[0].header["SCI_V3YA"]


def test_guider_science_truth_is_the_mean_of_the_frame_series(guider):
    truth = _truth(guider)
    h = truth[0].header
    frames = truth["GUIDER"].data
    science = truth["SCIENCE"].data
    times = fits.getdata(guider["rateints"], "INT_TIMES")
    for row in science:
        t = times[times["integration_number"] == row["INT_NUM"]][0]
        inside = (frames["MJD"] >= t["int_start_MJD_UTC"]) & (frames["MJD"] < t["int_end_MJD_UTC"])
        assert inside.sum() >= 2
        assert frames["X_MAS"][inside].mean() == pytest.approx(row["DX_MAS"], abs=1e-9)
        assert frames["Y_MAS"][inside].mean() == pytest.approx(row["DY_MAS"], abs=1e-9)
    g2s = np.array([[h["G2S_11"], h["G2S_12"]], [h["G2S_21"], h["G2S_22"]]])
    pix = g2s @ np.vstack([science["DX_MAS"], science["DY_MAS"]])
    np.testing.assert_allclose(pix, np.vstack([science["DX_PIX"], science["DY_PIX"]]), atol=1e-9)
    assert np.hypot(g2s[0, 0], g2s[1, 0]) == pytest.approx(
        1 / (1000 * 0.031), rel=1e-9
    )  # SW pixels
    integ = truth["INTEGRATIONS"].data
    np.testing.assert_allclose(integ["X"] - h["XREF"] - h["XOFFSET"], science["DX_PIX"], atol=1e-9)
    # the antenna move: 0.2 SW px = 6.2 mas on top of ~1 mas jitter
    start = truth["HGA_MOVES"].data["START_MJD"][0]
    before = frames["MJD"] < start
    jump = np.hypot(
        *(
            np.vstack([frames["X_MAS"], frames["Y_MAS"]])[:, ~before][:, 0]
            - np.vstack([frames["X_MAS"], frames["Y_MAS"]])[:, before][:, -1]
        )
    )
    assert 3.0 < jump < 10.0


def test_pointing_jitter_drift_and_antenna_move():
    from dataclasses import replace

    from tsotools.simulate._timeline import integration_means, make_pointing, make_timeline

    params = GrismParams(
        nints=3000, ngroups=3, jitter_mas=1.0, drift_x_px=0.5, drift_y_px=-0.25, hga_px=0.2
    )
    tl = make_timeline(params.expstart_mjd, params.nints, params.ngroups, 0.34061)
    pt = make_pointing(params, tl, 0.063, np.random.default_rng(1))
    still = make_pointing(
        replace(params, hga=False, drift_x_px=0.0, drift_y_px=0.0),
        tl,
        0.063,
        np.random.default_rng(1),
    )
    # jitter_mas is the rms of the per-integration mean pointing
    means = integration_means(still.mjd, still.dx, tl) * 63.0
    assert np.std(means) == pytest.approx(1.0, rel=0.15)
    assert np.std(still.dy) * 63.0 > np.std(integration_means(still.mjd, still.dy, tl)) * 63.0
    # drift: linear over the exposure, from 0 to the value asked
    extra = np.vstack([pt.dx - still.dx, pt.dy - still.dy])
    after = pt.mjd > pt.hga_stop + 60 / 86400
    assert np.allclose(extra[:, pt.mjd > tl.expend][:, -1], [0.5, -0.25], atol=1e-6)
    assert np.allclose(extra[:, pt.mjd < tl.expstart], 0.0)
    # the antenna move: a sudden 0.2 px offset mid-exposure, back within 1 mas after 20 s
    frac = np.clip((pt.mjd - tl.expstart) / (tl.expend - tl.expstart), 0, 1)
    hga = extra - np.vstack([0.5 * frac, -0.25 * frac])
    k = np.searchsorted(pt.mjd, pt.hga_start)
    assert np.hypot(*hga[:, k]) == pytest.approx(0.2, abs=0.005)
    assert np.allclose(hga[:, :k], 0.0, atol=1e-9) and np.all(np.hypot(*hga[:, after]) < 1e-3)
    settled = pt.mjd > pt.hga_start + 20 / 86400
    assert np.all(np.hypot(*hga[:, settled]) * 63.0 < 1.0)
    assert (pt.hga_stop - pt.hga_start) * 86400 == pytest.approx(20.0)
    assert abs(pt.hga_start - 0.5 * (tl.expstart + tl.expend)) < 1e-9


def test_guider_centroids_track_the_true_pointing(guider):
    truth = _truth(guider)
    frames = truth["GUIDER"].data
    files = sorted(v for k, v in guider.items() if k.startswith("gs-fg_"))
    cent = np.concatenate([fits.getdata(p, "FGS Centroid Packet") for p in files])
    gsx = fits.getheader(files[0])["GSIDL_X"]
    meas = (cent["guide_star_position_x"] - gsx) * 1000
    assert np.std(meas - frames["X_MAS"]) < 1.0
    assert np.corrcoef(meas, frames["X_MAS"])[0, 1] > 0.9
    pointing = np.concatenate([fits.getdata(p, "Pointing") for p in files])
    hga = np.char.strip(pointing["HGA_motion"].astype(str)) == "MOVING"
    moves = truth["HGA_MOVES"].data
    inside = (frames["MJD"] >= moves["START_MJD"][0]) & (frames["MJD"] <= moves["STOP_MJD"][0])
    np.testing.assert_array_equal(hga, inside)


def test_guider_without_tables(tmp_path):
    paths = simulate_guider(
        tmp_path, GuiderParams(nints=2, ngroups=2, subarray="SUB64P", tables=False), truth=False
    )
    names = [h.name for h in fits.open(paths["gs-fg_1"])]
    assert "POINTING" not in names and "FGS CENTROID PACKET" not in names
    assert type(_open(paths["gs-fg_1"])).__name__ == "GuiderCalModel"


# ================================================================================ params
@pytest.mark.parametrize(
    "cls, kwargs, field",
    [
        (GrismParams, {"nints": 0}, "nints"),
        (GrismParams, {"ngroups": 1}, "ngroups"),
        (GrismParams, {"subarray": "SUB64P"}, "subarray"),
        (GrismParams, {"noutputs": 2}, "noutputs"),
        (GrismParams, {"transit_depth": -0.1}, "transit_depth"),
        (GrismParams, {"segment": (3, 2)}, "segment"),
        (ImagingParams, {"filter": "F322W2"}, "filter"),
        (ImagingParams, {"shared_fraction": 1.5}, "shared_fraction"),
        (GuiderParams, {"frames_per_file": 2}, "frames_per_file"),
        (GuiderParams, {"science": "nope"}, "science"),
    ],
)
def test_bad_params_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_params_are_frozen_and_defaults_are_small():
    p = GrismParams()
    with pytest.raises(AttributeError):
        p.nints = 3
    assert (p.nints, p.ngroups, p.subarray, p.filter, p.noutputs, p.gain) == (
        20,
        5,
        "SUBGRISM64",
        "F322W2",
        4,
        1.8,
    )
    assert ImagingParams().gain == 2.05 and GuiderParams().science_params().subarray == "SUB160P"


# =================================================================================== CLI
def test_cli_simulate_json_and_no_truth(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "grism",
            "-o",
            str(tmp_path / "sim"),
            "--nints",
            "2",
            "--ngroups",
            "2",
            "--no-truth",
            "--json",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert set(outputs) == {"ramp", "rateints", "calints"}
    assert all((tmp_path / "sim" / f"grism_{k}.fits").exists() for k in outputs)

    result = CliRunner().invoke(main, ["simulate", "imaging", "-o", str(tmp_path / "one"), "--nints",
                                       "1", "--ngroups", "2", "--products", "rateints", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["outputs"]) == {"rateints", "truth"}
    result = CliRunner().invoke(main, ["simulate", "imaging", "-o", str(tmp_path / "no"),
                                       "--products", "ramp,calints"])
    assert result.exit_code == 2 and "calints: expected a comma-separated subset of ramp,rateints" in result.output
    assert not (tmp_path / "no").exists()
    # a guider run's science decides: imaging makes no calints (checked before anything is written)
    result = CliRunner().invoke(main, ["simulate", "guider", "-o", str(tmp_path / "no"), "--products", "calints"])
    assert result.exit_code == 2 and "products must be among ramp, rateints; got calints" in result.output
    assert not (tmp_path / "no").exists()


def test_cli_simulate_guider_no_tables_and_bad_values(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "simulate",
            "guider",
            "-o",
            str(tmp_path),
            "--nints",
            "2",
            "--ngroups",
            "2",
            "--subarray",
            "SUB64P",
            "--no-tables",
            "--prefix",
            "gs",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "POINTING" not in [h.name for h in fits.open(tmp_path / "gs_gs-fg_1_cal.fits")]
    for args in (
        ["--segment", "3/2"],
        ["--subarray", "SUBGRISM64"],
        ["--segment", "x"],
        ["--nints", "0"],
    ):
        result = runner.invoke(main, ["simulate", "guider", "-o", str(tmp_path / "bad"), *args])
        assert result.exit_code == 2, (args, result.output)
        errors = [
            ln for ln in result.output.splitlines() if ln.startswith(("tsotools: error:", "Error:"))
        ]
        assert len(errors) == 1, result.output
        assert "Traceback" not in result.output
    result = runner.invoke(
        main,
        [
            "simulate",
            "guider",
            "-o",
            str(tmp_path),
            "--nints",
            "2",
            "--ngroups",
            "2",
            "--subarray",
            "SUB64P",
            "--prefix",
            "gs",
        ],
    )
    assert result.exit_code == 2 and "--overwrite" in result.output
