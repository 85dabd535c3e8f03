"""Unattended use: full disks, killed runs, reruns, parallel runs, exit codes, --quiet, big inputs.

Every subcommand runs on small simulated products. A run that cannot finish must leave no
output (and no temporary file) and one clear line; a rerun must then succeed and give the
same data as any other run with the same inputs and options.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from conftest import sha256

from tsotools.cli import main

# command -> (input kind, output suffix, extra options)
COMMANDS = {
    "oneoverf": ("grism_ramp", ".fits", []),
    "rejump": ("grism_ramp", ".fits", []),
    "rampfit": ("grism_ramp", ".fits", []),
    "widen-cutout": ("grism_rateints", ".fits", ["--height", "128"]),
    "spectra": ("grism_rateints", ".fits", ["--white-light", "{tmp}/wl.ecsv"]),
    "centroid": ("imaging_rateints", ".ecsv", []),
    "photometry": ("imaging_rateints", ".ecsv", []),
    "jitter-from-guidestar": ("guider_cal", ".fits", ["--science", "{guider_rateints}"]),
}


@pytest.fixture(scope="module")
def inputs(simulated):
    grism = simulated("grism", seed=21, nints=6, ngroups=4, subarray="SUBGRISM128")
    imaging = simulated("imaging", seed=22, nints=6, ngroups=3, subarray="SUB160P")
    guider = simulated("guider", seed=23, nints=4, ngroups=3)
    return {
        "grism_ramp": grism["ramp"],
        "grism_rateints": grism["rateints"],
        "imaging_rateints": imaging["rateints"],
        "guider_cal": guider["gs-fg_1"],
        "guider_rateints": guider["rateints"],
    }


def _args(command, inputs, out, tmp):
    kind, _, extra = COMMANDS[command]
    extra = [a.format(tmp=tmp, **{k: str(v) for k, v in inputs.items()}) for a in extra]
    return [command, str(inputs[kind]), "-o", str(out), *extra]


def _data(path):
    """Every data array and table of an output, for comparing runs (headers hold dates)."""
    path = Path(path)
    if path.suffix == ".ecsv":
        tab = Table.read(path)
        return {name: np.asarray(tab[name]) for name in tab.colnames}
    arrays = {}
    with fits.open(path) as hdul:
        for k, hdu in enumerate(hdul):
            if hdu.data is None or hdu.name == "ASDF":
                continue
            data = hdu.data
            if isinstance(hdu, fits.BinTableHDU):
                for name in data.names:
                    arrays[f"{k}:{hdu.name}:{name}"] = np.array(data[name])
            else:
                arrays[f"{k}:{hdu.name}"] = np.array(data)
    return arrays


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if x.dtype.kind in "fc":
            np.testing.assert_array_equal(x, y, err_msg=key)  # NaN == NaN here
        else:
            assert np.array_equal(x, y), key


def _leftovers(directory):
    return [p.name for p in Path(directory).iterdir() if ".part" in p.name]


class _FileSizeLimit:
    """Make every write past ``nbytes`` fail with EFBIG in this process, like a full disk.

    Python ignores SIGXFSZ, so the write raises OSError instead of killing the process.
    """

    def __init__(self, nbytes):
        self.nbytes = nbytes

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.nbytes, self.saved[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_full_disk_rerun_and_determinism(command, inputs, tmp_path):
    """A write that runs out of space leaves nothing; reruns give identical data."""
    before = {k: sha256(p) for k, p in inputs.items()}
    first = tmp_path / f"first{COMMANDS[command][1]}"
    result = CliRunner().invoke(main, _args(command, inputs, first, tmp_path))
    assert result.exit_code == 0, result.output
    size = first.stat().st_size

    out = tmp_path / f"out{COMMANDS[command][1]}"
    with _FileSizeLimit(size // 2):
        result = CliRunner().invoke(main, _args(command, inputs, out, tmp_path) + ["--overwrite"])
    errors = [line for line in result.output.splitlines() if line.startswith("tsotools: error:")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and ("too large" in errors[0].lower() or "space" in errors[0].lower()), errors
    assert "Traceback" not in result.output
    assert not out.exists() and _leftovers(tmp_path) == []

    result = CliRunner().invoke(main, _args(command, inputs, out, tmp_path) + ["--overwrite"])
    assert result.exit_code == 0, result.output
    _same(_data(first), _data(out))
    assert {k: sha256(p) for k, p in inputs.items()} == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_quiet_prints_nothing_on_success(command, inputs, tmp_path):
    result = CliRunner().invoke(main, _args(command, inputs, tmp_path / f"q{COMMANDS[command][1]}", tmp_path)
                                + ["--quiet"])
    assert result.exit_code == 0
    assert result.output == ""


def test_exit_codes_are_0_1_2_and_documented(inputs, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["info", str(inputs["grism_ramp"])])
    usage = runner.invoke(main, ["oneoverf", str(inputs["grism_ramp"])])  # no -o
    bad = runner.invoke(main, ["oneoverf", str(inputs["imaging_rateints"].with_name("nothing.fits")), "-o", "x"])
    wrong = runner.invoke(main, ["rejump", str(inputs["grism_rateints"]), "-o", str(tmp_path / "x.fits")])
    exists = runner.invoke(main, ["oneoverf", str(inputs["grism_ramp"]), "-o", str(inputs["grism_rateints"])])
    with _FileSizeLimit(4096):
        failed = runner.invoke(main, ["oneoverf", str(inputs["grism_ramp"]), "-o", str(tmp_path / "y.fits")])
    assert [r.exit_code for r in (ok, usage, bad, wrong, exists, failed)] == [0, 2, 2, 2, 2, 1]
    assert "Exit status: 0 success, 1 processing failure, 2 bad input or usage" in " ".join(
        runner.invoke(main, ["--help"]).output.split())
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "Exit status" in readme or "exit code" in readme.lower()


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "tsotools.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_sigkill_mid_write_leaves_no_output_and_a_rerun_succeeds(simulated, tmp_path):
    ramp = simulated("grism", truth=False, seed=24, nints=16, ngroups=5, subarray="SUBGRISM128")["ramp"]
    before = sha256(ramp)
    out = tmp_path / "killed.fits"
    proc = _cli("oneoverf", ramp, "-o", out, "--quiet")
    deadline = time.monotonic() + 120
    while not _leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed; make the input bigger"
    time.sleep(0.2)  # well into the write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert sha256(ramp) == before
    rerun = _cli("oneoverf", ramp, "-o", out, "--json")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout)["output"] == str(out) or "killed.fits" in stdout
    assert _leftovers(tmp_path) == []  # the killed run's temporary file was cleared
    with fits.open(out) as hdul:
        assert hdul["SCI"].data.shape[0] == 16


def test_parallel_runs_on_one_input_into_different_outputs(inputs, tmp_path):
    ramp = inputs["grism_ramp"]
    procs = [_cli("oneoverf", ramp, "-o", tmp_path / f"p{k}.fits", "--quiet") for k in range(2)]
    procs.append(_cli("rejump", ramp, "-o", tmp_path / "r.fits", "--quiet"))
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    _same(_data(tmp_path / "p0.fits"), _data(tmp_path / "p1.fits"))
    assert _leftovers(tmp_path) == []


def test_simulate_is_deterministic(tmp_path):
    args = ["simulate", "imaging", "--seed", "5", "--nints", "3", "--ngroups", "2", "--subarray", "SUB64P"]
    for k in range(2):
        result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / f"run{k}"), "--quiet"])
        assert result.exit_code == 0, result.output
    for name in ("imaging_rateints.fits", "imaging_ramp.fits", "imaging_truth.fits"):
        _same(_data(tmp_path / "run0" / name), _data(tmp_path / "run1" / name))


# A sparse file larger than this machine's memory: headers of a real ramp, SCI and
# GROUPDQ of 1200 integrations that occupy no disk. Reading it integration by integration
# must keep the process small; loading it whole would be killed or swap.
_BIG_READER = textwrap.dedent("""
    import sys
    from tsotools import io
    with io.open_product(sys.argv[1], expect=("ramp",)) as prod:
        for i in (0, prod.nints // 2, prod.nints - 1):
            assert prod.read("SCI", i).shape == prod.info.shape[1:]
        block = io.read_row_block(prod, "GROUPDQ", 0, 1)
        nints = prod.nints
    with open("/proc/self/status") as fh:
        peak = [int(line.split()[1]) for line in fh if line.startswith("VmHWM:")][0]
    print(nints, block.shape[0], peak // 1024)
""")


def _sparse_ramp(template, path, nints):
    """Copy ``template``'s HDUs byte for byte, with SCI and GROUPDQ grown to ``nints`` as holes."""
    with fits.open(template) as hdul, open(template, "rb") as src, open(path, "wb") as fh:
        for k, hdu in enumerate(hdul):
            info = hdul.fileinfo(k)
            hdr = hdu.header.copy()
            if hdu.name in ("INT_TIMES", "ASDF"):
                continue  # a ramp needs neither; the ASDF tree would describe the small file
            if k == 0:
                hdr["NINTS"], hdr["INTEND"] = nints, nints
            if hdu.name in ("SCI", "GROUPDQ"):
                hdr["NAXIS4"] = nints
                nbytes = nints * int(np.prod(hdu.data.shape[1:])) * abs(hdr["BITPIX"]) // 8
                fh.write(hdr.tostring().encode())
                fh.seek(nbytes + (-nbytes) % 2880, os.SEEK_CUR)  # a hole: no disk used
                continue
            fh.write(hdr.tostring().encode())
            src.seek(info["datLoc"])
            span = info["datSpan"]
            fh.write(src.read(span + (-span) % 2880))
        fh.truncate(fh.tell())


def test_an_input_larger_than_memory_is_never_loaded_whole(simulated, tmp_path):
    template = simulated("grism", truth=False, seed=25, nints=2, ngroups=10, subarray="SUBGRISM256")["ramp"]
    big = tmp_path / "big_ramp.fits"
    nints = 1200  # 1200 x 10 x 256 x 2048 float32 = 25.2 GB of SCI, more than this machine's RAM
    _sparse_ramp(template, big, nints)
    assert big.stat().st_size > 25e9
    if os.stat(big).st_blocks * 512 > 1e9:
        pytest.skip("this filesystem does not keep holes in files")
    result = subprocess.run([sys.executable, "-c", _BIG_READER, str(big)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    got_nints, block_nints, peak_mb = map(int, result.stdout.split())
    assert got_nints == block_nints == nints
    print(f"25 GB sparse ramp: peak RSS {peak_mb} MB")
    assert peak_mb < 300
    info = CliRunner().invoke(main, ["info", str(big), "--json"])
    assert info.exit_code == 0, info.output
