"""Every subcommand prints exactly one JSON object on stdout with --json (and nothing else).

Each table-writing command also takes --plot PNG; the PNG it writes is checked to be a
real image and is named in the summary.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tsotools.cli import main

pytestmark = [pytest.mark.xdist_group("cli_json")]

SMALL = dict(nints=4, ngroups=3)


def leaf_commands(group=main, prefix=()):
    """Every runnable command path, e.g. ('simulate', 'grism')."""
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.fixture(scope="session")  # kept across xdist interleaving of modules
def data(simulated, tmp_path_factory):
    return {
        "grism": simulated("grism", seed=31, **SMALL),
        "imaging": simulated("imaging", seed=32, **SMALL),
        "guider": simulated("guider", seed=33, **SMALL),
        "out": tmp_path_factory.mktemp("json"),
    }


def png_ok(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05


def run_json(args):
    result = CliRunner().invoke(main, [*args, "--json", "-q"])
    assert result.exit_code == 0, (args, result.output, result.exception)
    text = result.stdout.strip()
    obj = json.loads(text)  # exactly one JSON value: a second one would not parse
    assert isinstance(obj, dict), text[:200]
    assert text.count("\n") == 0 or args[0] == "info"  # one line (info pretty-prints one object)
    return obj


def commands(d):
    g, i, s, o = d["grism"], d["imaging"], d["guider"], d["out"]
    gs = [str(p) for k, p in s.items() if k.startswith("gs-fg")]
    return {
        ("info",): (["info", str(g["ramp"])], None),
        ("simulate", "grism"): (
            [
                "simulate",
                "grism",
                "-o",
                str(o / "sg"),
                "--nints",
                "2",
                "--ngroups",
                "2",
                "--no-truth",
            ],
            None,
        ),
        ("simulate", "imaging"): (
            [
                "simulate",
                "imaging",
                "-o",
                str(o / "si"),
                "--nints",
                "2",
                "--ngroups",
                "2",
                "--subarray",
                "SUB64P",
                "--no-truth",
            ],
            None,
        ),
        ("simulate", "guider"): (
            [
                "simulate",
                "guider",
                "-o",
                str(o / "ss"),
                "--nints",
                "2",
                "--ngroups",
                "2",
                "--no-truth",
            ],
            None,
        ),
        ("oneoverf",): (["oneoverf", str(g["ramp"]), "-o", str(o / "1f_ramp.fits")], o / "1f.png"),
        ("rejump",): (
            ["rejump", str(o / "1f_ramp.fits"), "-o", str(o / "j_ramp.fits"), "--sweep", "5,8"],
            o / "sweep.png",
        ),
        ("rampfit",): (["rampfit", str(o / "j_ramp.fits"), "-o", str(o / "rateints.fits")], None),
        ("widen-cutout",): (
            ["widen-cutout", str(o / "rateints.fits"), "-o", str(o / "cutout.fits")],
            o / "cutout.png",
        ),
        ("spectra",): (
            [
                "spectra",
                str(o / "cutout.fits"),
                "-o",
                str(o / "x1dints.fits"),
                "--white-light",
                str(o / "whtlt.ecsv"),
            ],
            o / "spectra.png",
        ),
        ("centroid",): (["centroid", str(i["rateints"]), "-o", str(o / "cen.ecsv")], o / "cen.png"),
        ("photometry",): (
            [
                "photometry",
                str(i["rateints"]),
                "-o",
                str(o / "phot.ecsv"),
                "--centroids",
                str(o / "cen.ecsv"),
            ],
            o / "phot.png",
        ),
        ("jitter-from-guidestar",): (
            [
                "jitter-from-guidestar",
                *gs,
                "--science",
                str(s["rateints"]),
                "-o",
                str(o / "jitter.fits"),
            ],
            o / "jitter.png",
        ),
        ("plot",): (["plot", "lightcurve", str(o / "whtlt.ecsv"), "-o", str(o / "lc.png")], None),
    }


def test_every_subcommand_is_covered(data):
    assert set(leaf_commands()) == set(commands(data))


def test_every_subcommand_prints_one_json_object(data):
    for path, (args, png) in commands(
        data
    ).items():  # in chain order: later ones read earlier outputs
        if png is not None:
            args = [*args, "--plot", str(png)]
        obj = run_json(args)
        if path[0] == "info":
            assert obj["kind"] == "ramp" and obj["command"] == "tsotools info"
            several = run_json([*args, str(data["grism"]["rateints"])])
            assert [f["kind"] for f in several["files"]] == ["ramp", "rateints"]
            continue
        assert obj["command"] == "tsotools " + " ".join(path)
        assert obj.get("message"), obj
        if png is not None:
            assert obj["plot"] == str(png)
            png_ok(png)
        if path[0] == "simulate":
            assert obj["nints"] == 2 and obj["kind"] == path[1]
            assert all(str(data["out"]) in v for v in obj["outputs"].values())
    # key figures are numbers a script can test
    obj = run_json(
        [
            "plot",
            "oneoverf",
            str(data["grism"]["ramp"]),
            str(data["out"] / "1f_ramp.fits"),
            "-o",
            str(data["out"] / "of.png"),
        ]
    )
    assert obj["row_rms_after"] < obj["row_rms_before"]
    assert np.isfinite(obj["row_rms_after"])


def test_plot_option_refused_before_any_work(data, tmp_path):
    png = tmp_path / "exists.png"
    png.write_bytes(b"x")
    out = tmp_path / "c.ecsv"
    result = CliRunner().invoke(
        main, ["centroid", str(data["imaging"]["rateints"]), "-o", str(out), "--plot", str(png)]
    )
    assert result.exit_code == 2 and "exists" in result.stderr
    assert not out.exists()
    result = CliRunner().invoke(
        main,
        [
            "centroid",
            str(data["imaging"]["rateints"]),
            "-o",
            str(out),
            "--plot",
            str(tmp_path / "c.jpg"),
        ],
    )
    assert result.exit_code == 2 and ".png" in result.stderr and not out.exists()
    result = CliRunner().invoke(
        main,
        [
            "rejump",
            str(data["grism"]["ramp"]),
            "-o",
            str(tmp_path / "r.fits"),
            "--plot",
            str(tmp_path / "s.png"),
        ],
    )
    assert result.exit_code == 2 and "--sweep" in result.stderr


def test_rejump_sweep_plot_without_report(data, tmp_path):
    obj = run_json(
        ["rejump", str(data["grism"]["ramp"]), "--sweep", "5,8", "--plot", str(tmp_path / "s.png")]
    )
    assert obj["plot"] == str(tmp_path / "s.png")
    png_ok(tmp_path / "s.png")
