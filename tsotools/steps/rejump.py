"""``tsotools rejump``: clear a ramp's jump flags, detect jumps again, optionally sweep thresholds.

Jump detection compares each pixel's group differences across every integration (a median
over the whole exposure), so the ramp is processed in blocks of rows holding every
integration of those rows: memory is set by ``memory_mb``, not by the file. Each block is
read with one extra row above and below so that neighbour flagging across block edges is
exact. Flags are kept as a sorted list of flagged pixel-groups (jumps are rare), then
GROUPDQ is rewritten one integration at a time; SCI and every other HDU are copied byte
for byte.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from .. import dqflags
from ..algorithms import jumps as jp
from ..algorithms.ramps import RampFitParams, fit_ramps
from ..detector import default_gain, default_readnoise_cds
from ..errors import ProductError, TsoToolsError
from ..io import derive_product, open_product, read_reference_image, read_row_block, write_table
from ..progress import progress_bar

__all__ = ["DEFAULT_MEMORY_MB", "SOURCE_SNR", "resolve_noise", "run_rejump"]

log = logging.getLogger(__name__)

#: Working memory for one block of rows (all integrations), MB.
DEFAULT_MEMORY_MB = 256
#: Bytes of working memory per ramp sample during detection (input, differences, sort, ratio).
_BYTES_PER_SAMPLE = 48
#: A pixel belongs to the white-light aperture of a sweep when its median rate is this many
#: times its per-integration uncertainty.
SOURCE_SNR = 10.0


# ------------------------------------------------------------------ gain and read noise
def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def resolve_noise(prod, gain=None, readnoise=None):
    """Gain (e-/DN) and CDS read noise (DN) for a ramp: numbers, reference files or defaults.

    Parameters
    ----------
    prod : Product
        The open ramp.
    gain, readnoise : float, str or None
        A number, a path to a CRDS-style GAIN / READNOISE reference FITS (cut to the
        subarray), or None for the NIRCam defaults of the detector (with a warning).

    Returns
    -------
    gain_2d, readnoise_2d : float32 ndarray, shape (ny, nx)
    sources : dict
        How each was obtained, for provenance.
    """
    geom = prod.info.geometry
    shape = (geom.ny, geom.nx)
    det = prod.info.detector or ""
    out, sources = [], {}
    for name, value, reftype, default, unit in (
        ("gain", gain, "GAIN", default_gain(det), "e-/DN"),
        ("readnoise", readnoise, "READNOISE", default_readnoise_cds(det), "DN (CDS)"),
    ):
        if value is None:
            log.warning(
                "no --%s given: using the NIRCam default for %s, %.4g %s; give a CRDS %s file for "
                "per-pixel values",
                name,
                det or "this detector",
                default,
                unit,
                reftype,
            )
            arr, src = np.full(shape, default, dtype=np.float32), f"default {default:.4g}"
        elif _number(value) is not None:
            num = _number(value)
            if not (math.isfinite(num) and num > 0):
                raise TsoToolsError(
                    f"invalid value for --{name}: must be a positive number or a file, "
                    f"got {value!r}"
                )
            arr, src = np.full(shape, num, dtype=np.float32), f"{num:g}"
        else:
            if not Path(str(value)).is_file():
                raise TsoToolsError(
                    f"invalid value for --{name}: {value!r} is neither a number nor a file"
                )
            arr = read_reference_image(value, geom, reftype)
            src = Path(str(value)).name
            bad = ~(np.isfinite(arr) & (arr > 0))
            if bad.any():
                log.warning(
                    "%s: %d pixels without a valid %s; using %.4g there",
                    value,
                    int(bad.sum()),
                    name,
                    default,
                )
                arr = np.where(bad, np.float32(default), arr).astype(np.float32)
        out.append(arr)
        sources[name] = src
    return out[0], out[1], sources


# ------------------------------------------------------------------------- the step
def run_rejump(
    input_path,
    output_path=None,
    *,
    params: jp.JumpParams | None = None,
    sweep=None,
    use_best: bool = False,
    report_path=None,
    gain=None,
    readnoise=None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Re-detect cosmic-ray jumps in a ramp and write it with the new JUMP_DET flags.

    Parameters
    ----------
    input_path : path-like
        A ramp (RampModel, 4-D SCI and GROUPDQ).
    output_path : path-like or None
        Ramp to write (same HDUs, GROUPDQ rewritten). None only with ``sweep``.
    params : JumpParams
        Method and thresholds; ``params.threshold`` is the one written unless ``use_best``.
    sweep : sequence of float, optional
        Thresholds (sigma) to compare: flagged fractions and the noise of the
        per-integration white light (grism) or rate images (imaging) for each.
    use_best : bool
        With ``sweep``: write the flags of the threshold with the lowest noise.
    report_path : path-like, optional
        ECSV (or FITS) table of the sweep.
    gain, readnoise : float, str or None
        See :func:`resolve_noise`.
    memory_mb : float
        Working memory for one block of rows.
    overwrite, progress : bool

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or jp.JumpParams()
    t_start = time.perf_counter()
    sweep = sorted({float(t) for t in sweep}) if sweep else None
    if sweep is not None and not all(math.isfinite(t) and t > 0 for t in sweep):
        raise TsoToolsError(f"invalid value for --sweep: thresholds must be positive, got {sweep}")
    if output_path is None and sweep is None:
        raise TsoToolsError("nothing to do: give -o OUTPUT, or --sweep to compare thresholds")
    if use_best and sweep is None:
        raise TsoToolsError("--threshold best needs --sweep")
    if report_path is not None and sweep is None:
        raise TsoToolsError("--report needs --sweep")
    if not memory_mb > 0:
        raise TsoToolsError(f"memory must be positive, got {memory_mb}")
    inputs = (str(input_path),) + ((str(report_path),) if report_path else ())
    if (
        output_path is not None
        and report_path is not None
        and Path(output_path).resolve() == Path(report_path).resolve()
    ):
        raise TsoToolsError("--report and -o must be different files")

    with open_product(input_path, expect=("ramp",), tool="rejump") as prod:
        info = prod.info
        if not prod.has("GROUPDQ"):
            raise ProductError(
                f"{input_path}: no GROUPDQ extension (run dq_init and saturation first)"
            )
        nints, ngroups, ny, nx = info.shape
        geom = info.geometry
        method = jp.choose_method(nints, params)
        why = ""
        if params.method == "auto":
            why = (
                f" (auto: {nints} integrations >= {params.min_temporal_ints})"
                if method == "temporal"
                else f" (auto: {nints} integrations < {params.min_temporal_ints})"
            )
        log.info("jump detection method: %s%s", method, why)
        if ngroups < 2:
            raise ProductError(
                f"{input_path}: {ngroups} group per integration; jumps need at least 2"
            )
        if ngroups == 2 and method == "two-point":
            log.warning(
                "%s: 2 groups per integration give one difference per ramp, from which two-point "
                "detection (like the pipeline's) cannot tell a jump; use --method temporal "
                "(needs >= %d integrations)", input_path, params.min_temporal_ints)
        gain2d, rn2d, sources = resolve_noise(prod, gain, readnoise)
        nframes = int(info.nframes or 1)
        groupgap = int(info.groupgap or 0)
        tframe = info.tframe_s
        if sweep is not None and not (tframe and tframe > 0):
            raise ProductError(f"{input_path}: no TFRAME keyword; the sweep needs it to fit ramps")
        thresholds = list(sweep) if sweep else []
        if output_path is not None and not use_best and params.threshold not in thresholds:
            thresholds.append(float(params.threshold))
        thresholds.sort()
        run_params = jp.JumpParams(**{**params.__dict__, "method": method})

        rows = int(max(1, min(ny, memory_mb * 2**20 // (_BYTES_PER_SAMPLE * nints * ngroups * nx))))
        plane = ny * nx
        flagged = {t: [] for t in thresholds}
        stats = _SweepStats(thresholds, nints, geom) if sweep else None
        log.info(
            "%s: %d integrations x %d groups x %d x %d; blocks of %d rows",
            Path(input_path).name,
            nints,
            ngroups,
            ny,
            nx,
            rows,
        )
        with progress_bar("rejump", total=ny, enabled=progress) as advance:
            for y0 in range(0, ny, rows):
                y1 = min(y0 + rows, ny)
                h0, h1 = max(y0 - 1, 0), min(y1 + 1, ny)
                sci = read_row_block(prod, "SCI", h0, h1)
                gdq = read_row_block(prod, "GROUPDQ", h0, h1) & np.uint8(0xFF ^ dqflags.JUMP_DET)
                masks = jp.sweep_jumps(
                    sci,
                    gdq,
                    gain2d[h0:h1],
                    rn2d[h0:h1],
                    thresholds,
                    run_params,
                    nframes=nframes,
                    amplifiers=geom.amplifiers,
                )
                keep = slice(y0 - h0, y0 - h0 + (y1 - y0))
                sci, gdq = sci[:, :, keep], gdq[:, :, keep]
                for t, m in zip(thresholds, masks):
                    m = m[:, :, keep]
                    i, g, yy, xx = np.nonzero(m)
                    flagged[t].append(
                        ((i.astype(np.int64) * ngroups + g) * ny + (yy + y0)) * nx + xx
                    )
                    if stats is not None:
                        stats.add_block(
                            t,
                            sci,
                            gdq,
                            m,
                            gain2d[y0:y1],
                            rn2d[y0:y1],
                            y0,
                            tframe,
                            nframes,
                            groupgap,
                        )
                del masks
                advance(y1 - y0)
        flagged = {
            t: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64)
            for t, v in flagged.items()
        }

        n_groups_total = nints * (ngroups - 1) * plane
        n_ramps = nints * plane
        summary = {
            "input": str(input_path),
            "method": method,
            "gain": sources["gain"],
            "readnoise": sources["readnoise"],
            "nints": nints,
            "ngroups": ngroups,
        }
        table = None
        if stats is not None:
            table = stats.table(flagged, n_groups_total, n_ramps, ngroups, plane, info.is_grism)
            best = (
                float(table["threshold"][np.flatnonzero(table["best"])[0]])
                if table["best"].any()
                else None
            )
            for line in table.pformat(max_lines=-1, max_width=-1):
                log.info("%s", line)
            summary["sweep"] = [{k: _jsonable(row[k]) for k in table.colnames} for row in table]
            summary["best_threshold"] = best
            if report_path is not None:
                write_table(
                    table,
                    report_path,
                    tool="rejump",
                    overwrite=overwrite,
                    inputs=(str(input_path),),
                    params={
                        "method": method,
                        "sweep": sweep,
                        "gain": sources["gain"],
                        "readnoise": sources["readnoise"],
                    },
                )
                summary["report"] = str(report_path)

        chosen = None
        if output_path is not None:
            if use_best:
                chosen = summary.get("best_threshold")
                if chosen is None:
                    raise TsoToolsError(
                        "no threshold had a measurable noise; give a number for --threshold"
                    )
            else:
                chosen = float(params.threshold)
            idx = flagged[chosen]
            hist = {
                "method": method,
                "threshold": chosen,
                "gain": sources["gain"],
                "readnoise": sources["readnoise"],
                "flag_neighbors": params.flag_neighbors,
            }
            with derive_product(
                prod,
                output_path,
                {"GROUPDQ": None},
                tool="rejump",
                params=hist,
                overwrite=overwrite,
                inputs=inputs,
            ) as writer:
                bounds = np.searchsorted(
                    idx, np.arange(nints + 1, dtype=np.int64) * ngroups * plane
                )
                for i in range(nints):
                    gdq = prod.read("GROUPDQ", i) & np.uint8(0xFF ^ dqflags.JUMP_DET)
                    local = idx[bounds[i] : bounds[i + 1]] - i * ngroups * plane
                    gdq.reshape(-1)[local] |= np.uint8(dqflags.JUMP_DET)
                    writer.write("GROUPDQ", i, gdq)
            summary["output"] = str(output_path)
            summary["threshold"] = chosen
            summary["flagged_group_fraction"] = idx.size / n_groups_total
            summary["flagged_pixel_fraction"] = _count_ramps(idx, ngroups, plane) / n_ramps
            summary["jumps"] = int(idx.size)

    elapsed = time.perf_counter() - t_start
    summary["elapsed_s"] = round(elapsed, 3)
    parts = []
    if chosen is not None:
        parts.append(
            f"flagged {summary['jumps']} pixel-groups "
            f"({100 * summary['flagged_group_fraction']:.3g}%) "
            f"at {chosen:g} sigma ({method}); wrote {output_path}"
        )
    if stats is not None:
        best = summary.get("best_threshold")
        parts.append(
            f"swept {len(sweep)} thresholds; lowest noise at {best:g} sigma"
            if best is not None
            else f"swept {len(sweep)} thresholds; no measurable noise"
        )
        if report_path is not None:
            parts.append(f"report {report_path}")
    summary["message"] = "; ".join(parts) + f" in {elapsed:.1f} s"
    return summary


def _count_ramps(idx, ngroups, plane):
    """Count the (integration, pixel) ramps holding at least one flagged pixel-group."""
    if idx.size == 0:
        return 0
    ramp = (idx // (ngroups * plane)) * plane + idx % plane
    return int(np.unique(ramp).size)


def _second_difference(values):
    """x[i+1] - 2 x[i] + x[i-1] along the first axis (white noise of variance s^2 gives 6 s^2)."""
    return values[2:] - 2 * values[1:-1] + values[:-2]


def _jsonable(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


class _SweepStats:
    """Per-threshold sums for the sweep: white light per integration and rate differences."""

    def __init__(self, thresholds, nints, geom):
        self.thresholds = thresholds
        self.white = {t: np.zeros(nints) for t in thresholds}
        self.sq = {t: 0.0 for t in thresholds}
        self.count = {t: 0 for t in thresholds}
        self.npix_source = 0
        self.refmask = geom.reference_mask()
        self._source = {}

    def add_block(self, t, sci, gdq, jumps, gain, rn, y0, tframe, nframes, groupgap):
        nints = sci.shape[0]
        flags = gdq | (jumps.astype(np.uint8) * np.uint8(dqflags.JUMP_DET))
        rates = np.empty((nints,) + sci.shape[2:], dtype=np.float32)
        errs = np.empty_like(rates)
        for i in range(nints):
            fit = fit_ramps(
                sci[i],
                flags[i],
                gain,
                rn,
                tframe_s=tframe,
                nframes=nframes,
                groupgap=groupgap,
                params=RampFitParams(),
            )
            rates[i], errs[i] = fit.rate, fit.err
        light = ~self.refmask[y0 : y0 + sci.shape[2]]
        if (
            y0 not in self._source
        ):  # the aperture is fixed by the first threshold seen for this block
            with np.errstate(invalid="ignore"):
                med = np.nanmedian(rates, axis=0)
                snr = med / np.nanmedian(errs, axis=0)
            self._source[y0] = (light & (snr > SOURCE_SNR), med)
            self.npix_source += int(self._source[y0][0].sum())
        source, med = self._source[y0]
        filled = np.where(np.isfinite(rates), rates, med[None])
        self.white[t] += np.nansum(np.where(source[None], filled, 0.0), axis=(1, 2))
        if nints < 3:
            return
        diff = _second_difference(rates[:, light].astype(np.float64))
        ok = np.isfinite(diff)
        self.sq[t] += float(np.sum(diff[ok] ** 2) / 6)
        self.count[t] += int(ok.sum())

    def table(self, flagged, n_groups_total, n_ramps, ngroups, plane, is_grism):
        rows = []
        for t in self.thresholds:
            wl = self.white[t]
            ppm = math.nan
            if self.npix_source and wl.size >= 3 and np.median(wl) != 0:
                # robust: a transit's ingress and egress are outliers of the second difference
                d2 = _second_difference(wl)
                rms = 1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6)
                ppm = float(rms / abs(np.median(wl)) * 1e6)
            rate_noise = math.sqrt(self.sq[t] / self.count[t]) if self.count[t] else math.nan
            idx = flagged[t]
            rows.append(
                (
                    t,
                    idx.size / n_groups_total,
                    _count_ramps(idx, ngroups, plane) / n_ramps,
                    ppm,
                    rate_noise,
                )
            )
        tab = Table(
            rows=rows,
            names=(
                "threshold",
                "flagged_group_fraction",
                "flagged_pixel_fraction",
                "whitelight_noise_ppm",
                "rate_noise",
            ),
        )
        tab["rate_noise"].unit = "DN/s"
        tab["whitelight_noise_ppm"].unit = "ppm"
        metric = "whitelight_noise_ppm" if is_grism else "rate_noise"
        values = np.asarray(tab[metric], dtype=float)
        if not np.isfinite(values).any():
            metric = "rate_noise"
            values = np.asarray(tab[metric], dtype=float)
        best = np.zeros(len(tab), dtype=bool)
        if np.isfinite(values).any():
            best[int(np.nanargmin(values))] = True
        tab["best"] = best
        for name in ("flagged_group_fraction", "flagged_pixel_fraction"):
            tab[name].format = ".3e"
        tab["whitelight_noise_ppm"].format = ".1f"
        tab["rate_noise"].format = ".4g"
        tab.meta["noise_metric"] = metric
        tab.meta["source_pixels"] = self.npix_source
        tab.meta["comment"] = [
            "flagged_group_fraction: flagged pixel-groups / (nints * (ngroups - 1) * ny * nx)",
            "flagged_pixel_fraction: integration ramps with a jump / (nints * ny * nx)",
            "whitelight_noise_ppm: 1.4826 x the median absolute deviation of the second "
            "difference f[i+1] - 2 f[i] + f[i-1], / sqrt(6), of the per-integration summed rate "
            f"f of the source pixels (median rate > {SOURCE_SNR:g} x its uncertainty), over its "
            "median (second differences ignore smooth trends, the median ignores a transit's "
            "ingress and egress)",
            "rate_noise: the rms of second differences / sqrt(6) of each light-sensitive "
            "pixel's rate, over all pixels",
            f"best: lowest {metric}",
        ]
        return tab
