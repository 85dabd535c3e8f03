"""examples/Makefile and examples/Snakefile on small simulated data, checked against the truth.

One simulated set (2 grism segments, a weak-lens imaging exposure, guider files; 12
integrations of 3 groups, a 5% transit) is made once with the Makefile's own `sim` target;
`make -j2` and Snakemake's local executor then run every step and the final products are
checked: they open as pipeline models, cover every integration once, and give the
simulated transit depth and pointing.
"""

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack
from conftest import built_once

pytestmark = [pytest.mark.xdist_group("workflows")]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NINTS, DEPTH = 12, 0.05
SIM = dict(NINTS=NINTS, NGROUPS=3, DEPTH=DEPTH, SEGMENTS=2)
FAST = dict(SWEEP="5,8")  # two thresholds keep the test short


def _tsotools():
    exe = Path(sys.executable).parent / "tsotools"
    return str(exe) if exe.exists() else f"{sys.executable} -m tsotools.cli"


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MAKEFLAGS", None)
    return env


def _make(*args, cwd, check=True):
    cmd = ["make", "-f", str(EXAMPLES / "Makefile"), f"TSOTOOLS={_tsotools()}", *args]
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="session")
def workdir(run_dir):
    """Simulated inputs and the Makefile's products, made once per test run."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    work = run_dir / "workflow"
    with built_once(work) as build:
        if build:
            _make("sim", *(f"{k}={v}" for k, v in SIM.items()), cwd=work)
            _make("-j2", *(f"{k}={v}" for k, v in FAST.items()), cwd=work)
    return work


@pytest.fixture(scope="session")
def made(workdir):
    return workdir / "workflow-out"


def _png_ok(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300, path
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, f"{path}: a blank image"
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50, f"{path}: too few colours"


def _depth(flux, shape):
    """Transit depth fitted as flux = a (1 - d SHAPE); returns d and the residual rms."""
    a = np.vstack([np.ones_like(shape), shape]).T
    (c0, c1), *_ = np.linalg.lstsq(a, flux, rcond=None)
    model = c0 + c1 * shape
    return -c1 / c0, float(np.std(flux / model - 1))


def _truth(pattern, hdu="INTEGRATIONS"):
    return vstack([Table.read(p, hdu=hdu) for p in sorted(glob.glob(str(pattern)))])


def test_makefile_runs_every_step_and_matches_truth(made, workdir):
    import stdatamodels.jwst.datamodels as dm

    from tsotools.simulate import ImagingParams

    data = workdir / "workflow-data"
    segs = sorted(made.glob("*nrcalong_x1dints.fits"))
    assert len(segs) == 2
    ints = []
    for path in segs:
        with dm.open(path) as model:
            assert type(model).__name__ == "TSOMultiSpecModel"
            ints += list(model.spec[0].spec_table["INT_NUM"])
    assert ints == list(range(1, NINTS + 1))  # each integration exactly once, segments in order

    # white light of both segments against the noise-free transit
    white = vstack([Table.read(p) for p in sorted(made.glob("*nrcalong_whtlt.ecsv"))])
    truth = _truth(data / "grism" / "*_truth.fits")
    assert len(white) == NINTS
    true_depth, _ = _depth(np.asarray(truth["FLUX"], float), np.asarray(truth["SHAPE"], float))
    depth, resid = _depth(
        np.asarray(white["whitelight_flux"], float), np.asarray(truth["SHAPE"], float)
    )
    # 12 integrations with ~300 ppm scatter after the 1/f removal: depth known to ~250 ppm
    assert resid < 1500e-6
    assert abs(depth - true_depth) < 1.5e-3, (depth, true_depth)

    # photometry follows the star; the neighbour dilutes the depth. CONTAM is its share within
    # the donut's outer radius; the chosen aperture is larger, so the dilution lies between
    # CONTAM and the whole neighbour (ratio / (1 + ratio)); the depth's noise is ~100 ppm.
    phot = Table.read(next(made.glob("*nrca3_phot.ecsv")))
    tim = _truth(data / "imaging" / "*_truth.fits")
    head = fits.getheader(next((data / "imaging").glob("*_truth.fits")))
    ratio = ImagingParams().neighbour_ratio  # the Makefile's sim keeps the default
    depth, resid = _depth(np.asarray(phot["flux"], float), np.asarray(tim["SHAPE"], float))
    assert resid < 500e-6
    assert DEPTH / (1 + ratio) - 5e-4 < depth < DEPTH * (1 - head["CONTAM"]) + 5e-4, depth
    cen = Table.read(next(made.glob("*nrca3_centroids.ecsv")))
    assert np.sqrt(np.mean((cen["X"] - tim["X"]) ** 2)) < 0.05  # px
    assert np.sqrt(np.mean((cen["Y"] - tim["Y"]) ** 2)) < 0.05

    # jitter per science integration against the true guide-star offsets
    jit = Table.read(made / "jitter.fits", hdu="JITTER")
    tsci = _truth(data / "guider" / "*_truth.fits", hdu="SCIENCE")
    assert list(jit["INT_NUM"]) == list(tsci["INT_NUM"])
    for col in ("DX_MAS", "DY_MAS"):
        assert (
            np.sqrt(np.mean((jit[col] - tsci[col]) ** 2)) < 0.5
        )  # mas; the jitter itself is ~1.5 mas

    for png in ["jitter.png", *[p.name for p in made.glob("*.png")]]:
        _png_ok(made / png)
    kinds = {p.name.split("_")[-1] for p in made.glob("*.png")}
    assert kinds == {
        "1overf.png",
        "sweep.png",
        "spectra.png",
        "centroids.png",
        "lightcurve.png",
        "jitter.png",
    }

    # every target is up to date: the rules name all their inputs and outputs
    assert (
        _make("-q", *(f"{k}={v}" for k, v in FAST.items()), cwd=workdir, check=False).returncode
        == 0
    )


def test_makefile_failed_step_leaves_no_output_and_resumes(made, workdir, tmp_path):
    """A step that fails writes nothing; the next run redoes only what is missing."""
    out = tmp_path / "out"
    out.mkdir()
    for src in made.glob(
        "*nrcalong_rateints.fits"
    ):  # start from the rates (intermediates are secondary)
        shutil.copy(src, out / src.name)
    bad = _make("-k", f"OUT={out}", "BINS=0", "spectra", cwd=workdir, check=False)
    assert bad.returncode != 0 and "--bins" in bad.stderr
    assert list(out.glob("*_x1dints.fits")) == [] and list(out.glob(".*.part")) == []
    cutouts = sorted(out.glob("*_cutout.fits"))
    assert len(cutouts) == 2 and not list(out.glob("*_1overf_ramp.fits"))
    stamp = [p.stat().st_mtime_ns for p in cutouts]
    _make(f"OUT={out}", "spectra", cwd=workdir)
    assert [p.stat().st_mtime_ns for p in cutouts] == stamp  # not redone
    assert len(list(out.glob("*_x1dints.fits"))) == 2
    shutil.rmtree(out)


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake") is None,
    reason="snakemake is not installed (pip install -e '.[test]')",
)
def test_snakefile_local_executor_gives_the_makefile_products(made, workdir):
    snake = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(snake) if snake.exists() else "snakemake",
        "-s",
        str(EXAMPLES / "Snakefile"),
        "--cores",
        "2",
        "--config",
        "out=snake-out",
        f"tsotools={_tsotools()}",
        "sweep=5,8",
    ]
    res = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    snake_out = workdir / "snake-out"
    made_files = sorted(p.name for p in made.iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in snake_out.iterdir() if not p.name.startswith(".")) == made_files
    # the same commands on the same inputs: the same numbers
    for name in made_files:
        if name.endswith("_x1dints.fits"):
            a, b = (fits.getdata(d / name, "EXTRACT1D") for d in (made, snake_out))
            np.testing.assert_array_equal(a["FLUX"], b["FLUX"])
        elif name.endswith(".ecsv"):
            a, b = Table.read(made / name), Table.read(snake_out / name)
            for col in a.colnames:
                if a[col].dtype.kind == "f":
                    np.testing.assert_array_equal(a[col], b[col])


def _readme_commands():
    """The shell commands of the README's user guide (the generated reference left out)."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text().split("<!-- BEGIN CLI REFERENCE")[0]
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line:
                yield shlex.split(line.split("|")[0])


def test_readme_commands_name_real_subcommands_and_options():
    import click

    from tsotools.cli import main

    seen = 0
    for args in _readme_commands():
        if not args or args[0] != "tsotools" or args[1:2] in (["--help"], ["--version"]):
            continue
        cmd, rest = main, args[1:]
        while isinstance(cmd, click.Group):
            assert rest and rest[0] in cmd.commands, args
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        names = {opt for p in cmd.params for opt in p.opts + p.secondary_opts}
        for tok in rest:
            if tok.startswith("-") and not tok.lstrip("-").replace(".", "").isdigit():
                assert tok in names, (args, tok)
        seen += 1
    assert seen >= 20  # the guide shows every command
