"""Summaries of products for ``tsotools info``: what a file is and what was done to it."""

from __future__ import annotations

import numpy as np

from .io import STATUS_KEYWORDS, Product

__all__ = ["summarize", "format_summary"]

_TOOL_BY_KEYWORD = {v: k for k, v in STATUS_KEYWORDS.items()}


def summarize(prod: Product) -> dict:
    """Describe an open product as a JSON-ready dict.

    Keys: path, kind, datamodel, exp_type, instrument, detector, filter, pupil, subarray,
    shape, nints, ngroups, segment (intstart, intend, exsegnum, exsegtot), subarray_origin
    and size (0-based), noutputs, amplifiers (column ranges), reference_rows and
    reference_columns (counts and sides), xref/yref (0-based), time span (MJD UTC),
    pipeline_steps and tsotools_steps (status keywords).
    """
    info = prod.info
    out = {
        "path": info.path,
        "kind": info.kind,
        "datamodel": info.datamodel,
        "exp_type": info.exp_type,
        "instrument": info.instrument,
        "detector": info.detector,
        "filter": info.filter,
        "pupil": info.pupil,
        "subarray": info.subarray,
        "shape": list(info.shape),
        "nints": info.nints,
        "ngroups": info.ngroups,
        "segment": {
            "intstart": info.intstart,
            "intend": info.intend,
            "exsegnum": info.exsegnum,
            "exsegtot": info.exsegtot,
        },
        "tframe_s": info.tframe_s,
        "tgroup_s": info.tgroup_s,
    }
    geo = info.geometry
    if geo is not None:
        rows, cols = geo.reference_rows, geo.reference_columns
        out.update(
            {
                "subarray_origin": [geo.xstart, geo.ystart],
                "subarray_size": [geo.nx, geo.ny],
                "noutputs": geo.noutputs,
                "amplifiers": [list(a) for a in geo.amplifiers],
                "reference_rows": {"count": int(len(rows)), "sides": _sides(rows, geo.ny, "bottom", "top")},
                "reference_columns": {"count": int(len(cols)), "sides": _sides(cols, geo.nx, "left", "right")},
            }
        )
    if info.cutout_origin is not None:
        out["cutout_origin"] = list(info.cutout_origin)
    if info.xref is not None:
        out["xref"], out["yref"] = info.xref, info.yref
    times = prod.integration_times() if prod.kind != "guider" else None
    if times is not None and np.isfinite(times["mjd_start"]).any() and np.isfinite(times["mjd_end"]).any():
        start, end = np.nanmin(times["mjd_start"]), np.nanmax(times["mjd_end"])
        out["mjd_start"], out["mjd_end"] = _num(start), _num(end)
        out["duration_s"] = _num((end - start) * 86400.0)
    else:
        start, end = prod.primary_header.get("EXPSTART"), prod.primary_header.get("EXPEND")
        if isinstance(start, (int, float)):
            out["mjd_start"] = _num(start)
            out["mjd_end"] = _num(end) if isinstance(end, (int, float)) else None
    out["pipeline_steps"] = {k: v for k, v in info.steps.items() if k not in _TOOL_BY_KEYWORD}
    out["tsotools_steps"] = {_TOOL_BY_KEYWORD[k]: v for k, v in info.steps.items() if k in _TOOL_BY_KEYWORD}
    return out


def _num(value):
    value = float(value)
    return None if not np.isfinite(value) else value


def _sides(index, n, low, high) -> list[str]:
    sides = []
    if len(index) and index.min() == 0:
        sides.append(low)
    if len(index) and index.max() == n - 1:
        sides.append(high)
    return sides


def format_summary(summary: dict) -> str:
    """Render a :func:`summarize` dict as aligned human-readable lines."""
    s = summary
    lines = [f"{s['path']}", f"  kind        {s['kind']} ({s['datamodel']})"]
    mode = " / ".join(str(v) for v in (s.get("exp_type"), s.get("detector")) if v)
    if mode:
        lines.append(f"  mode        {mode}")
    optics = " + ".join(str(v) for v in (s.get("filter"), s.get("pupil")) if v)
    if optics:
        lines.append(f"  filter      {optics}")
    if s.get("subarray") or s.get("subarray_size"):
        where = ""
        if s.get("subarray_origin"):
            (x0, y0), (nx, ny) = s["subarray_origin"], s["subarray_size"]
            where = f" at x={x0}, y={y0} (0-based), {nx} x {ny} px"
        lines.append(f"  subarray    {s.get('subarray') or '?'}{where}")
    lines.append(f"  shape       {' x '.join(map(str, s['shape']))}  (nints={s['nints']}, ngroups={s.get('ngroups')})")
    seg = s["segment"]
    segtxt = f"integrations {seg['intstart']}-{seg['intend']}"
    if seg.get("exsegnum"):
        segtxt += f", segment {seg['exsegnum']} of {seg.get('exsegtot') or '?'}"
    lines.append(f"  segment     {segtxt}")
    if "amplifiers" in s:
        amps = ", ".join(f"{a}-{b - 1}" for a, b in s["amplifiers"])
        lines.append(f"  amplifiers  {s['noutputs']} output(s); columns {amps}")
        rr, rc = s["reference_rows"], s["reference_columns"]
        lines.append(
            f"  refpix      rows: {rr['count']} ({', '.join(rr['sides']) or 'none'}); "
            f"columns: {rc['count']} ({', '.join(rc['sides']) or 'none'})"
        )
    if "xref" in s:
        xy = ", ".join("?" if v is None else f"{v:.2f}" for v in (s["xref"], s["yref"]))
        lines.append(f"  reference   XREF_SCI/YREF_SCI = ({xy}) 0-based")
    if s.get("mjd_start") is not None:
        span = f"MJD {s['mjd_start']:.6f} - {s['mjd_end']:.6f}" if s.get("mjd_end") is not None else f"MJD {s['mjd_start']:.6f}"
        if s.get("duration_s") is not None:
            span += f" ({s['duration_s']:.1f} s)"
        lines.append(f"  time        {span}")
    steps = s["tsotools_steps"]
    lines.append(f"  tsotools    {', '.join(steps) if steps else 'no steps applied'}")
    return "\n".join(lines)
