"""Shared fixtures: simulated products made once per test run (shared by the xdist workers)."""

import contextlib
import fcntl
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest


PEAK_DISK_GB = 8  # measured peak of the whole suite under $TMPDIR with -n 2 (README)


def pytest_sessionstart(session):
    """Warn at once when the temporary directory has less room than the suite needs."""
    tmp = tempfile.gettempdir()
    free = shutil.disk_usage(tmp).free / 1e9
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if free < PEAK_DISK_GB and reporter is not None:
        reporter.write_line(
            f"tsotools: only {free:.1f} GB free in {tmp}, the suite needs ~{PEAK_DISK_GB} GB: "
            "expect failed writes (set TMPDIR to a larger disk)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, worker_id):
    """The test run's directory, shared by every pytest-xdist worker of the run."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@contextlib.contextmanager
def built_once(path):
    """Yield True when ``path`` (a directory) must be built, under a lock between workers.

    The caller fills ``path`` inside the block; it is marked complete only when the block
    ends without an exception, so a failed build is redone by the next caller.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    done = path.with_name(path.name + ".ok")
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            yield False
            return
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        yield True
        done.touch()


@pytest.fixture(scope="session")
def simulated(run_dir):
    """Return ``make(kind, **params) -> dict of kind -> Path``, made once per test run.

    ``kind`` is "grism", "imaging" or "guider"; ``params`` are fields of the matching
    ``tsotools.simulate`` params dataclass, plus ``truth`` and ``products`` of the runner.
    The xdist workers share the files (one copy on disk); treat them as read-only.
    """
    from tsotools import simulate as sim

    makers = {
        "grism": (sim.simulate_grism, sim.GrismParams),
        "imaging": (sim.simulate_imaging, sim.ImagingParams),
        "guider": (sim.simulate_guider, sim.GuiderParams),
    }

    def make(kind, truth=True, products=None, **params):
        key = json.dumps([kind, truth, products, params], sort_keys=True, default=str)
        outdir = run_dir / "simulated" / f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        index = outdir / "paths.json"
        with built_once(outdir) as build:
            if build:
                func, params_cls = makers[kind]
                paths = func(outdir, params_cls(**params), prefix=kind, truth=truth,
                             products=products)
                index.write_text(json.dumps({k: Path(v).name for k, v in paths.items()}))
        return {k: outdir / name for k, name in json.loads(index.read_text()).items()}

    return make


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """``tmp_path_factory`` for a module's fixtures; their directories go with the module."""
    made = []

    class ModuleTmp:
        @staticmethod
        def mktemp(name):
            made.append(tmp_path_factory.mktemp(name))
            return made[-1]

    yield ModuleTmp
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def sha256(path):
    """Checksum of a file, to show an input was never changed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
