"""Man pages, completions and the README reference are generated from the click app."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete

from tsotools.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_man_page_per_command():
    pages = {p.name for p in (ROOT / "man").glob("*.1")}
    assert "tsotools.1" in pages
    for name in main.commands:
        assert f"tsotools-{name}.1" in pages


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_page_renders():
    out = subprocess.run(["man", "-l", str(ROOT / "man" / "tsotools-info.1")], capture_output=True, text=True,
                         env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    assert out.returncode == 0 and "tsotools info" in out.stdout


def test_completion_scripts_exist_for_three_shells():
    for name, needle in (("tsotools.bash", "complete "), ("_tsotools", "compdef"), ("tsotools.fish", "complete ")):
        assert needle in (ROOT / "completions" / name).read_text()


def test_completion_offers_subcommands_and_options():
    def complete(args, incomplete):
        return [c.value for c in ShellComplete(main, {}, "tsotools", "_TSOTOOLS_COMPLETE").get_completions(args, incomplete)]

    assert "oneoverf" in complete([], "one")
    assert {"widen-cutout"} <= set(complete([], "w"))
    assert "--json" in complete(["info"], "--j")
