"""tsotools centroid: acceptance on simulated imaging and grism data (truth file), CLI frame."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from conftest import sha256

from tsotools.cli import main

CENTROID_COLUMNS = ["INT_NUM", "MJD", "BJD_TDB", "X", "Y", "X_ERR", "Y_ERR", "WIDTH_X", "WIDTH_Y", "PEAK", "FLAG"]


def run(*args):
    return CliRunner().invoke(main, ["centroid", *map(str, args)], catch_exceptions=False)


def truth_tables(path):
    with fits.open(path) as hdul:
        header = hdul[0].header.copy()
        integ = Table.read(hdul["INTEGRATIONS"])
        trace = Table.read(hdul["TRACE"]) if "TRACE" in hdul else None
    return header, integ, trace


@pytest.fixture(scope="module")
def imaging(simulated):
    # default noise, 1/f included, an antenna move mid-exposure
    return simulated("imaging", seed=11, nints=120)


@pytest.fixture(scope="module")
def imaging_result(imaging, module_tmp):
    out = module_tmp.mktemp("centroid") / "centroids.ecsv"
    before = sha256(imaging["rateints"])
    result = run(imaging["rateints"], "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert sha256(imaging["rateints"]) == before
    return out, json.loads(result.stdout)


def test_weak_lens_centroids_match_truth(imaging, imaging_result):
    out, summary = imaging_result
    tab = Table.read(out)
    header, truth, _ = truth_tables(imaging["truth"])
    assert tab.colnames == CENTROID_COLUMNS
    assert summary["method"] == "xcorr"
    ex, ey = tab["X"] - truth["X"], tab["Y"] - truth["Y"]
    rms = np.sqrt(np.mean(ex**2)), np.sqrt(np.mean(ey**2))
    print(f"centroid RMS error vs truth: x {rms[0]:.4f} px, y {rms[1]:.4f} px")
    assert max(rms) <= 0.01
    # the positions really move (jitter, antenna move): the measurement follows them
    assert np.std(truth["X"]) > 3 * rms[0]
    # reported errors describe the scatter about the truth (after the common offset)
    ratio = np.std(ex) / np.median(tab["X_ERR"])
    assert 0.5 < ratio < 2.0
    np.testing.assert_allclose(tab["MJD"], truth["MJD_MID"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(tab["INT_NUM"], truth["INT_NUM"])


def test_xref_offset_measured_within_0p05_px(imaging, imaging_result):
    out, summary = imaging_result
    header, _, _ = truth_tables(imaging["truth"])
    meta = Table.read(out).meta
    print(f"XREF offset measured ({meta['XOFFSET']:+.4f}, {meta['YOFFSET']:+.4f}), "
          f"injected ({header['XOFFSET']:+.4f}, {header['YOFFSET']:+.4f})")
    assert meta["XOFFSET"] == pytest.approx(header["XOFFSET"], abs=0.05)
    assert meta["YOFFSET"] == pytest.approx(header["YOFFSET"], abs=0.05)
    assert summary["x_offset"] == pytest.approx(meta["XOFFSET"])
    assert meta["OFFSETOK"] is True and summary["offset_exceeds_tolerance"] is False


def test_antenna_move_is_flagged(imaging, imaging_result):
    out, _ = imaging_result
    tab = Table.read(out)
    _, truth, _ = truth_tables(imaging["truth"])
    hga = np.flatnonzero(truth["HGA"])
    flagged = np.flatnonzero(tab["FLAG"] & 2)
    # the integrations where the move displaces the star by more than 0.05 px are flagged ...
    quiet = np.median(truth["X"]), np.median(truth["Y"])
    big = np.flatnonzero(np.hypot(truth["X"] - quiet[0], truth["Y"] - quiet[1]) > 0.1)
    big = big[np.isin(big, hga)]
    assert big.size >= 1 and np.isin(big, flagged).all()
    # ... and nothing outside the move's window (one integration of margin)
    assert flagged.min() >= hga.min() - 1 and flagged.max() <= hga.max() + 1


def test_tolerance_warning_and_header(imaging, tmp_path):
    out = tmp_path / "c.fits"
    result = run(imaging["rateints"], "-o", out, "--tolerance", "0.1")
    assert result.exit_code == 0
    assert "more than --tolerance 0.10 px" in result.stderr
    tab = Table.read(out)
    assert tab.colnames == CENTROID_COLUMNS
    assert tab.meta["OFFSETOK"] is False and tab.meta["TOLERANC"] == 0.1


def test_gauss2d_on_the_donut_is_worse_than_xcorr(imaging, imaging_result, tmp_path):
    out = tmp_path / "g.ecsv"
    assert run(imaging["rateints"], "-o", out, "--method", "com").exit_code == 0
    _, truth, _ = truth_tables(imaging["truth"])
    com = Table.read(out)
    xc = Table.read(imaging_result[0])
    err_com = np.sqrt(np.mean((com["X"] - truth["X"]) ** 2))
    err_xc = np.sqrt(np.mean((xc["X"] - truth["X"]) ** 2))
    assert err_com > 3 * err_xc


@pytest.mark.parametrize("product", ["calints", "rateints"])
def test_grism_trace_offset_and_dispersion_shift(simulated, tmp_path, product):
    paths = simulated("grism", seed=12, nints=40)  # default 1/f and noise
    out = tmp_path / "g.ecsv"
    result = run(paths[product], "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    tab = Table.read(out)
    header, truth, trace = truth_tables(paths["truth"])
    xref = tab.meta["XREF"]
    # truth trace centre at column XREF: nominal trace at x - dx, plus dy
    y_true = np.interp(xref - truth["X"], trace["X"], trace["Y_CENTER"]) + truth["Y"]
    trace_rms = np.sqrt(np.mean((tab["Y"] - y_true) ** 2))
    disp = (tab["X"] - np.mean(tab["X"])) - (truth["X"] - np.mean(truth["X"]))
    disp_rms = np.sqrt(np.mean(disp**2))
    print(f"grism {product}: trace offset RMS {trace_rms:.4f} px, dispersion shift RMS {disp_rms:.4f} px "
          f"(truth shifts rms {np.std(truth['X']):.4f} px)")
    assert trace_rms <= 0.01
    assert disp_rms <= 0.02
    assert summary["mode"] == "grism" and summary["x_offset"] is None
    assert summary["y_offset"] == pytest.approx(header["YOFFSET"], abs=0.05)


def test_bad_inputs_fail_in_one_line(simulated, imaging, tmp_path):
    paths = simulated("grism", seed=12, nints=40)
    cases = [
        ([paths["ramp"], "-o", tmp_path / "a.ecsv"], "ramp product"),
        ([paths["calints"], "-o", tmp_path / "a.ecsv", "--method", "gauss2d"], "cross-correlation"),
        ([imaging["rateints"], "-o", tmp_path / "a.ecsv", "--guess", "3"], "--guess"),
        ([imaging["rateints"], "-o", tmp_path / "a.ecsv", "--box", "2"], "box"),
        ([imaging["rateints"], "-o", tmp_path / "a.txt"], ".ecsv or .fits"),
        ([imaging["rateints"], "-o", tmp_path / "a.ecsv", "--guess", "5000,3"], "outside"),
    ]
    for args, needle in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr


def test_existing_output_needs_overwrite(imaging, imaging_result):
    out, _ = imaging_result
    result = run(imaging["rateints"], "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_help():
    result = CliRunner().invoke(main, ["centroid", "-h"])
    assert result.exit_code == 0
    for needle in ("--method", "--box", "--guess", "--tolerance", "Example:"):
        assert needle in result.output
