"""Figures for the command line's --plot options: each function returns a matplotlib Figure.

No file I/O here: :func:`tsotools.io.save_figure` writes them. The Agg backend is used, so
no display is needed.
"""

import matplotlib

matplotlib.use("Agg")
