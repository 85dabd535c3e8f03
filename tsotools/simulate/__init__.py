"""Realistic synthetic NIRCam time-series products, with a truth file to score tools against.

Three runners write pipeline products that ``stdatamodels.jwst.datamodels.open`` opens as
the pipeline's own models (keywords set through ``meta``, so the ASDF tree and the FITS
keywords agree)::

    from tsotools.simulate import GrismParams, simulate_grism
    paths = simulate_grism("sim", GrismParams(seed=1), prefix="grism", truth=True, overwrite=False)

- :func:`simulate_grism` (:class:`GrismParams`): NRCALONG + GRISMR on SUBGRISM64/128/256
  at the bottom detector edge; ``<prefix>_ramp.fits`` (RampModel, post-superbias),
  ``_rateints.fits`` (CubeModel), ``_calints.fits`` (the 64-row SlitModel cutout with a
  WAVELENGTH array) and ``_truth.fits``.
- :func:`simulate_imaging` (:class:`ImagingParams`): NRCA3 + WLP8 weak-lens donut (~70 px)
  with a partly blended neighbour on SUB64P/160P/400P in the bottom-right detector corner;
  ramp, rateints, truth.
- :func:`simulate_guider` (:class:`GuiderParams`): 16 Hz fine-guide files
  ``<prefix>_gs-fg_<n>_cal.fits`` (GuiderCalModel with Pointing and FGS Centroid Packet
  tables) covering a science exposure written alongside (imaging by default).

Each group of each integration is ``kTC + Poisson(rate) accumulated / gain + read noise +
cosmic-ray steps + P``, where P is the injected component: a pre-amplifier offset per
amplifier per group, 1/f noise made as a time stream per output at the pixel clock and
sampled at each pixel's read tick (part of it common to all outputs), and odd/even column
offsets. Rateints is the least-squares slope with the true jumps excluded. The star moves
with jitter, drift and one antenna move, and transits mid-exposure.

The truth file (``<prefix>_truth.fits``) holds: primary keywords SIMKIND, SEED, GAIN,
RDNOISE, KTCNOISE, TFRAME, TGROUP, NINTS, NGROUPS, ONEOVERF, XOFFSET, YOFFSET, TRANSDEP,
CONTAM and the guider-to-science transform (G2S_ij, S2G_ij, FGS_/SCI_ V3YA, VPAR, SCAL);
images RATE (nints, ny, nx) DN/s, ONEOVERF (nints, ngroups, ny, nx) DN, ONEOVERF_RATE
(nints, ny, nx) DN/s, RATE_VAR (ny, nx) (DN/s)^2; tables COSMIC_RAYS (INT, GROUP, Y, X,
AMPLITUDE_DN, SIGMA), INTEGRATIONS (INT_NUM, MJD_MID, BJD_MID, X, Y, FLUX, SHAPE, HGA, SKY),
HGA_MOVES (START_MJD, STOP_MJD), TRACE for the grism (X, Y_CENTER, WAVELENGTH, DEPTH,
SPECTRUM), GUIDER (MJD, X_MAS, Y_MAS, FLUX) and SCIENCE (INT_NUM, DX_MAS, DY_MAS, DX_PIX,
DY_PIX) for the guider.

Units, amplitudes and their sources, and what is not simulated: ``docs/simulator.md``.
"""

from .params import GrismParams, GuiderParams, ImagingParams

__all__ = [
    "GrismParams",
    "GuiderParams",
    "ImagingParams",
    "simulate_grism",
    "simulate_guider",
    "simulate_imaging",
]


def __getattr__(name):
    # the runners import astropy and scipy; load them on first use so `tsotools --help` stays fast
    if name in ("simulate_grism", "simulate_imaging", "simulate_guider"):
        from . import _run

        return getattr(_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
