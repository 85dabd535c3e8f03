"""``tsotools rampfit``: fit each integration's ramps into a rateints product (CubeModel).

One integration at a time: read its SCI and GROUPDQ planes, fit the segments between
jumps (:func:`tsotools.algorithms.ramps.fit_ramps`), write SCI, ERR, DQ, VAR_POISSON and
VAR_RNOISE planes. The primary header (the ramp's metadata), the SCI header keywords
(XREF_SCI/YREF_SCI...) and INT_TIMES are carried over, so the output chains into
``tsotools oneoverf``, ``widen-cutout``, ``spectra`` or the pipeline's stage 2.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from astropy.io import fits

from .. import dqflags
from ..algorithms.ramps import RampFitParams, fit_ramps
from ..errors import ProductError
from ..io import ImageSpec, asdf_extension, new_product, open_product
from ..progress import progress_bar
from .rejump import resolve_noise

__all__ = ["run_rampfit"]

log = logging.getLogger(__name__)

_SCI_KEEP = ("XREF_SCI", "YREF_SCI", "V3I_YANG", "VPARITY", "SRCXPOS", "SRCYPOS")


def _image_header(name, unit, src=None):
    hdr = fits.Header()
    hdr["EXTNAME"] = name
    if unit:
        hdr["BUNIT"] = unit
    for key in _SCI_KEEP if src is not None else ():
        if key in src:
            hdr[key] = (src[key], src.comments[key])
    return hdr


def run_rampfit(
    input_path,
    output_path,
    *,
    params: RampFitParams | None = None,
    gain=None,
    readnoise=None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Fit a ramp's integrations into per-integration rates (rateints).

    Parameters
    ----------
    input_path : path-like
        A ramp (RampModel) whose GROUPDQ holds the jump flags (``tsotools rejump``).
    output_path : path-like
        Rateints to write: CubeModel with SCI (DN/s), ERR, DQ, VAR_POISSON, VAR_RNOISE,
        INT_TIMES and the ramp's primary header.
    params : RampFitParams
    gain, readnoise : float, str or None
        Number, CRDS-style reference file, or None for the detector defaults (see
        :func:`tsotools.steps.rejump.resolve_noise`).
    overwrite, progress : bool

    Returns
    -------
    dict
        JSON-ready summary with a "message".
    """
    params = params or RampFitParams()
    t_start = time.perf_counter()
    with open_product(input_path, expect=("ramp",), tool="rampfit") as prod:
        info = prod.info
        nints, ngroups, ny, nx = info.shape
        if not prod.has("GROUPDQ"):
            raise ProductError(
                f"{input_path}: no GROUPDQ extension (run dq_init and saturation first)"
            )
        tframe = info.tframe_s
        if not (tframe and tframe > 0):
            raise ProductError(f"{input_path}: no valid TFRAME keyword in the primary header")
        nframes = int(info.nframes or 1)
        groupgap = int(info.groupgap or 0)
        if ngroups == 1:
            log.warning(
                "%s: 1 group per integration: each rate is that group over its exposure time "
                "(no slope, so no jump or bias check is possible)", input_path)
        if not (info.steps.get("S_JUMP") == "COMPLETE" or info.steps.get("S_REJUMP") == "COMPLETE"):
            log.warning(
                "%s has no jump flags (neither S_JUMP nor S_REJUMP is COMPLETE): cosmic rays "
                "will be "
                "fitted through; run 'tsotools rejump' first",
                input_path,
            )
        gain2d, rn2d, sources = resolve_noise(prod, gain, readnoise)
        pixeldq = (
            prod.read("PIXELDQ").astype(np.uint32)
            if prod.has("PIXELDQ")
            else np.zeros((ny, nx), np.uint32)
        )

        sci_src = prod.header("SCI")
        exts = [
            ImageSpec("SCI", (nints, ny, nx), "float32", _image_header("SCI", "DN/s", sci_src)),
            ImageSpec("ERR", (nints, ny, nx), "float32", _image_header("ERR", "DN/s")),
            ImageSpec("DQ", (nints, ny, nx), "uint32", _image_header("DQ", None)),
            ImageSpec(
                "VAR_POISSON", (nints, ny, nx), "float32", _image_header("VAR_POISSON", "(DN/s)^2")
            ),
            ImageSpec(
                "VAR_RNOISE", (nints, ny, nx), "float32", _image_header("VAR_RNOISE", "(DN/s)^2")
            ),
        ]
        if prod.has("INT_TIMES"):
            exts.append(fits.BinTableHDU(prod.read_table("INT_TIMES"), name="INT_TIMES"))
        exts.append(asdf_extension("CubeModel"))
        primary = prod.header("PRIMARY")
        run_params = {
            "gain": sources["gain"],
            "readnoise": sources["readnoise"],
            "one_group_ramps": params.one_group_ramps,
        }
        failed = []
        n_jump = n_nan = 0
        medians = []
        with (
            new_product(
                output_path,
                primary,
                exts,
                tool="rampfit",
                params=run_params,
                overwrite=overwrite,
                inputs=(str(input_path),),
                datamodel="CubeModel",
            ) as writer,
            progress_bar("rampfit", total=nints, enabled=progress) as advance,
        ):
            for i in range(nints):
                sci = prod.read("SCI", i)
                gdq = prod.read("GROUPDQ", i)
                try:
                    with np.errstate(all="ignore"):
                        fit = fit_ramps(
                            sci,
                            gdq,
                            gain2d,
                            rn2d,
                            tframe_s=tframe,
                            nframes=nframes,
                            groupgap=groupgap,
                            params=params,
                        )
                except (ValueError, FloatingPointError, MemoryError) as exc:
                    log.warning(
                        "integration %d: ramp fit failed (%s); written as NaN with DO_NOT_USE",
                        info.intstart + i,
                        exc,
                    )
                    failed.append(info.intstart + i)
                    nan = np.full((ny, nx), np.nan, np.float32)
                    writer.write("SCI", i, nan)
                    writer.write("ERR", i, nan)
                    writer.write("DQ", i, pixeldq | dqflags.DO_NOT_USE)
                    writer.write("VAR_POISSON", i, nan)
                    writer.write("VAR_RNOISE", i, nan)
                    advance()
                    continue
                dq = pixeldq | fit.dq
                dnu = (dq & dqflags.DO_NOT_USE) != 0
                rate = np.where(dnu, np.nan, fit.rate).astype(np.float32)
                err = np.where(dnu, np.nan, fit.err).astype(np.float32)
                writer.write("SCI", i, rate)
                writer.write("ERR", i, err)
                writer.write("DQ", i, dq)
                writer.write(
                    "VAR_POISSON", i, np.where(dnu, np.nan, fit.var_poisson).astype(np.float32)
                )
                writer.write(
                    "VAR_RNOISE", i, np.where(dnu, np.nan, fit.var_rnoise).astype(np.float32)
                )
                n_jump += int(np.count_nonzero(fit.dq & dqflags.JUMP_DET))
                n_nan += int(np.count_nonzero(~np.isfinite(rate)))
                medians.append(
                    float(np.nanmedian(rate)) if np.isfinite(rate).any() else float("nan")
                )
                advance()

    elapsed = time.perf_counter() - t_start
    if failed:
        log.warning(
            "%d of %d integrations failed and were written as NaN: %s",
            len(failed),
            nints,
            ", ".join(map(str, failed[:10])) + (" ..." if len(failed) > 10 else ""),
        )
    message = (
        f"fitted {nints - len(failed)} of {nints} integrations ({ngroups} groups, {ny} x {nx}); "
        f"{n_jump} pixel-integrations with jumps, {n_nan} without a rate; wrote {output_path} "
        f"in {elapsed:.1f} s"
    )
    return {
        "message": message,
        "input": str(input_path),
        "output": str(output_path),
        "nints": nints,
        "failed_integrations": failed,
        "pixels_with_jumps": n_jump,
        "pixels_without_rate": n_nan,
        "gain": sources["gain"],
        "readnoise": sources["readnoise"],
        "median_rate": float(np.nanmedian(medians))
        if medians and np.isfinite(medians).any()
        else None,
        "elapsed_s": round(elapsed, 3),
    }
