"""``tsotools rampfit`` on simulated ramps: rates against the truth with the written variances."""

import json
import warnings

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from conftest import sha256
from stdatamodels.jwst import datamodels as dm

from tsotools import dqflags
from tsotools.cli import main

GAIN, RN = "1.8", "14.142136"  # the simulator's gain (e-/DN) and CDS read noise (DN)


@pytest.fixture(scope="module")
def fitted(simulated, module_tmp):
    """rejump (temporal, 5 sigma) then rampfit of the default simulated grism ramp."""
    paths = simulated("grism", seed=0)
    tmp = module_tmp.mktemp("rampfit")
    jumped, rateints = tmp / "jump_ramp.fits", tmp / "rateints.fits"
    run = CliRunner().invoke
    res = run(
        main,
        ["rejump", str(paths["ramp"]), "-o", str(jumped), "--gain", GAIN, "--readnoise", RN, "-q"],
    )
    assert res.exit_code == 0, res.output
    before = sha256(jumped)
    res = run(
        main,
        ["rampfit", str(jumped), "-o", str(rateints), "--gain", GAIN, "--readnoise", RN, "--json"],
    )
    assert res.exit_code == 0, res.output
    assert sha256(jumped) == before
    return {
        "ramp": jumped,
        "rateints": rateints,
        "truth": paths["truth"],
        "summary": json.loads(res.stdout),
        "sim_rateints": paths["rateints"],
    }


def test_rates_match_truth_with_written_variances(fitted):
    """Acceptance 4: chi^2/dof of (rate - truth) / ERR in 0.9-1.1 on the light-sensitive pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(str(fitted["rateints"])) as model, fits.open(fitted["truth"]) as truth:
            rate, err = model.data, model.err
            # the ramp still holds the injected 1/f; its slope per integration is known exactly
            expected = truth["RATE"].data + truth["ONEOVERF_RATE"].data
            light = np.broadcast_to(truth["RATE"].data.min(axis=0) > 0, rate.shape)
            np.testing.assert_allclose(err**2, model.var_poisson + model.var_rnoise, rtol=1e-5)
    chi = (rate - expected) / err
    ok = light & np.isfinite(chi)
    assert ok.sum() > 0.99 * light.sum()
    chi2 = float(np.mean(chi[ok] ** 2))
    bright = ok & (expected > 1000)
    chi2_bright = float(np.mean(chi[bright] ** 2))
    print(
        f"chi2/dof = {chi2:.4f} over {ok.sum()} pixel-integrations; "
        f"{chi2_bright:.4f} over {bright.sum()} "
        "brighter than 1000 DN/s"
    )
    assert 0.9 <= chi2 <= 1.1
    assert 0.9 <= chi2_bright <= 1.1


def test_output_is_a_cube_model_with_the_ramps_metadata(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(str(fitted["rateints"])) as model, dm.open(str(fitted["ramp"])) as ramp:
            assert type(model) is dm.CubeModel
            assert model.data.shape == (20, 64, 2048) and model.dq.dtype == np.uint32
            assert len(model.int_times) == len(ramp.int_times) == 20
            assert model.meta.exposure.nints == 20 and model.meta.subarray.name == "SUBGRISM64"
            assert model.meta.instrument.detector == "NRCALONG"
            jumps = (ramp.groupdq & dqflags.JUMP_DET).any(axis=1)
            np.testing.assert_array_equal((model.dq & dqflags.JUMP_DET) != 0, jumps)
            assert (model.dq[:, 0, 0] & dqflags.REFERENCE_PIXEL).all()
    sci = fits.getheader(fitted["rateints"], "SCI")
    assert sci["BUNIT"] == "DN/s" and sci["XREF_SCI"] == 1572.0
    hdr = fits.getheader(fitted["rateints"])
    assert hdr["S_RAMPFT"] == "COMPLETE" and "gain=1.8" in "".join(str(h) for h in hdr["HISTORY"])
    assert fitted["summary"]["failed_integrations"] == [] and fitted["summary"]["nints"] == 20


def test_same_rates_as_the_simulators_ideal_fit_away_from_jumps(fitted):
    """Without jumps both are the OLS slope of the same groups: they agree to float32 rounding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(str(fitted["rateints"])) as mine, dm.open(str(fitted["sim_rateints"])) as sim:
            clear = ((mine.dq | sim.dq) & (dqflags.JUMP_DET | dqflags.DO_NOT_USE)) == 0
            np.testing.assert_allclose(mine.data[clear], sim.data[clear], rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(mine.var_rnoise[clear], sim.var_rnoise[clear], rtol=1e-4)


def test_warns_without_jump_flags_and_refuses_other_products(simulated, tmp_path):
    paths = simulated("grism", seed=0)
    res = CliRunner().invoke(main, ["rampfit", str(paths["ramp"]), "-o", str(tmp_path / "r.fits")])
    assert res.exit_code == 0
    assert "no jump flags" in res.stderr and "no --gain given" in res.stderr
    res = CliRunner().invoke(
        main, ["rampfit", str(paths["rateints"]), "-o", str(tmp_path / "s.fits")]
    )
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1].startswith("tsotools: error:")
    res = CliRunner().invoke(main, ["rampfit", str(paths["ramp"]), "-o", str(tmp_path / "r.fits")])
    assert res.exit_code == 2 and "exists" in res.stderr
    res = CliRunner().invoke(
        main, ["rampfit", str(paths["ramp"]), "-o", str(tmp_path / "t.fits"), "--gain", "x"]
    )
    assert res.exit_code == 2 and "--gain" in res.stderr


def test_help():
    res = CliRunner().invoke(main, ["rampfit", "-h"])
    assert res.exit_code == 0 and "Example:" in res.output and "--readnoise" in res.output
