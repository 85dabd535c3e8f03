"""tsotools spectra: acceptance against the simulator's truth, formats, and the command line.

The acceptance data: SUBGRISM64, 400 integrations of 2 groups (seed 11), so that the scatter
of a light curve is known to ~3.5 % (1/sqrt(2N)). "Without 1/f" is the simulated rateints
minus the truth's ONEOVERF_RATE (exactly the 1/f-free rateints: the simulator's other noise
draws do not depend on the 1/f switch).
"""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from tsotools.algorithms import lightcurves as lc
from tsotools.algorithms.extraction import ExtractionParams
from tsotools.cli import main
from tsotools.io import derive_product, open_product
from tsotools.steps.oneoverf import run_oneoverf
from tsotools.steps.spectra import run_spectra

ACCEPT = dict(seed=11, nints=400, ngroups=2)
ONE_WORKER = pytest.mark.xdist_group("spectra-accept")  # one worker builds `accept`, once
NBINS = 20  # with Gaussian errors P(|z| <= 2) = 95.4 %: 20 bins allow one miss at 95 %


def minus_oneoverf(rateints, truth, out):
    """rateints - ONEOVERF_RATE, streamed through io.derive_product."""
    with open_product(rateints) as prod:
        writer = derive_product(prod, out, {"SCI": None}, tool="simulate", overwrite=True)
        with fits.open(truth, memmap=True) as t, writer:
            for i in range(prod.nints):
                writer.write("SCI", i, prod.read("SCI", i) - t["ONEOVERF_RATE"].section[i])
    return out


@pytest.fixture(scope="module")
def accept(simulated, module_tmp):
    sim = simulated("grism", products=("rateints",), **ACCEPT)
    d = module_tmp.mktemp("spectra-accept")
    clean = minus_oneoverf(sim["rateints"], sim["truth"], d / "clean_rateints.fits")
    out = {"sim": sim, "clean": clean, "dir": d}
    for method in ("optimal", "box"):
        out[method] = run_spectra(
            clean, d / f"{method}_x1dints.fits", params=ExtractionParams(method=method), white_light=d / f"{method}.ecsv",
            lightcurves=d / f"{method}_lc.ecsv", nbins=NBINS, trace_table=d / f"{method}_trace.ecsv", progress=False)
    with fits.open(sim["truth"]) as t:
        out["ints"] = Table(t["INTEGRATIONS"].data)
        out["trace"] = Table(t["TRACE"].data)
    return out


