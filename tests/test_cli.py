"""The command-line frame: help, version, exit codes, one-line errors, info."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from stdatamodels.jwst import datamodels as dm

from tsotools import __version__
from tsotools.cli import main


def _commands(group=main, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


ALL_COMMANDS = list(_commands())


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output or hasattr(main.commands.get(command[0]), "commands")
    assert "-h" not in result.output or "--help" in result.output


def test_mission_commands_are_registered():
    names = set(main.commands)
    assert {"oneoverf", "rejump", "widen-cutout", "centroid", "photometry", "spectra",
            "jitter-from-guidestar", "simulate", "info"} <= names


@pytest.fixture
def cube(tmp_path):
    model = dm.CubeModel((2, 8, 32))
    m = model.meta
    m.instrument.name, m.instrument.detector, m.exposure.type = "NIRCAM", "NRCA3", "NRC_TSIMAGE"
    m.subarray.name, m.subarray.xstart, m.subarray.ystart = "SUB160P", 101, 201
    m.subarray.xsize, m.subarray.ysize, m.subarray.fastaxis, m.subarray.slowaxis = 32, 8, -1, 2
    m.exposure.noutputs, m.exposure.nints, m.exposure.ngroups = 1, 2, 3
    model.data[:] = np.arange(2)[:, None, None]
    path = tmp_path / "x_rateints.fits"
    model.save(path)
    return path


def test_info_human_and_json(cube):
    runner = CliRunner()
    result = runner.invoke(main, ["info", str(cube)])
    assert result.exit_code == 0, result.output
    assert "rateints (CubeModel)" in result.output
    assert "x=100, y=200 (0-based), 32 x 8 px" in result.output
    assert "rows: 0 (none); columns: 0 (none)" in result.output
    result = runner.invoke(main, ["info", "--json", str(cube)])
    summary = json.loads(result.output)
    assert summary["kind"] == "rateints" and summary["nints"] == 2
    assert summary["amplifiers"] == [[0, 32]] and summary["noutputs"] == 1
    assert summary["tsotools_steps"] == {}


def test_info_on_a_non_fits_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_text("not fits")
    result = CliRunner().invoke(main, ["info", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("tsotools: error:") and "not a readable FITS file" in result.output


def test_missing_file_is_a_usage_error():
    result = CliRunner().invoke(main, ["info", "/nonexistent.fits"])
    assert result.exit_code == 2


def test_a_bug_is_reported_in_one_line_and_the_traceback_only_with_debug(cube, monkeypatch):
    import tsotools.info

    def broken(prod):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(tsotools.info, "summarize", broken)
    result = CliRunner().invoke(main, ["info", str(cube)])
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError" in result.output and "--debug" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["--debug", "info", str(cube)])
    assert result.exit_code == 1 and "Traceback" in result.output
