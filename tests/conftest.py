"""Shared fixtures: simulated products made once per test session (per xdist worker)."""

import hashlib
import json

import pytest


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """Return ``make(kind, **params) -> dict of kind -> Path``, cached by parameters.

    ``kind`` is "grism", "imaging" or "guider"; ``params`` are fields of the matching
    ``tsotools.simulate`` params dataclass. Treat the files as read-only.
    """
    from tsotools import simulate as sim

    makers = {
        "grism": (sim.simulate_grism, sim.GrismParams),
        "imaging": (sim.simulate_imaging, sim.ImagingParams),
        "guider": (sim.simulate_guider, sim.GuiderParams),
    }
    cache = {}

    def make(kind, truth=True, **params):
        key = json.dumps([kind, truth, params], sort_keys=True, default=str)
        if key not in cache:
            func, params_cls = makers[kind]
            tag = hashlib.sha1(key.encode()).hexdigest()[:10]
            outdir = tmp_path_factory.mktemp(f"sim-{kind}-{tag}")
            cache[key] = func(outdir, params_cls(**params), prefix=kind, truth=truth)
        return cache[key]

    return make


def sha256(path):
    """Checksum of a file, to show an input was never changed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
