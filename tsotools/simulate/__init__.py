"""Realistic synthetic NIRCam time-series products with a truth file (placeholder docstring)."""

from ._run import simulate_grism, simulate_guider, simulate_imaging
from .params import GrismParams, GuiderParams, ImagingParams

__all__ = ["GrismParams", "GuiderParams", "ImagingParams", "simulate_grism", "simulate_guider", "simulate_imaging"]
