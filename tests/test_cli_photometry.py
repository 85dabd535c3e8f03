"""tsotools photometry: acceptance on simulated weak-lens data (truth file), CLI frame."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from conftest import sha256

from tsotools.algorithms.photometry import aperture_weights
from tsotools.cli import main

PIPELINE_COLUMNS = ["MJD", "BJD_TDB", "aperture_sum", "aperture_sum_err", "annulus_sum", "annulus_sum_err",
                    "annulus_mean", "annulus_mean_err", "aperture_bkg", "aperture_bkg_err", "net_aperture_sum",
                    "net_aperture_sum_err", "aperture_x", "aperture_y", "centroid_x", "centroid_y"]


def run(*args):
    return CliRunner().invoke(main, ["photometry", *map(str, args)], catch_exceptions=False)


def truth(path):
    with fits.open(path) as hdul:
        return hdul[0].header.copy(), Table.read(hdul["INTEGRATIONS"]), hdul["RATE_VAR"].data.astype(float)


def fit_transit(flux, shape):
    """Least-squares flux = c0 (1 - depth * shape): depth, its 1-sigma error, residual rms."""
    a = np.stack([np.ones_like(shape), -shape], axis=1)
    coef, *_ = np.linalg.lstsq(a, flux, rcond=None)
    resid = flux - a @ coef
    cov = np.linalg.inv(a.T @ a) * np.var(resid, ddof=2)
    depth = coef[1] / coef[0]
    return depth, np.sqrt(cov[1, 1]) / coef[0], np.std(resid, ddof=2)


def theoretical_noise(rate_var, x, y, radius, annulus):
    """Photon + read noise of a net aperture sum: pixels (exact weights) plus the sky median's error."""
    sl, w = aperture_weights(rate_var.shape, x, y, radius)
    ap_var = np.sum(w**2 * rate_var[sl])
    area = np.sum(w)
    yy, xx = np.indices(rate_var.shape)
    r = np.hypot(xx - x, yy - y)
    ring = (r >= annulus[0]) & (r < annulus[1]) & (rate_var > 0)
    # the clipped median of n sky pixels: variance pi/2 * var / n (the neighbour's pixels are clipped)
    sky_var = np.pi / 2 * np.median(rate_var[ring]) / ring.sum()
    return np.sqrt(ap_var + area**2 * sky_var)


@pytest.fixture(scope="module")
def clean(simulated):
    # photon and read noise only (1/f noise is removed by `tsotools oneoverf` upstream)
    return simulated("imaging", seed=21, nints=200, oneoverf_scale=0.0)


