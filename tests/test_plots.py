"""Figures and ``tsotools plot``: helpers against known numbers, every kind on real outputs."""

import numpy as np
import pytest
from click.testing import CliRunner

from tsotools.cli import PLOT_KINDS, main
from tsotools.plots import time_axis
from tsotools.plots.lightcurve import bin_series, lightcurve_figure
from tsotools.plots.oneoverf import background_pixels, oneoverf_figure
from tsotools.plots.render import KINDS, run_plot

pytestmark = [pytest.mark.xdist_group("plots")]


def png_ok(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50


def test_kinds_match_the_command_line():
    assert tuple(KINDS) == PLOT_KINDS


def test_bin_series_means_and_errors():
    t = np.arange(10.0)
    f = np.array([1, 3, 1, 3, 1, 3, np.nan, 5, 2, 2], float)
    tb, fb, eb = bin_series(t, f, 4)
    np.testing.assert_allclose(tb, [1.5, 16 / 3, 8.5])  # the NaN point leaves its time out too
    np.testing.assert_allclose(fb, [2.0, 3.0, 2.0])
    np.testing.assert_allclose(eb[0], np.std([1, 3, 1, 3], ddof=1) / 2)
    np.testing.assert_allclose(eb[2], 0.0)
    with pytest.raises(ValueError):
        bin_series(t, f, 0)


def test_time_axis_picks_units_by_span():
    day = np.array([0.0, 0.5]) / 24 + 60000  # 30 min
    v, unit, t0 = time_axis(day)
    assert unit == "minutes" and t0 == 60000 and v[-1] == pytest.approx(30)
    v, unit, _ = time_axis(np.array([0.0, 5.0]) / 24 + 60000)
    assert unit == "hours" and v[-1] == pytest.approx(5)
    v, unit, _ = time_axis(np.array([0.0, 30.0]) / 86400 + 60000)
    assert unit == "seconds" and v[-1] == pytest.approx(30, rel=1e-6)


def test_background_pixels_leave_out_the_trace_and_its_wings():
    rng = np.random.default_rng(1)
    ny, nx = 64, 400
    frame = rng.normal(0, 1, (ny, nx))
    frame[30:36, 20:380] += 200  # a trace
    use = background_pixels(frame, frame)
    rows = np.flatnonzero(~use.any(axis=1))
    assert rows.min() == 30 - 8 and rows.max() == 35 + 8  # source rows and 8-row margins
    assert use[:20].mean() > 0.99 and use[45:].mean() > 0.99  # noise pixels are kept


def test_oneoverf_figure_rows_show_the_removed_stripes():
    rng = np.random.default_rng(2)
    stripes = rng.normal(0, 5, (64, 1))
    clean = rng.normal(0, 1, (64, 512))
    fig = oneoverf_figure(clean + stripes, clean, amp_edges=[256])
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    before, after = (float(s.split("rms ")[1].split()[0]) for s in legend)
    assert before == pytest.approx(np.std(stripes), rel=0.1)
    assert after < 0.2  # medians of 512 unit-noise pixels


def test_lightcurve_figure_reports_point_to_point_scatter():
    rng = np.random.default_rng(3)
    flux = 1e6 * (1 + rng.normal(0, 1e-3, 400))
    fig = lightcurve_figure(np.linspace(0, 0.2, 400), flux)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    ppm = float(text.split("scatter ")[1].split()[0])
    assert ppm == pytest.approx(1000, rel=0.15)


@pytest.fixture(scope="session")  # kept across xdist interleaving of modules
def outputs(simulated, tmp_path_factory):
    """A short chain on small simulated data: every kind of file ``plot`` reads."""
    g = simulated("grism", seed=41, nints=6, ngroups=3)
    i = simulated("imaging", seed=42, nints=6, ngroups=3)
    s = simulated("guider", seed=43, nints=6, ngroups=3)
    o = tmp_path_factory.mktemp("plots")
    gs = [str(p) for k, p in s.items() if k.startswith("gs-fg")]
    chain = [
        ["oneoverf", str(g["ramp"]), "-o", str(o / "1f_ramp.fits")],
        ["rejump", str(o / "1f_ramp.fits"), "--sweep", "5,8", "--report", str(o / "sweep.ecsv")],
        ["widen-cutout", str(g["rateints"]), "-o", str(o / "cutout.fits")],
        [
            "spectra",
            str(o / "cutout.fits"),
            "-o",
            str(o / "x1dints.fits"),
            "--white-light",
            str(o / "whtlt.ecsv"),
            "--lightcurves",
            str(o / "lc.ecsv"),
            "--bins",
            "5",
            "--noise-report",
            str(o / "noise.ecsv"),
        ],
        [
            "spectra",
            str(o / "cutout.fits"),
            "-o",
            str(o / "x1dints_per.fits"),
            "--layout",
            "per-integration",
        ],
        ["centroid", str(i["rateints"]), "-o", str(o / "cen.ecsv")],
        [
            "photometry",
            str(i["rateints"]),
            "-o",
            str(o / "phot.fits"),
            "--centroids",
            str(o / "cen.ecsv"),
        ],
        [
            "jitter-from-guidestar",
            *gs,
            "--science",
            str(s["rateints"]),
            "-o",
            str(o / "jitter.fits"),
        ],
        ["jitter-from-guidestar", *gs, "-o", str(o / "frames.ecsv")],
    ]
    for args in chain:
        result = CliRunner().invoke(main, [*args, "-q"])
        assert result.exit_code == 0, (args, result.output)
    return {"dir": o, "grism": g}


@pytest.mark.parametrize(
    "kind, files, check",
    [
        ("lightcurve", ["whtlt.ecsv"], {"points": 6}),
        ("lightcurve", ["lc.ecsv"], {"bins": 5}),
        ("lightcurve", ["phot.fits"], {"points": 6}),
        ("lightcurve", ["x1dints.fits"], {"points": 6}),
        ("spectra", ["x1dints.fits"], {"nints": 6}),
        ("spectra", ["x1dints_per.fits"], {"nints": 6}),
        ("centroids", ["cen.ecsv"], {"nints": 6}),
        ("jitter", ["jitter.fits"], {"rows": 6, "hga_moves": 1}),
        ("jitter", ["frames.ecsv"], {"hga_moves": 1}),
        ("sweep", ["sweep.ecsv"], {"thresholds": [5.0, 8.0]}),
        ("noise", ["noise.ecsv"], {}),
    ],
)
def test_every_kind_draws_a_real_image(outputs, kind, files, check):
    out = outputs["dir"] / f"{kind}_{files[0]}.png"
    summary = run_plot(kind, [outputs["dir"] / f for f in files], out)
    png_ok(out)
    assert summary["output"] == str(out) and summary["message"].startswith("wrote")
    for key, value in check.items():
        assert summary[key] == value, (key, summary)


def test_spectra_layouts_give_the_same_white_light(outputs):
    a = run_plot("lightcurve", [outputs["dir"] / "x1dints.fits"], outputs["dir"] / "wa.png")
    b = run_plot("lightcurve", [outputs["dir"] / "x1dints_per.fits"], outputs["dir"] / "wb.png")
    assert a["p2p_ppm"] == pytest.approx(b["p2p_ppm"], rel=1e-9)


def test_frame_kind_puts_a_cutout_at_its_subarray_rows(simulated, tmp_path):
    g = simulated("grism", seed=44, nints=2, ngroups=2, subarray="SUBGRISM128", truth=False)
    tall = tmp_path / "tall.fits"
    assert (
        CliRunner()
        .invoke(main, ["widen-cutout", str(g["rateints"]), "-o", str(tall), "--height", "96", "-q"])
        .exit_code
        == 0
    )
    summary = run_plot("frame", [g["calints"], tall], tmp_path / "f.png", integration=2)
    png_ok(tmp_path / "f.png")
    (a0, a1), (b0, b1) = summary["rows"]
    assert (a0, a1) == (
        0,
        63,
    ) and b1 - b0 == 95  # the pipeline's 64 rows from row 0; 96 around the trace
    assert b0 <= 34 <= b1 and summary["integration"] == 2
    too_many = CliRunner().invoke(
        main, ["plot", "frame", *[str(g["calints"])] * 5, "-o", str(tmp_path / "x.png")]
    )
    assert too_many.exit_code == 2 and "1 to 4 files" in too_many.stderr


def test_oneoverf_kind_measures_less_row_noise_after(outputs):
    o = outputs["dir"]
    summary = run_plot(
        "oneoverf", [outputs["grism"]["ramp"], o / "1f_ramp.fits"], o / "of.png", integration=2
    )
    png_ok(o / "of.png")
    assert summary["integration"] == 2
    assert summary["row_rms_after"] < 0.8 * summary["row_rms_before"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["oneoverf", "{d}/whtlt.ecsv"], "BEFORE and AFTER"),
        (["sweep", "{d}/whtlt.ecsv"], "rejump --report"),
        (["noise", "{d}/cen.ecsv"], "noise-report"),
        (["centroids", "{d}/x1dints.fits"], "centroid table"),
        (["jitter", "{d}/cen.ecsv"], "not a jitter table"),
        (["lightcurve", "{d}/sweep.ecsv"], "no light-curve column"),
        (["spectra", "{d}/whtlt.ecsv"], "error"),
        (["oneoverf", "{d}/1f_ramp.fits", "{d}/cutout.fits"], "not the same product"),
    ],
)
def test_plot_errors_are_one_line_exit_2(outputs, tmp_path, args, message):
    args = [a.format(d=outputs["dir"]) for a in args]
    result = CliRunner().invoke(main, ["plot", *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_plot_command_output_rules(outputs, tmp_path):
    d = outputs["dir"]
    run = CliRunner().invoke
    assert (
        run(
            main, ["plot", "lightcurve", str(d / "whtlt.ecsv"), "-o", str(tmp_path / "a.png")]
        ).exit_code
        == 0
    )
    again = run(main, ["plot", "lightcurve", str(d / "whtlt.ecsv"), "-o", str(tmp_path / "a.png")])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert (
        run(
            main,
            [
                "plot",
                "lightcurve",
                str(d / "whtlt.ecsv"),
                "-o",
                str(tmp_path / "a.png"),
                "--overwrite",
                "--bin",
                "3",
            ],
        ).exit_code
        == 0
    )
    bad = run(main, ["plot", "lightcurve", str(d / "whtlt.ecsv"), "-o", str(tmp_path / "a.pdf")])
    assert bad.exit_code == 2 and ".png" in bad.stderr
    bad = run(
        main,
        [
            "plot",
            "oneoverf",
            str(outputs["grism"]["ramp"]),
            str(d / "1f_ramp.fits"),
            "-o",
            str(tmp_path / "b.png"),
            "--integration",
            "99",
        ],
    )
    assert bad.exit_code == 2 and "--integration" in bad.stderr


def test_figures_ignore_global_layout_settings(tmp_path):
    """chromatic sets figure.constrained_layout.use on import; figures must not depend on it."""
    import matplotlib

    from tsotools.io import save_figure
    from tsotools.plots.spectra import spectra_figure

    rng = np.random.default_rng(5)
    with matplotlib.rc_context({"figure.constrained_layout.use": True, "savefig.dpi": 300}):
        figs = [
            oneoverf_figure(rng.normal(size=(64, 256)), rng.normal(size=(64, 256))),
            spectra_figure(
                np.linspace(2.4, 4.0, 300), np.linspace(0, 0.01, 12), 1 + rng.random((12, 300))
            ),
            lightcurve_figure(np.linspace(0, 0.1, 50), 1 + rng.normal(0, 1e-3, 50)),
        ]
        for k, fig in enumerate(figs):
            save_figure(fig, tmp_path / f"{k}.png")
            png_ok(tmp_path / f"{k}.png")
