"""tsotools: fix what the JWST pipeline leaves undone for NIRCam time-series observations."""

__version__ = "0.1.0"
