"""``tsotools rejump`` on simulated grism ramps, scored against the injected cosmic rays."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from conftest import sha256
from stdatamodels.jwst import datamodels as dm

from tsotools import dqflags
from tsotools.algorithms.jumps import JumpParams
from tsotools.cli import main
from tsotools.steps.rejump import run_rejump

GAIN, RN = "1.8", "14.142136"  # the simulator's gain (e-/DN) and CDS read noise (DN)
SIM = {"seed": 0}  # default grism: 20 integrations x 5 groups, SUBGRISM64, 1/f on, ~300 cosmic rays


@pytest.fixture(scope="module")
def ramps(simulated, module_tmp):
    """Raw ramp, ramp minus the injected 1/f (ideal cleaning), truth, and oneoverf's ramp."""
    paths = simulated("grism", **SIM)
    tmp = module_tmp.mktemp("rejump")
    clean = tmp / "ideal_ramp.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.RampModel(str(paths["ramp"])) as model, fits.open(paths["truth"]) as truth:
            model.groupdq[0, 1:, 40, 100] |= dqflags.JUMP_DET  # a stale flag rejump must clear
            model.data = model.data - truth["ONEOVERF"].data
            model.save(str(clean))
    out = {"raw": paths["ramp"], "ideal": clean, "truth": paths["truth"]}
    try:
        from tsotools.steps.oneoverf import run_oneoverf
    except ImportError:
        out["oneoverf"] = None
    else:
        out["oneoverf"] = tmp / "oneoverf_ramp.fits"
        run_oneoverf(paths["ramp"], out["oneoverf"], progress=False)
    return out


def score(path, truth_path):
    """Recall of injected jumps above 10 sigma and false flags per pixel-group."""
    with fits.open(path) as h:
        flags = (h["GROUPDQ"].data & dqflags.JUMP_DET) != 0
    with fits.open(truth_path) as t:
        cr = t["COSMIC_RAYS"].data
    where = (cr["INT"] - 1, cr["GROUP"], cr["Y"], cr["X"])
    injected = np.zeros(flags.shape, bool)
    injected[where] = True
    nint, ngroups, ny, nx = flags.shape
    recall = flags[where][cr["SIGMA"] > 10].mean()
    false = (flags & ~injected).sum() / (nint * (ngroups - 1) * ny * nx)
    return recall, false


def rejump(src, out, method="auto", threshold=5.0):
    run_rejump(
        src,
        out,
        params=JumpParams(method=method, threshold=threshold),
        gain=float(GAIN),
        readnoise=float(RN),
        overwrite=True,
        progress=False,
    )
    return out


def test_recall_and_false_flags_after_cleaning(ramps, tmp_path, capsys):
    """Acceptance 1: at 5 sigma, >= 95 % of jumps over 10 sigma; < 1e-4 false flags per group."""
    rows = []
    sources = [("ideal", ramps["ideal"])] + (
        [("oneoverf", ramps["oneoverf"])] if ramps["oneoverf"] else []
    )
    for name, src in sources:
        for method in ("auto", "two-point"):
            for t in (4, 5, 6, 10):
                recall, false = score(
                    rejump(src, tmp_path / f"{name}_{method}_{t}.fits", method, t), ramps["truth"]
                )
                rows.append((name, method, t, recall, false))
    with capsys.disabled():
        print("\ncleaning  method     threshold  recall(>10 sigma)  false flags per pixel-group")
        for name, method, t, recall, false in rows:
            print(f"{name:9s} {method:10s} {t:9g}  {recall:17.4f}  {false:.2e}")
    for name, method, t, recall, false in rows:
        if method == "auto" and t == 5:
            assert recall >= 0.95, name
            assert false < 1e-4, name


def test_uncleaned_one_over_f_raises_false_flags(ramps, tmp_path):
    """Acceptance 2 (NC-TS03): the pipeline's algorithm over-flags 1/f noise; cleaning undoes it."""
    _, raw = score(rejump(ramps["raw"], tmp_path / "raw.fits", "two-point"), ramps["truth"])
    _, ideal = score(rejump(ramps["ideal"], tmp_path / "ideal.fits", "two-point"), ramps["truth"])
    assert raw > 3 * ideal
    if ramps["oneoverf"] is not None:
        _, cleaned = score(
            rejump(ramps["oneoverf"], tmp_path / "oof.fits", "two-point"), ramps["truth"]
        )
        assert cleaned < 1.5 * ideal < raw / 2
    # the temporal method does not need the cleaning to keep its false-flag rate
    recall, temporal_raw = score(
        rejump(ramps["raw"], tmp_path / "traw.fits", "temporal"), ramps["truth"]
    )
    assert temporal_raw < 1e-4 and recall >= 0.95


