"""``tsotools plot KIND FILE...`` and every ``--plot PNG``: read a product or table, draw, save.

One function per kind turns the files into the arrays a figure function of this package
takes; files are read only through :mod:`tsotools.io`. ``run_plot`` is what the ``plot``
command and the ``--plot`` options of the other commands call, so a plot made during a run
and one made later from its outputs are the same figure.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ProductError, TsoToolsError

__all__ = ["KINDS", "check_plot_output", "run_plot", "save_sweep_plot"]

log = logging.getLogger(__name__)

#: Plot kinds, the files each reads, and what it draws (shown by ``tsotools plot -h``).
KINDS = {
    "lightcurve": "white light (spectra --white-light), photometry table, x1dints, or "
    "spectroscopic light curves (spectra --lightcurves): flux with binned points",
    "spectra": "x1dints: time x wavelength image of flux / median, median spectrum, white light",
    "centroids": "centroid table (or a jitter table with DX_PIX/DY_PIX): position per integration",
    "jitter": "jitter-from-guidestar table: guide-star offsets, antenna moves, integrations",
    "oneoverf": "BEFORE AFTER (ramp, rateints, calints or cutout): one frame before/after the 1/f "
    "correction and the row profiles",
    "sweep": "rejump --report table: light-curve noise and flagged pixels per jump threshold",
    "noise": "spectra --noise-report table: scatter vs bin width next to 1/sqrt(N)",
    "frame": "one or more products (rateints, calints, cutout): one integration each, at its "
    "subarray rows, on one colour scale (a cutout against its subarray, a neighbour star)",
}

_NFILES = {"oneoverf": (2, 2), "frame": (1, 4)}


def check_plot_output(path, *, overwrite: bool = False, inputs=()) -> Path:
    """Refuse a plot path before any work (exists without overwrite, not .png, an input)."""
    import os

    from ..errors import OutputError
    from ..io import check_output

    for other in inputs:  # an output of the same command, not written yet
        if other and os.path.abspath(other) == os.path.abspath(path):
            raise OutputError(
                f"{path}: is also an input or output of this command; choose another name"
            )
    existing = tuple(str(p) for p in inputs if p and os.path.exists(p))
    return check_output(path, overwrite=overwrite, inputs=existing, suffix=".png")


def run_plot(
    kind: str,
    inputs,
    output,
    *,
    overwrite: bool = False,
    bin_size: int | None = None,
    integration: int | None = None,
    title: str | None = None,
) -> dict:
    """Draw one kind of figure from tsotools or pipeline outputs and write it as PNG.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    inputs : sequence of path-like
        One file (two for ``oneoverf``: before, after).
    output : path-like
        ``.png`` to write (atomically).
    overwrite : bool
    bin_size : int, optional
        Integrations per binned point of a light curve  [default: about 30 points].
    integration : int, optional
        1-based integration of the ``oneoverf`` and ``frame`` images  [default: the first].
    title : str, optional
        Figure title  [default: from the file name].

    Returns
    -------
    dict
        JSON-ready summary: kind, inputs, output, key figures, "message".
    """
    from ..io import save_figure

    if kind not in KINDS:
        raise TsoToolsError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    inputs = [str(p) for p in inputs]
    lo, hi = _NFILES.get(kind, (1, 1))
    if not lo <= len(inputs) <= hi:
        what = {(2, 2): "BEFORE and AFTER files", (1, 1): "one file"}.get(
            (lo, hi), f"{lo} to {hi} files"
        )
        raise TsoToolsError(f"plot {kind} takes {what}, got {len(inputs)}")
    if bin_size is not None and bin_size < 1:
        raise TsoToolsError(f"invalid value for --bin: {bin_size} (at least 1 integration)")
    check_plot_output(output, overwrite=overwrite, inputs=inputs)
    loader = _LOADERS[kind]
    options = {"bin_size": bin_size} if kind == "lightcurve" else {}
    if kind in ("oneoverf", "frame"):
        options["integration"] = integration
    title = title or " vs ".join(Path(p).name for p in inputs)
    fig, facts = loader(*inputs, title=title, **options)
    save_figure(fig, output, overwrite=overwrite, inputs=tuple(inputs))
    describe = facts.pop("describe", kind)
    summary = {
        "kind": kind,
        "inputs": inputs,
        "output": str(output),
        **facts,
        "message": f"wrote {output}: {describe}",
    }
    log.debug("%s", summary["message"])
    return summary


def save_sweep_plot(rows, output, *, overwrite: bool = False, title: str = "") -> dict:
    """Plot a jump-threshold sweep given as rows (``run_rejump`` summary "sweep") as PNG."""
    from astropy.table import Table

    from ..io import save_figure
    from .jumps import sweep_figure

    table = Table(rows=[dict(r) for r in rows])
    save_figure(sweep_figure(table, title=title), output, overwrite=overwrite)
    facts = _sweep_facts(table)
    return {
        "kind": "sweep",
        "output": str(output),
        **facts,
        "message": f"wrote {output}: {facts.pop('describe')}",
    }


# --------------------------------------------------------------------------- reading
def _table(path):
    """Read a table file (ECSV/FITS table); None if ``path`` is a pipeline product."""
    from ..io import open_product, read_table

    if str(path).lower().endswith(".ecsv"):
        return read_table(path)
    try:
        with open_product(path):
            return None
    except ProductError:
        return read_table(path)


def _time(table):
    for name in ("BJD_TDB", "MJD_UTC", "MJD", "int_mid_BJD_TDB", "int_mid_MJD_UTC"):
        if name in table.colnames:
            return np.asarray(table[name], dtype=float), name
    for name in ("INT_NUM", "integration_number"):
        if name in table.colnames:  # no time column: one "day" per integration would be wrong
            return np.asarray(table[name], dtype=float) / 24.0, "integration/24"
    return np.arange(len(table), dtype=float) / 24.0, "row/24"


def _spectra_arrays(path):
    """Wavelength (ncols,), time (nints,) in days, flux (nints, ncols) of an x1dints file."""
    from ..io import open_product

    with open_product(path, expect=("x1dints",), tool="plot") as prod:
        nspec = sum(1 for name in prod.extnames if name == "EXTRACT1D")
        if nspec <= 1:
            t = prod.read_table("EXTRACT1D")
            flux = np.atleast_2d(np.asarray(t["FLUX"], dtype=float))
            waves = np.atleast_2d(np.asarray(t["WAVELENGTH"], dtype=float))
            ints = (
                np.asarray(t["INT_NUM"], dtype=int)
                if "INT_NUM" in t.colnames
                else np.arange(1, len(t) + 1)
            )
            if "N_ALONGDISP" in t.colnames:  # vectors are NaN-padded beyond N_ALONGDISP
                n = int(np.max(t["N_ALONGDISP"]))
                flux, waves = flux[:, :n], waves[:, :n]
        else:
            rows = [prod.read_table(("EXTRACT1D", k + 1)) for k in range(nspec)]
            n = max(len(r) for r in rows)
            flux = np.full((nspec, n), np.nan)
            waves = np.full((nspec, n), np.nan)
            for k, r in enumerate(rows):
                flux[k, : len(r)] = r["FLUX"]
                waves[k, : len(r)] = r["WAVELENGTH"]
            ints = np.arange(1, nspec + 1)
        times = prod.integration_times()
    with np.errstate(all="ignore"):
        wave = np.nanmedian(waves, axis=0)
    if times is not None and len(times) == len(flux):
        time, label = np.asarray(times["bjd_mid"], dtype=float), "BJD_TDB"
        if not np.isfinite(time).all():
            time, label = np.asarray(times["mjd_mid"], dtype=float), "MJD_UTC"
    else:
        time, label = ints.astype(float) / 24.0, "integration/24"
    return wave, time, flux, label


# ---------------------------------------------------------------------------- kinds
def _lightcurve(path, *, title, bin_size=None):
    from .lightcurve import default_bin_size, lightcurve_figure, lightcurves_figure

    table = _table(path)
    if table is None:  # an x1dints: the white light is the sum over wavelengths
        wave, time, flux, label = _spectra_arrays(path)
        good = np.isfinite(wave) & np.all(np.isfinite(flux), axis=0)
        white = flux[:, good].sum(axis=1) if good.any() else np.full(len(flux), np.nan)
        fig = lightcurve_figure(
            time,
            white,
            bin_size=bin_size,
            time_label=label,
            ylabel="relative white-light flux",
            title=title,
        )
        return fig, _lc_facts(
            white, bin_size, default_bin_size, "white light summed over the x1dints"
        )
    time, label = _time(table)
    cols = table.colnames
    if (
        "BIN" in cols and "FLUX" in cols
    ):  # spectroscopic light curves: one row per integration and bin
        bins = np.unique(np.asarray(table["BIN"]))
        sel = [np.asarray(table["BIN"]) == b for b in bins]
        flux = np.array([np.asarray(table["FLUX"], float)[s] for s in sel])
        wave_col = "WAVE_MID" if "WAVE_MID" in cols else "BIN"
        wave = np.array([float(np.asarray(table[wave_col], float)[s][0]) for s in sel])
        fig = lightcurves_figure(
            time[sel[0]], flux, wave, bin_size=bin_size, time_label=label, title=title
        )
        facts = _lc_facts(
            flux[0], bin_size, default_bin_size, f"{len(bins)} spectroscopic light curves"
        )
        facts["bins"] = len(bins)
        return fig, facts
    for name, err, ylabel in (
        ("whitelight_flux", "whitelight_flux_err", "relative white-light flux"),
        ("flux", "flux_err", "relative flux (aperture photometry)"),
        ("net_aperture_sum", "net_aperture_sum_err", "relative flux (aperture photometry)"),
        ("FLUX", "FLUX_ERR", "relative flux"),
    ):
        if name in cols:
            flux = np.asarray(table[name], dtype=float)
            ferr = np.asarray(table[err], dtype=float) if err in cols else None
            fig = lightcurve_figure(
                time, flux, ferr, bin_size=bin_size, time_label=label, ylabel=ylabel, title=title
            )
            return fig, _lc_facts(flux, bin_size, default_bin_size, f"light curve of column {name}")
    raise ProductError(
        f"{path}: no light-curve column (whitelight_flux, flux, net_aperture_sum or FLUX)"
    )


def _lc_facts(flux, bin_size, default_bin_size, describe):
    from .lightcurve import p2p_ppm

    flux = np.asarray(flux, dtype=float)
    rel = flux / np.nanmedian(flux) if np.isfinite(flux).any() else flux
    p2p = p2p_ppm(rel)
    size = bin_size or default_bin_size(len(rel))
    return {
        "points": int(len(rel)),
        "bin_size": int(size),
        "p2p_ppm": p2p,
        "describe": f"{describe}, {len(rel)} integrations, binned by {size}; "
        f"point-to-point {p2p:.0f} ppm",
    }


def _spectra(path, *, title):
    from .spectra import spectra_figure

    wave, time, flux, label = _spectra_arrays(path)
    fig = spectra_figure(wave, time, flux, time_label=label, title=title)
    ok = np.isfinite(wave)
    lo, hi = (float(np.nanmin(wave)), float(np.nanmax(wave))) if ok.any() else (float("nan"),) * 2
    return fig, {
        "nints": int(flux.shape[0]),
        "columns": int(flux.shape[1]),
        "wave_range_um": [lo, hi],
        "describe": f"{flux.shape[0]} spectra x {int(ok.sum())} columns, {lo:.3f}-{hi:.3f} um",
    }


def _centroids(path, *, title):
    from .centroids import centroids_figure

    table = _table(path)
    if table is None:
        raise ProductError(
            f"{path}: expected a centroid table (tsotools centroid), got a pipeline product"
        )
    time, label = _time(table)
    cols = table.colnames
    for xc, yc in (("X", "Y"), ("DX_PIX", "DY_PIX"), ("centroid_x", "centroid_y")):
        if xc in cols and yc in cols:
            break
    else:
        raise ProductError(
            f"{path}: no position columns (X/Y, DX_PIX/DY_PIX or centroid_x/centroid_y)"
        )
    flag = None
    for name in ("FLAG", "HGA_FLAG"):
        if name in cols:
            flag = np.asarray(table[name])
            break
    ref = (table.meta.get("XREF", np.nan), table.meta.get("YREF", np.nan)) if xc == "X" else None
    x, y = np.asarray(table[xc], float), np.asarray(table[yc], float)
    fig = centroids_figure(
        time, x, y, flag=flag, ref=ref, time_label=label, labels=(xc, yc), title=title
    )
    ok = np.isfinite(x) & np.isfinite(y)
    rms = [float(np.std(x[ok])), float(np.std(y[ok]))] if ok.any() else [float("nan")] * 2
    return fig, {
        "nints": int(len(x)),
        "rms_px": rms,
        "describe": f"{len(x)} positions ({xc}, {yc}), rms {rms[0]:.4f}, {rms[1]:.4f} px",
    }


def _jitter(path, *, title):
    from ..io import read_fits_table
    from .jitter import jitter_figure

    table = _table(path)
    if table is None:
        raise ProductError(
            f"{path}: expected a jitter-from-guidestar table, got a pipeline product"
        )
    cols = table.colnames
    if str(path).lower().endswith(".ecsv"):
        moves = [(m["START_MJD"], m["STOP_MJD"]) for m in table.meta.get("HGA_MOVES", [])]
    else:
        mt = read_fits_table(path, "HGA_MOVES")
        moves = [] if mt is None else list(zip(mt["START_MJD"], mt["STOP_MJD"]))
    moves = np.asarray(moves, dtype=float).reshape(-1, 2)
    if "DX_MAS" in cols:  # one row per science integration
        fig = jitter_figure(None, None, None, moves, integrations=table, title=title)
        x, y = np.asarray(table["DX_MAS"], float), np.asarray(table["DY_MAS"], float)
        what = f"{len(table)} integrations"
    elif "X_MAS" in cols:  # the 16 Hz series
        x, y = np.asarray(table["X_MAS"], float), np.asarray(table["Y_MAS"], float)
        fig = jitter_figure(np.asarray(table["MJD"], float), x, y, moves, title=title)
        what = f"{len(table)} guider frames"
    else:
        raise ProductError(f"{path}: no DX_MAS/DY_MAS or X_MAS/Y_MAS columns (not a jitter table)")
    ok = np.isfinite(x) & np.isfinite(y)
    rms = float(np.sqrt(np.var(x[ok]) + np.var(y[ok]))) if ok.any() else float("nan")
    return fig, {
        "rows": int(len(table)),
        "hga_moves": int(len(moves)),
        "rms_mas": rms,
        "describe": f"{what}, {len(moves)} antenna move(s), {rms:.2f} mas rms",
    }


def _oneoverf(before_path, after_path, *, title, integration=None):
    from ..io import open_product
    from .oneoverf import oneoverf_figure

    kinds = ("ramp", "rateints", "calints", "cutout")
    with (
        open_product(before_path, expect=kinds, tool="plot") as before,
        open_product(after_path, expect=kinds, tool="plot") as after,
    ):
        if before.kind != after.kind or before.shape("SCI") != after.shape("SCI"):
            raise ProductError(
                f"{after_path}: not the same product as {before_path} "
                f"({after.kind} {after.shape('SCI')} vs {before.kind} {before.shape('SCI')})"
            )
        nints = before.nints
        i = 0 if integration is None else integration - 1
        if not 0 <= i < nints:
            raise TsoToolsError(f"invalid value for --integration: {integration} (1..{nints})")
        frames = []
        for prod in (before, after):
            sci = prod.read("SCI", i).astype(float)
            frames.append(sci[-1] - sci[0] if sci.ndim == 3 else sci)
        geometry = before.info.geometry
        unit = "DN" if before.kind == "ramp" else str(before.header("SCI").get("BUNIT", "DN/s"))
        ngroups = before.shape("SCI")[1] if before.kind == "ramp" else None
    label = f"integration {i + 1}, group {ngroups} - group 1" if ngroups else f"integration {i + 1}"
    edges = [x0 for x0, _ in geometry.amplifiers[1:]] if geometry is not None else []
    fig = oneoverf_figure(
        frames[0], frames[1], amp_edges=edges, unit=unit, label=label, title=f"{title}: {label}"
    )
    facts = _oneoverf_facts(*frames)
    facts["integration"] = i + 1
    facts["describe"] = (
        f"{label}; row-median rms {facts['row_rms_before']:.2f} -> "
        f"{facts['row_rms_after']:.2f} {unit}"
    )
    return fig, facts


def _oneoverf_facts(before, after):
    from .oneoverf import background_pixels

    use = background_pixels(before, after)
    out = {}
    for name, frame in (("before", before), ("after", after)):
        rows = np.array([np.median(frame[r][use[r]]) for r in range(len(frame)) if use[r].any()])
        out[f"row_rms_{name}"] = float(np.std(rows)) if rows.size else float("nan")
    return out


def _frame(*paths, title, integration=None):
    from ..io import open_product
    from .frames import frames_figure

    frames, row0s, labels, nrows, unit = [], [], [], 0, "DN/s"
    i = 0 if integration is None else integration - 1
    for path in paths:
        with open_product(path, expect=("rateints", "calints", "cutout"), tool="plot") as prod:
            if not 0 <= i < prod.nints:
                raise TsoToolsError(
                    f"invalid value for --integration: {integration} (1..{prod.nints} in {path})"
                )
            frames.append(prod.read("SCI", i).astype(float))
            sci = prod.header("SCI")
            row0 = int(sci.get("SLTSTRT2", 1)) - 1 if prod.kind in ("calints", "cutout") else 0
            row0s.append(row0)
            geometry = prod.info.geometry
            nrows = max(nrows, geometry.ny if geometry is not None else row0 + frames[-1].shape[0])
            unit = str(sci.get("BUNIT", unit))
            labels.append(f"{Path(path).name} ({prod.kind}, {prod.info.subarray})")
    fig = frames_figure(
        frames, row0s, labels, unit=unit, nrows=nrows, title=f"{title}: integration {i + 1}"
    )
    heights = [int(f.shape[0]) for f in frames]
    return fig, {
        "integration": i + 1,
        "rows": [[r, r + h - 1] for r, h in zip(row0s, heights)],
        "describe": f"integration {i + 1} of {len(frames)} product(s), rows "
        + ", ".join(f"{r}-{r + h - 1}" for r, h in zip(row0s, heights)),
    }


def _sweep(path, *, title):
    from .jumps import sweep_figure

    table = _table(path)
    if table is None or "threshold" not in table.colnames:
        raise ProductError(
            f"{path}: expected a 'rejump --report' table (threshold, flagged_pixel_fraction, ...)"
        )
    return sweep_figure(table, title=title), _sweep_facts(table)


def _sweep_facts(table):
    thr = np.asarray(table["threshold"], float)
    best = np.asarray(table["best"], bool) if "best" in table.colnames else np.zeros(len(thr), bool)
    b = float(thr[best][0]) if best.any() else None
    return {
        "thresholds": thr.tolist(),
        "best_threshold": b,
        "describe": f"{len(thr)} thresholds"
        + (f", lowest noise at {b:g} sigma" if b is not None else ""),
    }


def _noise(path, *, title):
    from .spectra import noise_figure

    table = _table(path)
    if table is None or "SCATTER_PPM" not in table.colnames:
        raise ProductError(
            f"{path}: expected a 'spectra --noise-report' table (WIDTH, SCATTER_PPM, ...)"
        )
    ratio = float(table["RATIO"][-1])
    return noise_figure(table, title=title), {
        "max_width": int(table["WIDTH"][-1]),
        "ratio_at_max_width": ratio,
        "describe": f"scatter {ratio:.2f}x the 1/sqrt(N) expectation at "
        f"{int(table['WIDTH'][-1])} columns",
    }


_LOADERS = {
    "lightcurve": _lightcurve,
    "spectra": _spectra,
    "centroids": _centroids,
    "jitter": _jitter,
    "oneoverf": _oneoverf,
    "sweep": _sweep,
    "noise": _noise,
    "frame": _frame,
}
