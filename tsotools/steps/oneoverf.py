"""``tsotools oneoverf``: remove pre-amp offsets, odd/even columns and 1/f noise per amplifier.

Works on a post-superbias ramp (every group of every integration) or on rateints,
calints or a grism cutout (every integration), streaming one integration at a time:

1. a median image per group index from a sample of at most ``model_ints`` integrations
   (one group plane per integration in memory) gives the source mask (or ``--mask``);
2. time-series mode only: one pass over every integration fits its flux scale and pointing
   shift against that median and accumulates a clipped temporal mean (the scene model),
   whose own 1/f is then removed from its background pixels;
3. one pass corrects and writes every integration: per group, the fitted scene is
   subtracted (time-series mode) or the source masked (background mode), and
   :func:`tsotools.algorithms.oneoverf.estimate_frame` gives the offsets, odd/even
   columns and row values that are subtracted.

The uniform sky is kept: it is measured once on the scene model against the reference
rows (which see no light) and left in the data.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import dqflags
from ..algorithms import oneoverf as oof
from ..algorithms.masks import MaskParams, make_source_mask
from ..detector import KTC_NOISE_DN, READ_NOISE_DN, Geometry, default_gain
from ..errors import ProductError
from ..io import (ImageSpec, derive_product, open_product, read_group, read_mask, write_mask)
from ..progress import progress_bar

__all__ = ["run_oneoverf"]

log = logging.getLogger(__name__)

#: Product kinds oneoverf corrects.
KINDS = ("ramp", "rateints", "calints", "cutout")
#: Group DQ bits that leave a pixel out of the estimate (the pipeline's refpix ignores them too).
GROUP_BAD = dqflags.DO_NOT_USE | dqflags.SATURATED
#: Pixel DQ bits that leave a pixel out of the estimate.
PIXEL_BAD = dqflags.DO_NOT_USE
#: Integrations from which the per-pixel response to flux and pointing is learned.
_LEARN_INTS = 10
_FIT_ERRORS = (ValueError, ArithmeticError, FloatingPointError, np.linalg.LinAlgError)


# ----------------------------------------------------------------------------- reading
class _Frames:
    """Reads integrations of a ramp or cube as (ngroups, ny, nx) float32 with a bad-pixel mask."""

    def __init__(self, prod):
        self.prod = prod
        info = prod.info
        self.ramp = info.kind == "ramp"
        shape = prod.shape("SCI")
        self.nints = shape[0]
        self.ngroups = shape[1] if self.ramp else 1
        self.ny, self.nx = shape[-2:]
        self.geometry = _frame_geometry(prod)
        ref = self.geometry.reference_mask()
        self.pixel_bad = np.zeros((self.ny, self.nx), dtype=bool)
        if self.ramp and prod.has("PIXELDQ"):
            pdq = prod.read("PIXELDQ")
            if pdq.shape == (self.ny, self.nx):
                ref |= (pdq & dqflags.REFERENCE_PIXEL) != 0
                self.pixel_bad = (pdq & PIXEL_BAD) != 0
        self.dq_ext = "GROUPDQ" if self.ramp else "DQ"
        self.has_dq = prod.has(self.dq_ext) and prod.shape(self.dq_ext) == shape
        self.has_err = (not self.ramp) and prod.has("ERR") and prod.shape("ERR") == shape
        if not self.ramp and self.has_dq:
            first = prod.read("DQ", 0)
            ref |= (first & dqflags.REFERENCE_PIXEL) != 0
        self.reference = ref
        # reference pixels flagged DO_NOT_USE for science still carry the noise
        self.pixel_bad &= ~ref

    def read(self, i):
        """Integration ``i``: data float32 (ngroups, ny, nx) and bad bool (ngroups, ny, nx)."""
        sci = self.prod.read("SCI", i)
        data = np.asarray(sci, dtype=np.float32).reshape(self.ngroups, self.ny, self.nx)
        bad = ~np.isfinite(data)
        bad |= self.pixel_bad[None]
        if self.has_dq:
            dq = self.prod.read(self.dq_ext, i).reshape(self.ngroups, self.ny, self.nx)
            flag = GROUP_BAD if self.ramp else PIXEL_BAD
            bad |= ((dq & flag) != 0) & ~self.reference[None]
        return data, bad

    def read_plane(self, i, g):
        """Group ``g`` of integration ``i`` (float32 (ny, nx), NaN where bad)."""
        if self.ramp:
            plane = read_group(self.prod, "SCI", i, g).astype(np.float32)
            if self.has_dq:
                dq = read_group(self.prod, self.dq_ext, i, g)
                plane[((dq & GROUP_BAD) != 0) & ~self.reference] = np.nan
        else:
            plane = self.prod.read("SCI", i).astype(np.float32)
            if self.has_dq:
                dq = self.prod.read("DQ", i)
                plane[((dq & PIXEL_BAD) != 0) & ~self.reference] = np.nan
        plane[self.pixel_bad] = np.nan
        return plane

    def read_err2(self, i):
        err = self.prod.read("ERR", i).astype(np.float32)
        return err * err


def _frame_geometry(prod) -> Geometry:
    """Geometry of the array as stored: the subarray, or a cutout of it (SLTSTRT)."""
    info = prod.info
    geo = info.geometry
    if geo is None:
        raise ProductError(f"{prod.path}: no subarray geometry (SUBSTRT/SUBSIZE/NOUTPUTS)")
    ny, nx = prod.shape("SCI")[-2:]
    if info.kind != "cutout" and (nx, ny) == (geo.nx, geo.ny):
        return geo
    ox, oy = info.cutout_origin or (0, 0)
    try:
        return Geometry(xstart=geo.xstart + ox, ystart=geo.ystart + oy, nx=nx, ny=ny, noutputs=geo.noutputs,
                        fastaxis=geo.fastaxis, slowaxis=geo.slowaxis)
    except ValueError as exc:
        raise ProductError(f"{prod.path}: cutout does not fit the subarray ({exc})") from None


# ----------------------------------------------------------------------------- models
def _sample(nints: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, nints - 1, min(nints, k)).round().astype(int))


def _median_model(frames: _Frames, sample) -> np.ndarray:
    """Median over the sampled integrations, per group: float32 (ngroups, ny, nx)."""
    import warnings

    med = np.empty((frames.ngroups, frames.ny, frames.nx), dtype=np.float32)
    for g in range(frames.ngroups):
        stack = np.stack([frames.read_plane(int(i), g) for i in sample])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med[g] = np.nanmedian(stack, axis=0)
    return med


def _cds(cube):
    """Signal image of a model or integration: last group minus first (ramps), else the frame."""
    return cube[-1] - cube[0] if cube.shape[0] > 1 else cube[0]


def _inverse_variance(frames: _Frames, model, err2=None):
    """Inverse variance per group from the model level (ramps) or the mean ERR^2 (cubes)."""
    if frames.ramp:
        gain = default_gain(frames.prod.info.detector or "")
        v0 = np.float32(READ_NOISE_DN**2 + KTC_NOISE_DN**2)
        var = v0 + np.clip(np.nan_to_num(model), 0, None) / np.float32(gain)
    elif err2 is not None:
        var = np.array(err2, dtype=np.float32)
        ok = np.isfinite(var) & (var > 0)
        fill = np.float32(np.median(var[ok])) if ok.any() else np.float32(1)
        var[~ok] = fill
    else:
        var = np.ones_like(model)
    return (1.0 / var).astype(np.float32)


# -------------------------------------------------------------------------------- run
def run_oneoverf(input_path, output_path, *, params: oof.OneOverFParams | None = None,
                 mask_params: MaskParams | None = None, mask_path=None, save_mask=None,
                 overwrite: bool = False, progress: bool = True) -> dict:
    """Correct a ramp or rateints/calints/cutout for offsets and 1/f noise; write the product.

    Parameters
    ----------
    input_path, output_path : path-like
        Input product and output file (same kind; never the input).
    params : OneOverFParams
    mask_params : MaskParams
        Settings of the automatic source mask.
    mask_path : path-like, optional
        A 2-D FITS mask (nonzero = source) to use instead of the automatic one.
    save_mask : path-like, optional
        Write the mask used here (uint8 FITS image).
    overwrite : bool
    progress : bool
        Show a progress bar on a terminal.

    Returns
    -------
    dict
        JSON-ready summary with a human ``message``.
    """
    params = params or oof.OneOverFParams()
    mask_params = mask_params or MaskParams()
    t0 = time.perf_counter()
    with open_product(input_path, expect=KINDS, tool="oneoverf") as prod:
        frames = _Frames(prod)
        geo = frames.geometry
        nints, ngroups, ny, nx = frames.nints, frames.ngroups, frames.ny, frames.nx
        amps = geo.amplifiers
        refcols = geo.reference_columns
        reference = frames.reference
        light = ~reference

        method, why = _choose_method(params, nints, reference)
        if method == "refpix" and not reference.any():
            raise ProductError(f"{prod.path}: --method refpix needs reference pixels, and subarray "
                               f"{prod.info.subarray or '?'} has none")
        log.info("%s: %s %s, %d integration(s) x %d group(s), %d x %d px, %d amplifier(s); method %s (%s)",
                 prod.path, prod.info.kind, prod.info.subarray or "", nints, ngroups, nx, ny, len(amps), method, why)

        # 1. median image of a sample of integrations -> source mask
        sample = _sample(nints, params.model_ints)
        median = _median_model(frames, sample) if method != "refpix" or save_mask else None
        if mask_path is not None:
            mask = read_mask(mask_path, (ny, nx))
            mask_from = str(mask_path)
        elif median is not None:
            mask = make_source_mask(_cds(median), mask_params, exclude=reference)
            mask_from = f"median of {sample.size} integration(s)"
        else:
            mask = np.zeros((ny, nx), dtype=bool)
            mask_from = "none (refpix)"
        mask &= light
        log.info("source mask: %d px (%.1f%% of the frame) from %s", int(mask.sum()), 100 * mask.mean(), mask_from)
        if save_mask is not None:
            write_mask(mask, save_mask, tool="oneoverf", params={"from": mask_from, **mask_params.__dict__},
                       overwrite=overwrite, inputs=(str(input_path), str(output_path)))

        src = np.flatnonzero(mask.ravel())
        src_amp = geo.amplifier_map()[src % nx] if src.size else np.zeros(0, int)
        coefs = np.full((nints, 3), np.nan)
        sky = np.zeros(ngroups)
        model = median
        bcoef = u_all = ubar = None
        winv = None
        quiet = not progress

        # 2. time-series scene model: clipped temporal mean, scaled and shifted per integration
        if method == "timeseries":
            model, bcoef, u_all, ubar, winv = _scene_model(frames, median, mask, src, src_amp, params, quiet)
            coefs[:, : u_all.shape[1]] = u_all
            del median
        elif method == "background" and model is not None:
            winv = _inverse_variance(frames, model)
        if method in ("timeseries", "background"):
            sky = _clean_model(model, winv, mask, frames, params)

        # 3. correct and write
        bg_weight_mask = light & ~mask if method == "background" else None
        stats = {"rows_rms": [], "offsets_rms": [], "fallback_rows": 0, "failed": []}
        replace = {"SCI": None}
        if frames.has_dq:
            replace[frames.dq_ext] = None
        writer = derive_product(prod, output_path, replace, tool="oneoverf", overwrite=overwrite,
                                params={"method": method, **{k: v for k, v in params.as_dict().items() if k != "method"},
                                        "mask": mask_from})
        with writer, progress_bar("oneoverf", total=nints, enabled=not quiet) as advance:
            for i in range(nints):
                data, bad = frames.read(i)
                out = np.empty_like(data)
                try:
                    du = (u_all[i] - ubar) if method == "timeseries" else None
                    for g in range(ngroups):
                        est = _estimate(method, data[g], bad[g], g, model, bcoef, winv, src, du, amps, geo,
                                        refcols, reference, bg_weight_mask, params)
                        corr = est.correction
                        if method == "background" and sky[g]:
                            corr = corr - np.float32(sky[g]) * light
                        np.subtract(data[g], corr, out=out[g])
                        _collect(stats, est)
                    failed = False
                except _FIT_ERRORS as exc:
                    log.warning("integration %d: correction failed (%s); written as NaN and flagged DO_NOT_USE",
                                prod.info.intstart + i, exc)
                    out[:] = np.nan
                    failed = True
                    stats["failed"].append(prod.info.intstart + i)
                writer.write("SCI", i, out.reshape(prod.shape("SCI")[1:]))
                if frames.has_dq:
                    dq = prod.read(frames.dq_ext, i)
                    if failed:
                        dq = dq | np.asarray(dqflags.DO_NOT_USE, dtype=dq.dtype)
                    writer.write(frames.dq_ext, i, dq)
                advance()

    elapsed = time.perf_counter() - t0
    rows_rms = float(np.median(stats["rows_rms"])) if stats["rows_rms"] else float("nan")
    off_rms = float(np.median(stats["offsets_rms"])) if stats["offsets_rms"] else float("nan")
    unit = "DN" if frames.ramp else "DN/s"
    nframes = nints * ngroups
    fb = stats["fallback_rows"] / max(nframes * len(amps) * ny, 1)
    summary = {
        "input": str(input_path),
        "output": str(output_path),
        "kind": prod.info.kind,
        "method": method,
        "method_reason": why,
        "nints": nints,
        "ngroups": ngroups if frames.ramp else None,
        "frames": nframes,
        "amplifiers": len(amps),
        "mask_pixels": int(mask.sum()),
        "mask_source": mask_from,
        "sky_per_group": [float(s) for s in sky],
        "row_rms": rows_rms,
        "offset_rms": off_rms,
        "unit": unit,
        "fallback_row_fraction": fb,
        "flux_scale_range": ([float(np.nanmin(coefs[:, 0])), float(np.nanmax(coefs[:, 0]))]
                             if np.isfinite(coefs[:, 0]).any() else None),
        "failed_integrations": stats["failed"],
        "seconds": elapsed,
    }
    msg = (f"{method}: removed amplifier offsets ({off_rms:.3g} {unit} rms) and row 1/f ({rows_rms:.3g} {unit} rms) "
           f"in {nframes} frame(s) of {nints} integration(s); {100 * fb:.1f}% of rows from fall-backs; "
           f"wrote {output_path} in {elapsed:.1f} s")
    if stats["failed"]:
        msg += f"; {len(stats['failed'])} integration(s) failed and were flagged"
    summary["message"] = msg
    return summary


def _choose_method(params, nints, reference) -> tuple[str, str]:
    if params.method != "auto":
        return params.method, "--method"
    if nints >= params.min_ints_timeseries:
        return "timeseries", f"{nints} integrations >= {params.min_ints_timeseries}"
    return "background", f"only {nints} integration(s), time-series mode needs {params.min_ints_timeseries}"


def _fit_integration(data, bad, model, deriv, winv, src, src_amp):
    """Scale and shift of one integration against the scene model (last minus first group)."""
    if src.size == 0:
        return np.array([1.0, 0.0, 0.0])
    sig = _cds(data).ravel()[src]
    msig = _cds(model).ravel()[src]
    dsig = deriv[-1] - deriv[0] if deriv.shape[0] > 1 else deriv[0]
    w = winv[-1].ravel()[src].astype(np.float64)
    if data.shape[0] > 1:
        w = 1.0 / (1.0 / w + 1.0 / winv[0].ravel()[src])
        w[(bad[-1].ravel()[src]) | (bad[0].ravel()[src])] = 0
    else:
        w[bad[0].ravel()[src]] = 0
    return oof.fit_scene(sig, msig, dsig, w, groups=src_amp)


def _estimate(method, frame, bad, g, model, bcoef, winv, src, du, amps, geo, refcols, reference, bg_mask, params):
    if method == "timeseries":
        resid = frame - oof.predict_pixels(model[g], bcoef[g], src, du)
        weights = np.where(bad, np.float32(0), winv[g])
    elif method == "background":
        resid = frame
        weights = np.where(bad | ~bg_mask, np.float32(0), winv[g] if winv is not None else np.float32(1))
    else:  # refpix
        resid = frame
        weights = (reference & ~bad).astype(np.float32)
    return oof.estimate_frame(resid, weights, amps, params, xstart=geo.xstart, reference_columns=refcols)


def _collect(stats, est):
    measured = est.row_source == 0
    if measured.any():
        stripes = (est.rows - est.offsets[:, None])[measured]
        stats["rows_rms"].append(float(np.sqrt(np.mean(stripes**2))))
    if est.offsets.size > 1:
        stats["offsets_rms"].append(float(np.std(est.offsets)))
    stats["fallback_rows"] += est.fallback_rows()


def _scene_model(frames: _Frames, median, mask, src, src_amp, params, quiet):
    """Scene model: per-pixel linear model of every integration on its flux scale and shift.

    Each integration is fitted against the median (:func:`fit_scene`: scale ``s`` and
    shift terms), pixels more than 7.5 sigma from that fit (cosmic rays) are replaced by
    it, and running sums give the temporal mean and, on the source pixels, the per-pixel
    regression on (s, ax, ay) (:func:`solve_pixel_regression`), which follows the transit's
    colour and the PSF's response to sub-pixel shifts better than any analytic derivative.
    With fewer than ``_LEARN_INTS`` integrations the source is the mean scaled by s only.

    Returns
    -------
    model : float32 (ngroups, ny, nx), coef : float32 (ngroups, k, nsrc),
    u : float64 (nints, k) regressors, ubar : (k,), winv : float32 (ngroups, ny, nx)
    """
    ngroups, n = frames.ngroups, frames.nints
    winv_med = _inverse_variance(frames, median)
    dmed = np.stack([oof.scene_derivatives(median[g], src) for g in range(ngroups)])
    learn = n >= _LEARN_INTS
    k = min(3, (n - 2) // 5) if learn else 1
    total = np.zeros((ngroups, frames.ny, frames.nx), dtype=np.float64)
    sprod = np.zeros((ngroups, k, src.size), dtype=np.float64)
    su, suu = np.zeros(k), np.zeros((k, k))
    u_all = np.zeros((n, k))
    err2 = np.zeros((frames.ny, frames.nx), dtype=np.float64) if frames.has_err else None
    nerr = np.zeros((frames.ny, frames.nx), dtype=np.uint32) if frames.has_err else None
    limit = np.float32(7.5)
    lev_cols = np.zeros(frames.nx, dtype=np.float32)
    with progress_bar("oneoverf: scene model", total=n, enabled=not quiet) as advance:
        for i in range(n):
            data, bad = frames.read(i)
            try:
                coef = _fit_integration(data, bad, median, dmed, winv_med, src, src_amp)
            except _FIT_ERRORS:
                coef = np.full(3, np.nan)
            if not np.isfinite(coef).all() or coef[0] <= 0:
                coef = np.array([1.0, 0.0, 0.0])
            u = coef[:k]
            for g in range(ngroups):
                pred = oof.predict_scene(median[g], dmed[g], src, coef)
                resid = data[g] - pred
                for x0, x1 in frames.geometry.amplifiers:  # pre-amp offsets out before clipping
                    sub = np.where(bad[g][:, x0:x1:7], np.nan, resid[:, x0:x1:7])
                    level = np.nanmedian(sub) if np.isfinite(sub).any() else 0.0
                    lev_cols[x0:x1] = level
                keep = ~bad[g] & (np.abs(resid - lev_cols) * np.sqrt(winv_med[g]) < limit)
                # offset-free: pre-amp offsets must not leak into the regression
                clean = np.where(keep, data[g] - lev_cols, pred)
                total[g] += clean
                if src.size:
                    sprod[g] += u[:, None] * clean.ravel()[src][None, :]
            su += u
            suu += np.outer(u, u)
            u_all[i] = u
            if err2 is not None:
                e2 = frames.read_err2(i)
                ok = np.isfinite(e2) & ~bad[0]
                err2 += np.where(ok, e2, 0.0)
                nerr += ok
            advance()
    model = (total / n).astype(np.float32)
    del total
    coefs = np.zeros((ngroups, k, src.size), dtype=np.float32)
    for g in range(ngroups):
        mean_src = model[g].ravel()[src]
        if learn:
            b, ubar = oof.solve_pixel_regression(mean_src, sprod[g], su, suu, n)
            coefs[g] = b
        else:
            ubar = su / n
            coefs[g] = mean_src[None, :] / ubar[0]
    if err2 is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            err2 = np.where(nerr > 0, err2 / np.maximum(nerr, 1), np.nan)
    winv = _inverse_variance(frames, model, err2=err2)
    log.debug("scene model: %s regressors per source pixel", "learned" if learn else "mean scaled by flux")
    return model, coefs, u_all, ubar, winv


def _clean_model(model, winv, mask, frames: _Frames, params) -> np.ndarray:
    """Remove the model's own amplifier offsets and odd/even columns in place, keeping the sky.

    The temporal mean still holds the mean of the pre-amp offsets; each amplifier's offset is
    measured on its reference pixels (which see no light), so the sky and the star's wings
    stay in the model. Amplifiers without reference pixels take the others' sky level.
    The model's row stripes (the mean of the integrations' 1/f, smaller by sqrt(nints)) are
    kept: on light-sensitive rows they cannot be told from static structure such as the
    PSF's far wings.

    Returns
    -------
    sky : float64 ndarray, shape (ngroups,)
        Background level of the light-sensitive pixels above the reference pixels, per
        group (0 where no amplifier has reference pixels).
    """
    geo = frames.geometry
    ref = frames.reference
    usable = ~mask & ~ref
    sky = np.zeros(model.shape[0])
    for g in range(model.shape[0]):
        w = np.where(usable & np.isfinite(model[g]), winv[g], np.float32(0))
        est = oof.estimate_frame(model[g], w, geo.amplifiers, params, xstart=geo.xstart, reference_columns=())
        ref_off = np.full(len(geo.amplifiers), np.nan)
        for a, (x0, x1) in enumerate(geo.amplifiers):
            vals = model[g][:, x0:x1][ref[:, x0:x1]]
            vals = vals[np.isfinite(vals)]
            if vals.size >= params.min_row_pixels:
                ref_off[a] = np.median(vals)
        has = np.isfinite(ref_off)
        if has.any():
            sky[g] = float(np.median(est.offsets[has] - ref_off[has]))
            ref_off[~has] = est.offsets[~has] - sky[g]
        else:
            ref_off = est.offsets - np.mean(est.offsets)
        for a, (x0, x1) in enumerate(geo.amplifiers):
            parity = np.where((geo.xstart + np.arange(x0, x1)) % 2 == 0, est.parity[a, 0], est.parity[a, 1])
            model[g][:, x0:x1] -= (ref_off[a] + parity).astype(np.float32)[None, :]
    return sky
