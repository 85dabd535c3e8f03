"""Hypothesis-made headers and shapes through every subcommand: never an unhandled exception.

Each example takes a valid small simulated product, sets, removes or garbles a few of the
keywords the commands read (or cuts integrations from SCI only), and runs the command.
It must succeed or fail in one line of ours with exit 1 or 2, leave no output when it
fails and never change its input.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from conftest import sha256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsotools.cli import main

COMMANDS = {
    "oneoverf": ("grism_ramp", ".fits"),
    "rejump": ("grism_ramp", ".fits"),
    "rampfit": ("grism_ramp", ".fits"),
    "widen-cutout": ("grism_rateints", ".fits"),
    "spectra": ("grism_rateints", ".fits"),
    "centroid": ("imaging_rateints", ".ecsv"),
    "photometry": ("imaging_rateints", ".ecsv"),
    "jitter-from-guidestar": ("guider_cal", ".fits"),
    "info": ("grism_ramp", None),
}
KEYWORDS = ["NINTS", "NGROUPS", "INTSTART", "INTEND", "NOUTPUTS", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1",
            "SUBSIZE2", "XREF_SCI", "YREF_SCI", "TFRAME", "TGROUP", "NFRAMES", "GROUPGAP", "FILTER", "PUPIL",
            "SUBARRAY", "DETECTOR", "EXP_TYPE", "FASTAXIS", "SLOWAXIS", "EXPSTART", "BUNIT", "SLTSTRT2"]
DELETE = object()
values = st.one_of(
    st.just(DELETE),
    st.integers(-3, 5000),
    st.sampled_from([0, 1, 2, 4, 64, 2048, 2**31 - 1]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["", "FULL", "SUBGRISM64", "NRCALONG", "NRCA3", "NRC_TSGRISM", "CLEAR", "GRISMR", "F322W2",
                     "WLP8", "DN/s", "garbage"]),
    st.booleans(),
)
edits = st.dictionaries(st.sampled_from(KEYWORDS), values, min_size=1, max_size=4)


@pytest.fixture(scope="module")
def valid(simulated):
    grism = simulated("grism", seed=31, nints=3, ngroups=3)
    imaging = simulated("imaging", seed=32, nints=3, ngroups=2, subarray="SUB160P")
    guider = simulated("guider", seed=33, nints=3, ngroups=2)
    return {"grism_ramp": grism["ramp"], "grism_rateints": grism["rateints"],
            "imaging_rateints": imaging["rateints"], "guider_cal": guider["gs-fg_1"]}


def _mutate(src, dst, changes, cut):
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    for key, value in changes.items():
        for hdu in hdul:
            if value is DELETE:
                hdu.header.remove(key, ignore_missing=True, remove_all=True)
            elif key in hdu.header or hdu is hdul[0]:
                if isinstance(value, float) and not np.isfinite(value):
                    value = str(value)  # FITS cannot hold NaN/inf values: a string where a number belongs
                hdu.header[key] = value
    if cut and "SCI" in hdul and hdul["SCI"].data is not None and hdul["SCI"].data.shape[0] > cut:
        hdul["SCI"].data = hdul["SCI"].data[:-cut].copy()
    hdul.writeto(dst, output_verify="silentfix+ignore")


@pytest.mark.parametrize("command", list(COMMANDS))
@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", 12)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=edits, cut=st.sampled_from([0, 0, 0, 1]))
def test_commands_never_raise_on_fuzzed_headers(command, valid, changes, cut):
    kind, suffix = COMMANDS[command]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "in.fits"
        _mutate(valid[kind], src, changes, cut)
        before = sha256(src)
        args = [command, str(src)]
        out = tmp / f"out{suffix}" if suffix else None
        if out is not None:
            args += ["-o", str(out)]
        result = CliRunner().invoke(main, args)
        assert "Traceback" not in result.output and "internal error" not in result.output, (changes, result.output)
        assert result.exit_code in (0, 1, 2), (changes, result.output)
        if result.exit_code:
            assert result.output.count("tsotools: error:") == 1, result.output
            assert out is None or not out.exists()
        assert sha256(src) == before
        assert not [p for p in tmp.iterdir() if ".part" in p.name]
        shutil.rmtree(tmp, ignore_errors=True)
