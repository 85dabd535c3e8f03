"""Where to cut a grism cutout: rows centred on the trace, clamped at the subarray edge.

The pipeline's ``extract_2d`` for NRC_TSGRISM keeps ``tsgrism_extract_height`` rows (64 in
the parameter reference files) starting at row 0 (jwst ``extract_2d/grisms.py``,
``extract_tso_object``), so SUBGRISM128/256 lose the rows that hold most of the background
(JDox NC-TS02). Here the cutout is centred on the measured trace and as tall as asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CutoutParams", "default_height", "plan_cutout"]

#: Largest default cutout height, pixels (FULL frames get 256 rows: the tallest SUBGRISM).
MAX_DEFAULT_HEIGHT = 256


@dataclass(frozen=True)
class CutoutParams:
    """Settings of ``widen-cutout``.

    Parameters
    ----------
    height : int or None
        Rows in the cutout; None for the default (:func:`default_height`: the whole
        SUBGRISM subarray, 256 rows for FULL).
    center : float or None
        0-based row to centre on; None to centre on the trace measured in the data.
    """

    height: int | None = None
    center: float | None = None

    def __post_init__(self):
        if self.height is not None and (int(self.height) != self.height or self.height < 1):
            raise ValueError(f"height: must be a positive whole number of rows, got {self.height!r}")
        if self.center is not None and not math.isfinite(self.center):
            raise ValueError(f"center: must be a finite row number, got {self.center!r}")


def default_height(ny: int) -> int:
    """Default cutout height for a subarray ``ny`` rows tall: all of it, at most 256 rows."""
    return int(min(ny, MAX_DEFAULT_HEIGHT))


def plan_cutout(ny: int, height: int, center: float) -> tuple[int, bool]:
    """First row of a cutout of ``height`` rows centred on row ``center``.

    Parameters
    ----------
    ny : int
        Rows in the source subarray.
    height : int
        Rows wanted.
    center : float
        0-based row the cutout is centred on: it lands on row ``height // 2`` of the cutout.

    Returns
    -------
    y0 : int
        0-based first source row; the cutout is rows ``y0 .. y0 + height - 1``.
    clamped : bool
        True when the centred cutout ran past an edge of the subarray and was moved inside.

    Raises
    ------
    ValueError
        If ``height`` does not fit in ``ny`` rows.
    """
    if height > ny:
        raise ValueError(f"height: {height} rows do not fit in a subarray of {ny} rows")
    if height < 1:
        raise ValueError(f"height: must be at least 1 row, got {height}")
    y0 = int(math.floor(center + 0.5)) - height // 2
    clamped_y0 = min(max(y0, 0), ny - height)
    return clamped_y0, clamped_y0 != y0
