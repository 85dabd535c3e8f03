"""Bad input to every subcommand: one clear line and exit 2, or a result with a warning.

Never a traceback, never a partial output, never a changed input. Each case starts from a
valid simulated product and breaks one thing with astropy.
"""

import re
import shutil

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from conftest import sha256

from tsotools.cli import main

# command -> (kind of valid input, output suffix, extra arguments)
COMMANDS = {
    "oneoverf": ("grism_ramp", ".fits", []),
    "rejump": ("grism_ramp", ".fits", []),
    "rampfit": ("grism_ramp", ".fits", []),
    "widen-cutout": ("grism_rateints", ".fits", []),
    "spectra": ("grism_rateints", ".fits", []),
    "centroid": ("imaging_rateints", ".ecsv", []),
    "photometry": ("imaging_rateints", ".ecsv", []),
    "jitter-from-guidestar": ("guider_cal", ".fits", []),
}


# ----------------------------------------------------------------------------- mutators
def not_fits(src, dst):
    dst.write_text("SIMPLE = this is not a FITS file\n" * 10)


def truncated(src, dst):
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])


def empty_file(src, dst):
    dst.write_bytes(b"")


def _edit(src, dst, func):
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    func(hdul)
    hdul.writeto(dst, overwrite=True, output_verify="silentfix+ignore")


def drop_ext(name):
    def mutate(src, dst):
        _edit(src, dst, lambda h: h.pop(h.index_of(name)) if name in h else None)

    mutate.__name__ = f"no_{name.lower()}"
    return mutate


def drop_key(key, ext=0):
    def mutate(src, dst):
        def f(h):
            for hdu in h:
                hdu.header.remove(key, ignore_missing=True, remove_all=True)

        _edit(src, dst, f)

    mutate.__name__ = f"no_{key.lower()}"
    return mutate


def nints_mismatch(src, dst):
    def f(h):
        h[0].header["NINTS"] = int(h["SCI"].data.shape[0]) + 7
        h[0].header["INTEND"] = int(h[0].header.get("INTSTART", 1)) + int(h["SCI"].data.shape[0]) + 6

    _edit(src, dst, f)


def ngroups_mismatch(src, dst):
    _edit(src, dst, lambda h: h[0].header.__setitem__("NGROUPS", 99))


def all_nan_integration(src, dst):
    def f(h):
        data = h["SCI"].data.astype(np.float32)
        data[1] = np.nan
        h["SCI"].data = data

    _edit(src, dst, f)


def single_integration(src, dst):
    def f(h):
        for hdu in h:
            if hdu.name in ("SCI", "ERR", "DQ", "GROUPDQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT") \
                    and hdu.data is not None and hdu.data.ndim >= 3:
                hdu.data = hdu.data[:1].copy()
        h[0].header["NINTS"] = 1
        h[0].header["INTEND"] = h[0].header.get("INTSTART", 1)

    _edit(src, dst, f)


def ngroups(n):
    def mutate(src, dst):
        def f(h):
            h["SCI"].data = h["SCI"].data[:, :n].copy()
            if "GROUPDQ" in h:
                h["GROUPDQ"].data = h["GROUPDQ"].data[:, :n].copy()
            h[0].header["NGROUPS"] = n

        _edit(src, dst, f)

    mutate.__name__ = f"ngroups_{n}"
    return mutate


def as_uncal(src, dst):
    def f(h):
        h["SCI"].data = np.clip(h["SCI"].data + 1000, 0, 65535).astype(np.uint16)
        h[0].header["DATAMODL"] = "Level1bModel"
        h.pop(h.index_of("GROUPDQ"))

    _edit(src, dst, f)


def other_kind(kind):
    def mutate(src, dst, _kind=kind):
        shutil.copyfile(_kind, dst)

    return mutate


