"""Realistic synthetic NIRCam time-series products with a truth file (placeholder docstring)."""

from .params import GrismParams, GuiderParams, ImagingParams

__all__ = ["GrismParams", "GuiderParams", "ImagingParams", "simulate_grism", "simulate_guider", "simulate_imaging"]


def __getattr__(name):
    # the runners import astropy and scipy; load them on first use so `tsotools --help` stays fast
    if name in ("simulate_grism", "simulate_imaging", "simulate_guider"):
        from . import _run

        return getattr(_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