def test_light_curve_scatter_near_theory_and_radius_auto(clean, tmp_path):
    out = tmp_path / "phot.ecsv"
    before = sha256(clean["rateints"])
    result = run(clean["rateints"], "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert sha256(clean["rateints"]) == before
    summary = json.loads(result.stdout)
    assert "chosen by --radius auto" in summary["message"] and len(summary["radii"]) > 1
    assert summary["scatter_ppm"][f"{summary['radius']:g}"] == min(v for v in summary["scatter_ppm"].values())
    tab = Table.read(out)
    header, integ, rate_var = truth(clean["truth"])
    ok = tab["FLAG"] & 1 == 0
    depth, depth_err, scatter = fit_transit(np.asarray(tab["flux"])[ok], np.asarray(integ["SHAPE"])[ok])
    theory = theoretical_noise(rate_var, np.median(integ["X"]), np.median(integ["Y"]), summary["radius"],
                               summary["annulus"])
    print(f"radius {summary['radius']:g} px: scatter {scatter:.1f} DN/s, theory {theory:.1f} DN/s, "
          f"ratio {scatter / theory:.3f}")
    assert scatter <= 1.05 * theory
    # the pipeline-style error column describes that scatter too
    assert np.median(tab["net_aperture_sum_err"]) == pytest.approx(scatter, rel=0.15)


def test_transit_depth_recovered_within_one_sigma_with_dilution(clean, tmp_path):
    header, integ, _ = truth(clean["truth"])
    cen = tmp_path / "cen.ecsv"
    assert CliRunner().invoke(main, ["centroid", str(clean["rateints"]), "-o", str(cen)]).exit_code == 0
    out = tmp_path / "phot.fits"
    result = run(clean["rateints"], "-o", out, "--centroids", cen, "--radius", "35,40",
                 "--dilution", f"{header['CONTAM']:.6f}", "--json")
    assert result.exit_code == 0, result.output
    tab = Table.read(out)
    ok = tab["FLAG"] & 1 == 0
    shape = np.asarray(integ["SHAPE"])[ok]
    depth, depth_err, _ = fit_transit(np.asarray(tab["flux"])[ok], shape)
    diluted, _, _ = fit_transit(np.asarray(tab["net_aperture_sum"])[ok], shape)
    print(f"depth {depth:.6f} +- {depth_err:.6f} (truth {header['TRANSDEP']}); undiluted {diluted:.6f}")
    assert abs(depth - header["TRANSDEP"]) <= depth_err
    assert abs(diluted - header["TRANSDEP"]) > 3 * depth_err  # the correction was needed
    assert tab.meta["POSSRC"] == "table" and tab.meta["RADIUS"] == 35.0
    np.testing.assert_allclose(tab["centroid_x"], Table.read(cen)["X"])


def test_moving_aperture_beats_fixed_under_drift(simulated, tmp_path):
    paths = simulated("imaging", seed=22, nints=100, oneoverf_scale=0.0, drift_px=0.5)
    _, integ, _ = truth(paths["truth"])
    scatter = {}
    for mode in ("moving", "fixed", "xref"):
        out = tmp_path / f"{mode}.ecsv"
        assert run(paths["rateints"], "-o", out, "--radius", "35", "--position", mode).exit_code == 0
        tab = Table.read(out)
        scatter[mode] = fit_transit(np.asarray(tab["flux"]), np.asarray(integ["SHAPE"]))[2]
        if mode == "fixed":
            assert np.ptp(tab["aperture_x"]) == 0 and np.ptp(tab["centroid_x"]) > 0.3
    print("scatter with a 0.5 px drift: " + ", ".join(f"{k} {v:.0f}" for k, v in scatter.items()))
    assert scatter["moving"] * 1.3 < scatter["fixed"] < scatter["xref"]


def test_ecsv_reads_with_astropy_and_has_pipeline_columns(clean, tmp_path):
    out = tmp_path / "phot.ecsv"
    assert run(clean["rateints"], "-o", out, "--radius", "30,35.5", "--background", "mean").exit_code == 0
    tab = Table.read(out, format="ascii.ecsv")
    for name in PIPELINE_COLUMNS + ["INT_NUM", "flux", "flux_err", "FLAG", "net_aperture_sum_r35p5"]:
        assert name in tab.colnames, name
    assert str(tab["aperture_sum"].unit) == "DN / s" and str(tab["MJD"].unit) == "d"
    np.testing.assert_allclose(tab["aperture_sum"], tab["aperture_sum_r30"])
    assert np.all(tab["aperture_sum_r35p5"] > tab["aperture_sum_r30"])
    assert tab.meta["BKGMETH"] == "mean" and tab.meta["S_TSOPHT"] == "COMPLETE"
    _, integ, _ = truth(clean["truth"])
    np.testing.assert_allclose(tab["MJD"], integ["MJD_MID"], atol=1e-9)


def test_bad_inputs_fail_in_one_line(simulated, clean, tmp_path):
    grism = simulated("grism", seed=12, nints=40)
    bad_table = tmp_path / "bad.ecsv"
    Table({"A": [1.0]}).write(bad_table)
    cases = [
        ([grism["rateints"], "-o", tmp_path / "a.ecsv"], "imaging"),
        ([clean["rateints"], "-o", tmp_path / "a.ecsv", "--radius", "3,x"], "--radius"),
        ([clean["rateints"], "-o", tmp_path / "a.ecsv", "--radius", "10", "--annulus", "5,20"], "annulus"),
        ([clean["rateints"], "-o", tmp_path / "a.ecsv", "--dilution", "1.5"], "dilution"),
        ([clean["rateints"], "-o", tmp_path / "a.ecsv", "--centroids", bad_table], "centroid table"),
    ]
    for args, needle in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr


def test_help():
    result = CliRunner().invoke(main, ["photometry", "-h"])
    assert result.exit_code == 0
    for needle in ("--radius", "--annulus", "--position", "--centroids", "--background", "--dilution", "Example:"):
        assert needle in result.output
