"""tsotools widen-cutout: pixels, SlitModel keywords and wavelengths on simulated SUBGRISM256 data."""

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from conftest import sha256

from tsotools.cli import main

SIM = dict(seed=21, nints=4, ngroups=2, subarray="SUBGRISM256")


@pytest.fixture(scope="module")
def sim256(simulated):
    return simulated("grism", **SIM)


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("height, rows", [(64, (2, 65)), (128, (0, 127)), (256, (0, 255)), (None, (0, 255))])
def test_heights_pixels_and_keywords(sim256, tmp_path, height, rows):
    from stdatamodels.jwst import datamodels

    src = sim256["rateints"]
    before = sha256(src)
    out = tmp_path / "cut.fits"
    args = ["widen-cutout", str(src), "-o", str(out), "-q"] + (["--height", str(height)] if height else [])
    res = run(args)
    assert res.exit_code == 0, res.output
    assert sha256(src) == before
    y0, y1 = rows
    h = y1 - y0 + 1
    with fits.open(src) as s, fits.open(out) as c:
        for name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
            got, want = c[name].data, np.ascontiguousarray(s[name].data[:, y0 : y1 + 1])
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name  # bit-identical, NaN too
        hdr = c["SCI"].header
        assert (hdr["SLTSTRT1"], hdr["SLTSIZE1"], hdr["SLTSTRT2"], hdr["SLTSIZE2"]) == (1, 2048, y0 + 1, h)
        assert hdr["YREF_SCI"] == s["SCI"].header["YREF_SCI"] - y0
        assert hdr["XREF_SCI"] == s["SCI"].header["XREF_SCI"]
        assert hdr["SRCYPOS"] == s["SCI"].header["YREF_SCI"] - 1 - y0
        assert c[0].header["S_EXTR2D"] == "COMPLETE" and c[0].header["S_WIDCUT"] == "COMPLETE"
    with datamodels.open(out) as m:
        assert type(m).__name__ == "SlitModel"
        assert m.data.shape == (SIM["nints"], h, 2048) and m.wavelength.shape == (h, 2048)
        assert (m.ystart, m.ysize) == (y0 + 1, h)
        assert len(m.int_times) == SIM["nints"]
        # the trace (truth row 34 at XREF) is centred when the cutout fits
        if h == 64:
            assert abs(m.source_ypos - 32) <= 1


def test_clamp_warns_and_given_center(sim256, tmp_path):
    out = tmp_path / "c.fits"
    res = CliRunner().invoke(main, ["widen-cutout", str(sim256["rateints"]), "-o", str(out), "--height", "64",
                                    "--center", "240", "--json"])
    assert res.exit_code == 0
    assert "moved" in res.stderr
    import json

    summary = json.loads(res.stdout)
    assert summary["rows"] == [192, 255] and summary["clamped"] is True and summary["center_from"] == "given"


def test_wavelengths_reused_exactly_from_a_pipeline_cutout(sim256, tmp_path):
    out = tmp_path / "w.fits"
    res = run(["widen-cutout", str(sim256["rateints"]), "-o", str(out), "--height", "128", "-q",
               "--wavelengths-from", str(sim256["calints"])])
    assert res.exit_code == 0
    ref = fits.getdata(sim256["calints"], "WAVELENGTH")
    got = fits.getdata(out, "WAVELENGTH")
    assert np.array_equal(got[:64], ref)  # rows 0-63 lie in the pipeline cutout: bit-identical
    assert np.array_equal(got[64:], np.broadcast_to(ref[-1], (64, 2048)))  # beyond it: the nearest row


def test_polynomial_wavelengths_by_default(sim256, tmp_path):
    from tsotools.algorithms.wavelengths import grismr_wavelength

    out = tmp_path / "p.fits"
    assert run(["widen-cutout", str(sim256["rateints"]), "-o", str(out), "--height", "64", "-q"]).exit_code == 0
    got = fits.getdata(out, "WAVELENGTH")
    np.testing.assert_allclose(got[10], grismr_wavelength(np.arange(2048), "F322W2"), rtol=1e-6)


@pytest.mark.parametrize("extra, message", [(["--height", "300"], "does not fit"),
                                            (["--center", "999"], "outside the subarray")])
def test_impossible_requests_fail_in_one_line(sim256, tmp_path, extra, message):
    out = tmp_path / "x.fits"
    res = CliRunner().invoke(main, ["widen-cutout", str(sim256["rateints"]), "-o", str(out)] + extra)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_cutout_is_refused(sim256, tmp_path):
    res = CliRunner().invoke(main, ["widen-cutout", str(sim256["calints"]), "-o", str(tmp_path / "y.fits")])
    assert res.exit_code == 2 and "already a cutout" in res.stderr


def test_help():
    res = run(["widen-cutout", "-h"])
    assert res.exit_code == 0 and "Example:" in res.output and "--wavelengths-from" in res.output