def guider_nan_frames(src, dst):
    def f(h):
        data = h["SCI"].data.astype(np.float32)
        data[: data.shape[0] // 2] = np.nan
        h["SCI"].data = data
        h.pop(h.index_of("FGS CENTROID PACKET"))

    _edit(src, dst, f)


COMMON = [not_fits, truncated, empty_file, drop_key("NOUTPUTS"), drop_key("SUBSTRT1"), drop_ext("INT_TIMES"),
          nints_mismatch, all_nan_integration, single_integration]
SPECIFIC = {
    "oneoverf": [ngroups_mismatch, as_uncal],
    "rejump": [ngroups_mismatch, ngroups(1), ngroups(2), as_uncal],
    "rampfit": [ngroups(1), ngroups(2), as_uncal],
    "widen-cutout": [drop_key("XREF_SCI"), drop_key("SUBSIZE2")],
    "spectra": [drop_key("XREF_SCI")],
    "centroid": [drop_key("XREF_SCI"), drop_key("YREF_SCI")],
    "photometry": [drop_key("XREF_SCI"), drop_key("YREF_SCI")],
    "jitter-from-guidestar": [not_fits, truncated, empty_file, drop_ext("Pointing"), drop_ext("SCI"),
                              guider_nan_frames],
}
# products of the wrong kind for each command (x1dints to oneoverf, a ramp to photometry, ...)
WRONG_KIND = {
    "oneoverf": ["guider_cal", "grism_x1dints"],
    "rejump": ["grism_rateints", "grism_x1dints"],
    "rampfit": ["imaging_rateints", "grism_x1dints"],
    "widen-cutout": ["grism_ramp", "grism_x1dints"],
    "spectra": ["grism_ramp", "grism_x1dints"],
    "centroid": ["grism_ramp", "guider_cal"],
    "photometry": ["grism_ramp", "grism_x1dints"],
    "jitter-from-guidestar": ["grism_rateints", "grism_x1dints"],
}
# a run that succeeds on these must say why its result is limited (regex on its output)
WARNS = {
    "all_nan_integration": r"no valid pixels",
    "ngroups_2": r"2 groups",
    "ngroups_1": r"1 group",
    "no_int_times": r"INT_TIMES",
    "guider_nan_frames": r"without a position",
}
# ramps do not need INT_TIMES (no times are written); these commands pass the times on
NEEDS_TIMES = {"spectra", "centroid", "photometry"}

CASES = []
for command in COMMANDS:
    mutators = SPECIFIC[command] + ([] if command == "jitter-from-guidestar" else COMMON)
    for mutate in mutators:
        CASES.append((command, mutate.__name__, mutate))
    for kind in WRONG_KIND[command]:
        CASES.append((command, f"wrong_kind_{kind}", kind))


@pytest.fixture(scope="module")
def valid(simulated, module_tmp):
    from tsotools.steps.spectra import run_spectra

    grism = simulated("grism", seed=11, nints=4, ngroups=4, cosmic_rays=True)
    imaging = simulated("imaging", seed=12, nints=4, ngroups=3, subarray="SUB160P")
    guider = simulated("guider", seed=13, nints=4, ngroups=3)
    x1d = module_tmp.mktemp("x1d") / "x1dints.fits"
    run_spectra(grism["rateints"], x1d, progress=False)
    return {
        "grism_ramp": grism["ramp"],
        "grism_rateints": grism["rateints"],
        "grism_x1dints": x1d,
        "imaging_rateints": imaging["rateints"],
        "guider_cal": guider["gs-fg_1"],
    }


def _opens(path):
    from stdatamodels.jwst import datamodels

    try:
        with datamodels.open(path):
            return True
    except Exception:
        return False


def _output_opens(path):
    if path.suffix == ".ecsv":
        from astropy.table import Table

        assert len(Table.read(path)) > 0
    elif path.name.endswith(".fits"):
        from stdatamodels.jwst import datamodels

        with datamodels.open(path) as model:
            assert model.__class__.__name__ != "DataModel"


@pytest.mark.parametrize("command, case, mutate", CASES, ids=[f"{c}-{n}" for c, n, _ in CASES])
def test_bad_input(command, case, mutate, valid, tmp_path):
    kind, suffix, extra = COMMANDS[command]
    src = tmp_path / "in.fits"
    if isinstance(mutate, str):
        shutil.copyfile(valid[mutate], src)
    else:
        mutate(valid[kind], src)
    before = sha256(src)
    out = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(main, [command, str(src), "-o", str(out), *extra], catch_exceptions=True)
    text = result.output
    assert "Traceback" not in text and "internal error" not in text, text
    assert result.exit_code in (0, 2), f"exit {result.exit_code}: {text}"
    if result.exit_code == 2:
        errors = [line for line in text.splitlines() if line.startswith("tsotools: error:")]
        assert len(errors) == 1, text  # one line of ours, not a click usage error
        assert "in.fits" in errors[0] or "no output" in errors[0], errors[0]  # names what was wrong
        assert not out.exists(), "a failed run left an output file"
    else:
        if _opens(src):  # a mutation that breaks the input's ASDF tree breaks the output's too
            _output_opens(out)
        want = WARNS.get(case)
        if case == "no_int_times" and command not in NEEDS_TIMES:
            want = None
        if want:
            assert re.search(want, text), f"no warning matching {want!r}: {text}"
    assert not list(tmp_path.glob(".out*")), "a temporary file was left behind"
    assert sha256(src) == before, "the input was modified"
    if case.startswith("wrong_kind"):
        assert result.exit_code == 2


def test_uncal_names_the_pipeline_steps_to_run_first(valid, tmp_path):
    src = tmp_path / "in.fits"
    as_uncal(valid["grism_ramp"], src)
    for command in ("oneoverf", "rejump", "rampfit"):
        result = CliRunner().invoke(main, [command, str(src), "-o", str(tmp_path / "o.fits")])
        assert result.exit_code == 2
        assert "superbias" in result.output, result.output


def test_jitter_science_without_int_times_is_refused_in_one_line(valid, tmp_path):
    sci = tmp_path / "sci.fits"
    drop_ext("INT_TIMES")(valid["imaging_rateints"], sci)
    out = tmp_path / "j.fits"
    result = CliRunner().invoke(main, ["jitter-from-guidestar", str(valid["guider_cal"]), "--science", str(sci),
                                       "-o", str(out)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    if result.exit_code == 2:
        assert not out.exists() and "INT_TIMES" in result.output
    else:
        assert "INT_TIMES" in result.output