def white_theory(truth, data_path, columns):
    """Photon + read noise of the white light with ideal (Horne) weights from the truth.

    Returns the model's relative sigma and the relative scatter that ideal weights reach on
    this very noise realization (data - RATE), both over ``columns``.
    """
    with fits.open(truth, memmap=True) as t:
        rv = t["RATE_VAR"].data.astype(float)
        sky = float(t["INTEGRATIONS"].data["SKY"][0])
        n = t["RATE"].shape[0]
        star = np.median([t["RATE"].section[i] for i in range(0, n, max(n // 25, 1))], axis=0) - sky
        star = np.clip(star, 0, None)
        flux = star.sum(axis=0)
        prof = star / np.where(flux > 0, flux, 1)
        ok = rv > 0
        inv = np.where(ok, prof / np.where(ok, rv, 1), 0.0)
        var_col = 1.0 / (prof * inv).sum(axis=0)
        model = np.sqrt(var_col[columns].sum()) / flux[columns].sum()
        errs = []
        with open_product(data_path) as prod:
            for i in range(prod.nints):
                e = np.nan_to_num(prod.read("SCI", i).astype(float) - t["RATE"].section[i])
                errs.append(((inv * e).sum(axis=0) * var_col)[columns].sum())
    return model, np.std(errs, ddof=1) / flux[columns].sum()


def light_columns(path):
    """Columns the white light summed (recovered from the x1dints and the summary)."""
    tab = fits.getdata(path, "EXTRACT1D")
    return np.flatnonzero(np.nanmedian(tab["FLUX"], axis=0) / np.nanmedian(tab["FLUX_ERROR"], axis=0) >= 3)


def residual_scatter(flux, shape):
    """Relative scatter after removing a straight line in the transit shape (baseline + depth)."""
    f = np.asarray(flux, dtype=float)
    return np.std(f - np.polyval(np.polyfit(shape, f, 1), shape), ddof=2) / np.median(f)


# ==================================================================== acceptance 1-4
@ONE_WORKER
def test_white_light_scatter_near_photon_and_read_noise(accept):
    shape = np.asarray(accept["ints"]["SHAPE"])
    cols = light_columns(accept["dir"] / "optimal_x1dints.fits")
    assert abs(len(cols) - accept["optimal"]["columns"]) <= 2
    model, ideal = white_theory(accept["sim"]["truth"], accept["clean"], cols)
    for method in ("optimal", "box"):
        wl = Table.read(accept["dir"] / f"{method}.ecsv")
        got = residual_scatter(wl["whitelight_flux"], shape)
        print(f"{method}: white light {got * 1e6:.1f} ppm, model {model * 1e6:.1f} ppm ({got / model:.3f}x), "
              f"ideal weights on the same noise {ideal * 1e6:.1f} ppm ({got / ideal:.3f}x)")
        # the white light's depth is the injected one (flux-weighted, exactly D)
        d, e = lc.fit_depth(np.asarray(wl["whitelight_flux"]), shape)
        assert abs(d - 0.01) < 3 * e + 2e-5
    opt = residual_scatter(Table.read(accept["dir"] / "optimal.ecsv")["whitelight_flux"], shape)
    assert opt <= 1.05 * model
    assert opt <= 1.05 * ideal  # the same noise realization: no sampling luck


@ONE_WORKER
@pytest.mark.xfail(strict=True, reason="issue #5 point 1 with 1/f: after run_oneoverf on rateints the white light is "
                   "2.17x the photon + read noise (324 vs 149 ppm), not <= 1.15x. Not reachable by a per-integration "
                   "row method here: the F322W2 trace fills every row it crosses on 3 of 4 amplifiers, so those "
                   "rows' stripes (8.6 DN/s rms) can only be told from the star's flux through photon-noisy trace "
                   "pixels; the Fisher bound with the true profile is 1.43x, a GLS with the true profile and true "
                   "amplifier offsets reaches 2.06x; the ramp route (oneoverf + rampfit) has the same information for 2 "
                   "groups")
def test_white_light_after_oneoverf(accept, tmp_path):
    out = tmp_path / "oof_rateints.fits"
    run_oneoverf(accept["sim"]["rateints"], out, progress=False)
    res = run_spectra(out, tmp_path / "x.fits", white_light=tmp_path / "wl.ecsv", progress=False)
    out.unlink()  # pytest keeps an xfailed test's tmp_path; not this 1 GB file
    shape = np.asarray(accept["ints"]["SHAPE"])
    cols = light_columns(tmp_path / "x.fits")
    model, _ = white_theory(accept["sim"]["truth"], accept["clean"], cols)
    got = residual_scatter(Table.read(tmp_path / "wl.ecsv")["whitelight_flux"], shape)
    print(f"after oneoverf: {got * 1e6:.1f} ppm = {got / model:.3f}x the photon + read noise; {res['message']}")
    assert got <= 1.15 * model


@ONE_WORKER
def test_optimal_beats_box_in_every_bin(accept):
    shape = np.asarray(accept["ints"]["SHAPE"])
    o = Table.read(accept["dir"] / "optimal_lc.ecsv")
    b = Table.read(accept["dir"] / "box_lc.ecsv")
    ratios = []
    for k in range(NBINS):
        so, sb = (residual_scatter(t[t["BIN"] == k]["FLUX"], shape) for t in (o, b))
        assert o[o["BIN"] == k]["NCOLS"][0] >= 10
        ratios.append(so / sb)
    print("optimal/box scatter per bin:", np.round(ratios, 3))
    assert max(ratios) <= 1.0


@ONE_WORKER
def test_bin_depths_recovered(accept):
    shape = np.asarray(accept["ints"]["SHAPE"])
    tr = accept["trace"]
    t = Table.read(accept["dir"] / "optimal_lc.ecsv")
    z = []
    for k in range(NBINS):
        rows = t[t["BIN"] == k]
        cols = np.arange(rows["X_LO"][0], rows["X_HI"][0] + 1)
        truth = np.sum(tr["DEPTH"][cols] * tr["SPECTRUM"][cols]) / np.sum(tr["SPECTRUM"][cols])
        d, e = lc.fit_depth(np.asarray(rows["FLUX"]), shape)
        z.append((d - truth) / e)
    z = np.array(z)
    print("depth z-scores:", np.round(z, 2), "chi2/n", np.mean(z**2))
    assert np.mean(np.abs(z) <= 2) >= 0.95
    assert 0.4 < np.mean(z**2) < 2.0  # errors neither under- nor grossly over-estimated


@ONE_WORKER
def test_trace_and_shifts_match_truth(accept):
    from astropy.modeling.models import Polynomial1D

    ints, tr = accept["ints"], accept["trace"]
    s = accept["optimal"]
    model = Polynomial1D(len(s["trace"]["coefficients"]) - 1, domain=(0, 2047), window=(-1, 1))
    model.parameters = s["trace"]["coefficients"]
    x = np.arange(4, 1748, dtype=float)
    truth = np.interp(x - np.median(ints["X"]), tr["X"], tr["Y_CENTER"]) + np.median(ints["Y"])
    rms = np.sqrt(np.mean((model(x) - truth) ** 2))
    shifts = Table.read(accept["dir"] / "optimal_trace.ecsv")
    dy = np.asarray(ints["Y"]) - np.median(ints["Y"])
    srms = np.sqrt(np.mean((np.asarray(shifts["SHIFT_Y"]) - dy) ** 2))
    print(f"trace rms {rms:.4f} px, shift rms {srms:.4f} px (truth shifts rms {dy.std():.4f} px)")
    assert rms <= 0.02
    assert srms <= 0.01
    assert np.ptp(dy) > 0.1  # the antenna move is in the data: the shifts were really measured


# ==================================================================== formats (6)
@pytest.fixture(scope="module")
def small(simulated):
    return simulated("grism", seed=3, nints=8, ngroups=3)


def test_both_layouts_open_as_tsomultispec_and_agree(small, tmp_path):
    from stdatamodels.jwst import datamodels

    a, b = tmp_path / "new_x1dints.fits", tmp_path / "old_x1dints.fits"
    run_spectra(small["rateints"], a, progress=False)
    run_spectra(small["rateints"], b, layout="per-integration", progress=False)
    with datamodels.TSOMultiSpecModel(a) as m:
        tab = m.spec[0].spec_table
        assert len(m.spec) == 1 and tab["FLUX"].shape == (8, 2048)
        np.testing.assert_array_equal(tab["INT_NUM"], np.arange(1, 9))
        assert np.all(tab["N_ALONGDISP"] == 2048) and np.all(np.isfinite(tab["MJD-AVG"]))
        flux_a = np.array(tab["FLUX"])
        times = np.array(tab["TDB-MID"])
        with open_product(small["rateints"]) as p:
            np.testing.assert_allclose(tab["MJD-AVG"], p.integration_times()["mjd_mid"])
    with datamodels.TSOMultiSpecModel(b) as m:
        assert len(m.spec) == 8
        flux_b = np.stack([s.spec_table["FLUX"] for s in m.spec])
        assert [s.int_num for s in m.spec] == list(range(1, 9))
        np.testing.assert_allclose([s.mid_tdb for s in m.spec], times)
    np.testing.assert_array_equal(flux_a, flux_b)
    with datamodels.open(b) as m:
        assert type(m).__name__ == "TSOMultiSpecModel"
        np.testing.assert_array_equal(m.spec[3].spec_table["INT_NUM"], 4)
    with fits.open(b) as h:
        assert h[0].header["INTSTART"] == 1 and h[0].header["INTEND"] == 8 and "CAL_VER" in h[0].header
        assert h[-1].name == "ASDF" and [x.name for x in h[2:-1]] == ["EXTRACT1D"] * 8


def test_chromatic_reads_the_per_integration_layout(small, tmp_path):
    chromatic = pytest.importorskip("chromatic")
    path = tmp_path / "grism_x1dints.fits"
    run_spectra(small["rateints"], path, layout="per-integration", progress=False)
    rainbow = chromatic.read_rainbow(str(path), format="x1dints")
    with fits.open(path) as h:
        flux = np.stack([h[2 + i].data["FLUX"] for i in range(8)], axis=1)
        bjd = h["INT_TIMES"].data["int_mid_BJD_TDB"]
    assert rainbow.flux.shape == (2048, 8)
    np.testing.assert_array_equal(np.asarray(rainbow.flux), flux)
    np.testing.assert_allclose(np.asarray(rainbow.wavelength.to_value("um")), h_wave(path), rtol=1e-12)
    assert np.allclose(rainbow.time.to_value("d") - 2400000.5, bjd) or np.allclose(rainbow.time.to_value("d"), bjd)


def h_wave(path):
    with fits.open(path) as h:
        return h[2].data["WAVELENGTH"]


def test_tables_read_with_astropy(small, tmp_path):
    out = run_spectra(small["rateints"], tmp_path / "x.fits", white_light=tmp_path / "w.ecsv",
                      lightcurves=tmp_path / "lc.fits", bin_width_um=0.25, noise_report=tmp_path / "n.ecsv",
                      noise_max_width=16, plot=True, trace_table=tmp_path / "t.ecsv", progress=False)
    w = Table.read(tmp_path / "w.ecsv")
    assert w.colnames == ["MJD_UTC", "BJD_TDB", "whitelight_flux", "whitelight_flux_err"] and len(w) == 8
    assert np.all(w["whitelight_flux_err"] > 0) and str(w["whitelight_flux"].unit).replace(" ", "") == "DN/s"
    t = Table.read(tmp_path / "lc.fits")
    assert {"INT_NUM", "WAVE_MID", "FLUX", "FLUX_ERR", "BIN"} <= set(t.colnames)
    assert len(t) == 8 * t.meta["NBINS"] and np.all(t["NCOLS"] >= 10)
    n = Table.read(tmp_path / "n.ecsv")
    assert list(n["WIDTH"]) == list(range(1, 17)) and n["RATIO"][0] == pytest.approx(1.0)
    assert (tmp_path / "n.png").stat().st_size > 1000
    assert len(Table.read(tmp_path / "t.ecsv")) == 8
    assert out["failed_integrations"] == 0


def test_spectra_of_a_widened_cutout(small, tmp_path):
    cut = tmp_path / "cut.fits"
    assert CliRunner().invoke(main, ["widen-cutout", str(small["rateints"]), "-o", str(cut), "-q"]).exit_code == 0
    a = run_spectra(cut, tmp_path / "a.fits", progress=False)
    b = run_spectra(small["calints"], tmp_path / "b.fits", progress=False)
    assert a["wavelengths"] == "WAVELENGTH extension" == b["wavelengths"]
    fa, fb = fits.getdata(tmp_path / "a.fits", "EXTRACT1D")["FLUX"], fits.getdata(tmp_path / "b.fits", "EXTRACT1D")["FLUX"]
    np.testing.assert_allclose(np.nanmedian(fa[:, 500:1500]), np.nanmedian(fb[:, 500:1500]), rtol=1e-3)


# ==================================================================== command line
def test_cli_runs_and_reports_json(small, tmp_path):
    out = tmp_path / "c_x1dints.fits"
    res = CliRunner().invoke(main, ["spectra", str(small["rateints"]), "-o", str(out), "--method", "box",
                                    "--background", "poly", "--json"])
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["nints"] == 8 and summary["method"] == "box" and summary["failed_integrations"] == 0
    with fits.open(out) as h:
        assert h[0].header["S_TSOSPC"] == "COMPLETE" and h[0].header["S_EXTR1D"] == "COMPLETE"


@pytest.mark.parametrize("extra, message", [
    (["--lightcurves", "lc.ecsv"], "needs --bins"),
    (["--bins", "3", "--bin-width", "0.1"], "not both"),
    (["--halfwidth", "12", "--method", "box"], "bkg_inner_px"),
    (["--wave-range", "4,3"], "--wave-range"),
])
def test_bad_options_fail_in_one_line(small, tmp_path, extra, message):
    res = CliRunner().invoke(main, ["spectra", str(small["rateints"]), "-o", str(tmp_path / "x.fits")] + extra)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_imaging_input_is_refused(simulated, tmp_path):
    img = simulated("imaging", seed=0, nints=3)
    res = CliRunner().invoke(main, ["spectra", str(img["rateints"]), "-o", str(tmp_path / "x.fits")])
    assert res.exit_code == 2 and "grism" in res.stderr


def test_help():
    res = CliRunner().invoke(main, ["spectra", "-h"])
    assert res.exit_code == 0 and "Example:" in res.output and "--noise-report" in res.output