@pytest.mark.parametrize("which, threshold", [("raw", 4.0), ("ideal", 5.0)])
def test_two_point_agrees_with_stcal(ramps, tmp_path, which, threshold):
    """Acceptance 3: Jaccard index >= 0.99 against stcal's detect_jumps_data, pipeline defaults."""
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    out = rejump(ramps[which], tmp_path / "tp.fits", "two-point", threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.RampModel(str(ramps[which])) as model:
            ny, nx = model.data.shape[2:]
            jd = JumpData(
                model,
                gain2d=np.full((ny, nx), float(GAIN), np.float32),
                rnoise2d=np.full((ny, nx), float(RN), np.float32),
                dqflags={
                    "GOOD": 0,
                    "SATURATED": 2,
                    "JUMP_DET": 4,
                    "NO_GAIN_VALUE": 2**19,
                    "DO_NOT_USE": 1,
                    "REFERENCE_PIXEL": 2**31,
                },
            )
            jd.gdq = jd.gdq & np.uint8(0xFF ^ dqflags.JUMP_DET)
            jd.rejection_thresh, jd.max_cores = threshold, "none"
            ref = (detect_jumps_data(jd)[0] & dqflags.JUMP_DET) != 0
    with fits.open(out) as h:
        mine = (h["GROUPDQ"].data & dqflags.JUMP_DET) != 0
    jaccard = (ref & mine).sum() / (ref | mine).sum()
    print(
        f"{which} ramp, threshold {threshold}: stcal {ref.sum()} flags, tsotools {mine.sum()}, "
        f"Jaccard {jaccard:.5f}"
    )
    assert ref.sum() > 100
    assert jaccard >= 0.99


def test_output_ramp_keeps_everything_but_the_jump_bits(ramps, tmp_path):
    src = ramps["ideal"]
    before = sha256(src)
    out = tmp_path / "rejump_ramp.fits"
    res = CliRunner().invoke(
        main,
        [
            "rejump",
            str(src),
            "-o",
            str(out),
            "--threshold",
            "6",
            "--method",
            "temporal",
            "--gain",
            GAIN,
            "--readnoise",
            RN,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sha256(src) == before
    summary = __import__("json").loads(res.stdout)
    assert summary["method"] == "temporal" and summary["threshold"] == 6.0 and summary["jumps"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dm.open(str(out)) as new, dm.open(str(src)) as old:
            assert type(new) is dm.RampModel
            np.testing.assert_array_equal(new.data, old.data)
            np.testing.assert_array_equal(new.groupdq & ~np.uint8(4), old.groupdq & ~np.uint8(4))
            assert not new.groupdq[0, 1:, 40, 100].any()  # the stale flag is gone
            assert ((new.groupdq & 4) != 0).sum() == summary["jumps"]
            assert new.meta.exposure.nints == 20
    hdr = fits.getheader(out)
    assert hdr["S_REJUMP"] == "COMPLETE"
    history = " ".join(str(h) for h in hdr["HISTORY"])
    assert "method=temporal" in history and "threshold=6" in history


def test_sweep_table_and_best(ramps, tmp_path):
    report = tmp_path / "sweep.ecsv"
    out = tmp_path / "best_ramp.fits"
    res = CliRunner().invoke(
        main,
        [
            "rejump",
            str(ramps["raw"]),
            "--method",
            "two-point",
            "--sweep",
            "4,5,6,8,10,15",
            "--report",
            str(report),
            "--threshold",
            "best",
            "-o",
            str(out),
            "--gain",
            GAIN,
            "--readnoise",
            RN,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "whitelight_noise_ppm" in res.stderr and "best" in res.stderr
    tab = Table.read(report)
    assert list(tab["threshold"]) == [4, 5, 6, 8, 10, 15]
    assert tab["best"].sum() == 1
    frac = np.asarray(tab["flagged_group_fraction"])
    assert np.all(np.diff(frac) <= 0) and frac[0] > 5 * frac[-1]
    assert np.all(np.asarray(tab["flagged_pixel_fraction"]) >= frac)
    # over-flagging 1/f at the pipeline default costs rate precision
    assert tab["rate_noise"][0] > tab["rate_noise"][tab["best"]][0] or tab["best"][0]
    best = float(tab["threshold"][tab["best"]][0])
    with fits.open(out) as h:
        flags = ((h["GROUPDQ"].data & 4) != 0).sum()
    ngroups_total = 20 * 4 * 64 * 2048
    row = tab[tab["threshold"] == best][0]
    assert flags == pytest.approx(row["flagged_group_fraction"] * ngroups_total, abs=0.5)
    assert f"threshold={best:g}," in "".join(str(h) for h in fits.getheader(out)["HISTORY"])


def test_reference_files_for_gain_and_readnoise(ramps, tmp_path):
    """CRDS-style full-frame files are cut to the subarray; a file of the wrong type is refused."""
    gain = tmp_path / "gain.fits"
    hdu = fits.PrimaryHDU()
    hdu.header["REFTYPE"] = "GAIN"
    fits.HDUList([hdu, fits.ImageHDU(np.full((2048, 2048), 1.8, np.float32), name="SCI")]).writeto(
        gain
    )
    rn = tmp_path / "readnoise.fits"
    hdu = fits.PrimaryHDU()
    hdu.header["REFTYPE"] = "READNOISE"
    fits.HDUList(
        [hdu, fits.ImageHDU(np.full((2048, 2048), 14.142136, np.float32), name="SCI")]
    ).writeto(rn)
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    run = CliRunner().invoke
    assert (
        run(
            main,
            [
                "rejump",
                str(ramps["ideal"]),
                "-o",
                str(a),
                "--gain",
                str(gain),
                "--readnoise",
                str(rn),
            ],
        ).exit_code
        == 0
    )
    assert (
        run(
            main, ["rejump", str(ramps["ideal"]), "-o", str(b), "--gain", GAIN, "--readnoise", RN]
        ).exit_code
        == 0
    )
    with fits.open(a) as ha, fits.open(b) as hb:
        np.testing.assert_array_equal(ha["GROUPDQ"].data, hb["GROUPDQ"].data)
    res = run(
        main, ["rejump", str(ramps["ideal"]), "-o", str(tmp_path / "c.fits"), "--gain", str(rn)]
    )
    assert res.exit_code == 2
    assert (
        res.stderr.strip().splitlines()[-1].startswith("tsotools: error:")
        and "READNOISE" in res.stderr
    )


def test_default_noise_warns(ramps, tmp_path):
    res = CliRunner().invoke(main, ["rejump", str(ramps["ideal"]), "-o", str(tmp_path / "d.fits")])
    assert res.exit_code == 0
    assert "no --gain given" in res.stderr and "no --readnoise given" in res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to do"),
        (["--threshold", "best", "-o", "X"], "needs --sweep"),
        (["--threshold", "abc", "-o", "X"], "--threshold"),
        (["--sweep", "4,x"], "--sweep"),
        (["-o", "X", "--gain", "-1"], "--gain"),
        (["-o", "X", "--gain", "nofile.fits"], "--gain"),
        (["--report", "r.ecsv", "-o", "X"], "--report needs --sweep"),
    ],
)
def test_bad_options_one_line_exit_2(ramps, tmp_path, args, message):
    args = [str(tmp_path / "out.fits") if a == "X" else a for a in args]
    res = CliRunner().invoke(main, ["rejump", str(ramps["ideal"]), *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("tsotools: error:") and message in lines[-1]


def test_wrong_product_and_existing_output(simulated, ramps, tmp_path):
    rateints = simulated("grism", **SIM)["rateints"]
    res = CliRunner().invoke(main, ["rejump", str(rateints), "-o", str(tmp_path / "x.fits")])
    assert res.exit_code == 2 and "rateints" in res.stderr
    res = CliRunner().invoke(main, ["rejump", str(ramps["ideal"]), "-o", str(ramps["ideal"])])
    assert res.exit_code == 2 and "input" in res.stderr


def test_help():
    res = CliRunner().invoke(main, ["rejump", "-h"])
    assert res.exit_code == 0 and "Example:" in res.output and "--sweep" in res.output
