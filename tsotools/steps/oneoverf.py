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
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import dqflags
from ..algorithms import oneoverf as oof
from ..algorithms.masks import MaskParams, make_source_mask
from ..detector import KTC_NOISE_DN, READ_NOISE_DN, Geometry, default_gain
from ..errors import ProductError
from ..io import (check_output, derive_product, open_product, read_group_into,
                  read_mask, write_mask)
from ..progress import progress_bar

__all__ = ["run_oneoverf"]

log = logging.getLogger(__name__)

#: Product kinds oneoverf corrects.
KINDS = ("ramp", "rateints", "calints", "cutout")
#: Group DQ bits that leave a pixel out of the estimate (the pipeline's refpix ignores them too).
GROUP_BAD = dqflags.BAD_GROUP
#: Pixel DQ bits that leave a pixel out of the estimate.
PIXEL_BAD = dqflags.DO_NOT_USE
#: Integrations from which the per-pixel response to flux and pointing is learned.
_LEARN_INTS = 10
#: Bytes of per-integration cleaning (row levels, outlier pixels) kept from the scene pass
#: for the correction pass; integrations beyond it are cleaned again.
_CACHE_BYTES = 32 << 20
_FIT_ERRORS = (ValueError, ArithmeticError, FloatingPointError, np.linalg.LinAlgError)


def _load_malloc_trim():
    """Return glibc's ``malloc_trim``, or None on other C libraries."""
    try:
        import ctypes
        import ctypes.util

        return ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps freed blocks of a few MB).

    Called once per integration: planes of a few MB are allocated and freed by the
    thousand, and glibc would otherwise keep tens of MB of them resident.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


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
        self._dq_buffer = None
        # reference pixels flagged DO_NOT_USE for science still carry the noise
        self.pixel_bad &= ~ref

    def read(self, i, data=None, bad=None):
        """Integration ``i``: data float32 (ngroups, ny, nx) and bad bool (ngroups, ny, nx).

        ``data`` and ``bad`` are filled when given (buffers reused from one integration to
        the next); a ramp is read group by group, so reading needs one group's bytes on top.
        """
        shape = (self.ngroups, self.ny, self.nx)
        data = np.empty(shape, dtype=np.float32) if data is None else data
        bad = np.empty(shape, dtype=bool) if bad is None else bad
        flag = GROUP_BAD if self.ramp else PIXEL_BAD
        for g in range(self.ngroups):
            if self.ramp:
                read_group_into(self.prod, "SCI", i, g, data[g])
            else:
                np.copyto(data[g], self.prod.read("SCI", i), casting="unsafe")
            np.isfinite(data[g], out=bad[g])
            np.logical_not(bad[g], out=bad[g])
            bad[g] |= self.pixel_bad
            if self.has_dq:
                dq = self._dq_plane(i, g)
                bad[g] |= ((dq & flag) != 0) & ~self.reference
        return data, bad

    def _dq_plane(self, i, g):
        """DQ of group g of integration i (a buffer reused for ramps)."""
        if not self.ramp:
            return self.prod.read(self.dq_ext, i)
        if self._dq_buffer is None:
            self._dq_buffer = np.empty((self.ny, self.nx), dtype=self.prod.dtype(self.dq_ext))
        return read_group_into(self.prod, self.dq_ext, i, g, self._dq_buffer)

    def read_plane(self, i, g, out=None):
        """Group ``g`` of integration ``i`` (float32 (ny, nx), NaN where bad), into ``out`` if given."""
        if self.ramp:
            plane = np.empty((self.ny, self.nx), dtype=np.float32) if out is None else out
            read_group_into(self.prod, "SCI", i, g, plane)
            if self.has_dq:
                dq = self._dq_plane(i, g)
                plane[((dq & GROUP_BAD) != 0) & ~self.reference] = np.nan
        else:
            plane = self.prod.read("SCI", i).astype(np.float32)
            if self.has_dq:
                dq = self.prod.read("DQ", i)
                plane[((dq & PIXEL_BAD) != 0) & ~self.reference] = np.nan
        plane[self.pixel_bad] = np.nan
        if out is not None and plane is not out:
            out[...] = plane
        return plane if out is None else out

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


def _median_model(frames: _Frames, sample) -> tuple[np.ndarray, np.ndarray | None]:
    """Median over the sampled integrations, per group: float32 (ngroups, ny, nx).

    Also the median ERR^2 (ny, nx) of cubes that have ERR, else None.
    """
    import warnings

    med = np.empty((frames.ngroups, frames.ny, frames.nx), dtype=np.float32)
    err2 = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stack = np.empty((len(sample), frames.ny, frames.nx), dtype=np.float32)
        for g in range(frames.ngroups):
            for j, i in enumerate(sample):
                frames.read_plane(int(i), g, out=stack[j])
            med[g] = _fast_nanmedian(stack)
        if frames.has_err:
            err2 = np.nanmedian(np.stack([frames.read_err2(int(i)) for i in sample]), axis=0)
    return med, err2


def _fast_nanmedian(stack):
    """``np.nanmedian(stack, axis=0)``, with the (much faster) plain median where no value is NaN."""
    out = oof.median_of_planes(stack)  # np.median(stack, axis=0); the stack stays as it is for the holes
    holes = np.isnan(out)
    if holes.any():
        out[holes] = np.nanmedian(stack[:, holes], axis=0)
    return out


def _cds(cube):
    """Signal image of a model or integration: last group minus first (ramps), else the frame."""
    return cube[-1] - cube[0] if cube.shape[0] > 1 else cube[0]


def _inverse_variance(frames: _Frames, model, err2=None, overwrite=False):
    """Inverse variance per group from the model level (ramps) or the mean ERR^2 (cubes).

    ``overwrite``: a float32 ``model`` may be overwritten with the result.
    """
    if frames.ramp:
        gain = default_gain(frames.prod.info.detector or "")
        v0 = np.float32(READ_NOISE_DN**2 + KTC_NOISE_DN**2)
        # v0 + clip(nan_to_num(model), 0, None) / gain, in place: NaN and -inf count as 0
        reuse = overwrite and isinstance(model, np.ndarray) and model.dtype == np.float32
        var = np.fmax(model, np.float32(0), dtype=np.float32, out=model if reuse else None)
        np.minimum(var, np.finfo(np.float32).max, out=var)
        var /= np.float32(gain)
        var += v0
        return np.divide(np.float32(1), var, out=var)
    elif err2 is not None:
        var = np.array(np.broadcast_to(err2, model.shape), dtype=np.float32)
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
    _check_outputs(input_path, mask_path, output_path, save_mask, overwrite)
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
        median, median_err2 = _median_model(frames, sample) if method != "refpix" or save_mask else (None, None)
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

        coefs = np.full((nints, 3), np.nan)
        sky = np.zeros(ngroups)
        quiet = not progress

        # 2. time-series scene model: clipped temporal mean, scaled and shifted per integration
        scene = None
        winv_of = None  # inverse variance of group g, float32 (ny, nx)
        if method == "timeseries":
            scene = _SceneModel(frames, median, median_err2, mask, params, quiet)
            coefs[:] = scene.u
            sky, cleaning, stripes = _clean_model(scene.mean, scene.winv, mask, frames, params)
            scene.set_cleaning(cleaning, stripes)
            winv_of = scene.winv
            if scene.all_remembered:
                scene.release_median()
                median = median_err2 = None
        elif method == "background" and median is not None:
            def winv_of(g):
                return _inverse_variance(frames, median[g], err2=median_err2)

            sky = _clean_model(lambda g: median[g], winv_of, mask, frames, params)[0]

        # 3. correct and write
        bg_weight_mask = ~mask if method == "background" else None  # reference pixels see no light either
        stats = {"rows_rms": [], "offsets_rms": [], "fallback_rows": 0, "failed": []}
        replace = {"SCI": None}
        if frames.has_dq:
            replace[frames.dq_ext] = None
        writer = derive_product(prod, output_path, replace, tool="oneoverf", overwrite=overwrite,
                                params={"method": method, **{k: v for k, v in params.as_dict().items() if k != "method"},
                                        "mask": mask_from})
        # integrations are corrected in place in two data buffers used in turn: while one is
        # computed, a writer thread converts and writes the other (one write in flight)
        buffers, bad, pending = [None, None], None, None

        def write(i, out, failed):
            writer.write("SCI", i, out.reshape(prod.shape("SCI")[1:]))
            if frames.has_dq:
                dq = prod.read(frames.dq_ext, i)
                if failed:
                    dq = dq | np.asarray(dqflags.DO_NOT_USE, dtype=dq.dtype)
                writer.write(frames.dq_ext, i, dq)

        with (writer, ThreadPoolExecutor(1, thread_name_prefix="oneoverf-write") as pool,
              progress_bar("oneoverf", total=nints, enabled=not quiet) as advance):
            for i in range(nints):
                _release_free_memory()
                data, bad = frames.read(i, buffers[i % 2], bad)
                buffers[i % 2] = data
                out = data  # corrected in place, group by group
                try:
                    sums = scene.begin(i) if scene is not None else None
                    for g in range(ngroups):
                        scene_g = scene.predict_group(i, g, data[g], bad[g], sums) if scene is not None else None
                        est = _estimate(method, data[g], bad[g], scene_g, winv_of, g, amps, geo,
                                        refcols, reference, bg_weight_mask, params)
                        del scene_g
                        corr = est.correction
                        if method == "background" and sky[g]:
                            corr = corr - np.float32(sky[g]) * light
                        out[g] -= corr
                        _collect(stats, est)
                    failed = False
                except _FIT_ERRORS as exc:
                    log.warning("integration %d: correction failed (%s); written as NaN and flagged DO_NOT_USE",
                                prod.info.intstart + i, exc)
                    out[:] = np.nan
                    failed = True
                    stats["failed"].append(prod.info.intstart + i)
                if pending is not None:
                    pending.result()  # the other buffer is free again; re-raises a write error
                pending = pool.submit(write, i, out, failed)
                advance()
            if pending is not None:
                pending.result()

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
        "shift_rms_px": ([float(np.nanstd(coefs[:, 2])), float(np.nanstd(coefs[:, 1]))]
                         if np.isfinite(coefs[:, 1]).any() else None),
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


def _check_outputs(input_path, mask_path, output_path, save_mask, overwrite) -> None:
    """Refuse an output that is an input, or exists without ``overwrite``, before any work."""
    inputs = tuple(str(p) for p in (input_path, mask_path) if p is not None)
    for out in (output_path, save_mask):
        if out is not None:
            check_output(out, overwrite=overwrite, inputs=inputs)


def _choose_method(params, nints, reference) -> tuple[str, str]:
    if params.method != "auto":
        return params.method, "--method"
    if nints >= params.min_ints_timeseries:
        return "timeseries", f"{nints} integrations >= {params.min_ints_timeseries}"
    return "background", f"only {nints} integration(s), time-series mode needs {params.min_ints_timeseries}"


def _fit_integration(data, bad, model, deriv, winv, src, src_amp, box, amps):
    """Regressors of one integration against the median model: (scale, y shift, x shift).

    The scale comes from a 2-D fit over the source pixels (last minus first group for a
    ramp, which cancels the reset level); the shifts from the source collapsed along rows
    and along columns inside its bounding box (:func:`profile_shift`).
    """
    if src.size == 0:
        return np.array([1.0, 0.0, 0.0])
    cds = _cds(data)
    mcds = _cds(model)
    sig = cds.ravel()[src]
    msig = mcds.ravel()[src]
    dsig = deriv[-1] - deriv[0] if deriv.shape[0] > 1 else deriv[0]
    w = winv[-1].ravel()[src].astype(np.float64)
    badc = (bad[-1] | bad[0]) if data.shape[0] > 1 else bad[0]
    if data.shape[0] > 1:
        w = 1.0 / (1.0 / w + 1.0 / winv[0].ravel()[src])
    w[badc.ravel()[src]] = 0
    scale, ax, ay = oof.fit_scene(sig, msig, dsig, w, groups=src_amp)
    if not np.isfinite(scale) or scale <= 0:
        return np.array([np.nan, np.nan, np.nan])
    ys, xs = box
    ref = mcds[ys, xs]
    rowsum = ref.sum(axis=1)
    core = rowsum >= 0.05 * rowsum.max()  # rows where the source outweighs the row stripes
    sub = np.where(badc[ys, xs], scale * ref, cds[ys, xs])[core]
    # offsets and row stripes are steps at amplifier edges in the collapsed spectrum:
    # take each amplifier's level out first
    cols = np.arange(xs.start, xs.stop)
    for x0, x1 in amps:
        sel = (cols >= x0) & (cols < x1)
        if sel.any():
            sub[:, sel] -= np.median(sub[:, sel] - scale * ref[core][:, sel], axis=1, keepdims=True)
    _, dx = oof.profile_shift(sub.sum(axis=0), ref[core].sum(axis=0))
    dy = -ay / scale
    return np.array([scale, dy if np.isfinite(dy) else 0.0, dx if np.isfinite(dx) else 0.0])


def _bounding_box(mask):
    """Slices of the rows and columns that hold the mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _estimate(method, frame, bad, scene, winv_of, g, amps, geo, refcols, reference, bg_mask, params):
    if method == "timeseries":
        resid = frame - scene
        weights = winv_of(g)
        weights[bad] = 0
    elif method == "background":
        resid = frame
        weights = np.where(bad | ~bg_mask, np.float32(0), winv_of(g) if winv_of is not None else np.float32(1))
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


class _SceneModel:
    """The time-series scene model, built in one pass and evaluated leave-one-out.

    Each integration is fitted against the median (scale and y shift from a 2-D fit over
    the source, x shift from the spectrum collapsed over the source rows); its offsets and
    slow 1/f drift across rows (:func:`row_levels` on the background) are taken out and
    pixels more than 7.5 sigma from that fit (cosmic rays) replaced by it. Running sums
    give the temporal mean and, on the source pixels, a per-pixel regression on the scale
    and y shift (:func:`solve_pixel_regression`; it follows the transit's colour and the
    undersampled PSF's response to sub-pixel shifts, which no analytic derivative does).
    The x shift (along dispersion, well sampled) uses the mean's x derivative.

    :meth:`predict_group` evaluates the model for integration i from the sums without i
    (leave one out), so an integration's own noise never enters its scene and cannot be
    absorbed. The cleaned integration it needs is rebuilt from what the first pass kept
    (row levels and the replaced pixels, up to :data:`_CACHE_BYTES`), which gives the same
    values as cleaning it again.

    Memory: the median and the running total, (ngroups, ny, nx) float32 each; the mean and
    the inverse variances are computed per group when needed.
    """

    def __init__(self, frames: _Frames, median, median_err2, mask, params, quiet):
        self.frames = frames
        geo = frames.geometry
        ngroups, n = frames.ngroups, frames.nints
        self.median = median
        self.err2 = median_err2
        self._median_err2 = median_err2
        self.mask = mask
        self.params = params
        self.src = np.flatnonzero(mask.ravel())
        self.src_amp = geo.amplifier_map()[self.src % frames.nx] if self.src.size else np.zeros(0, int)
        self.amap = geo.amplifier_map()
        self.box = _bounding_box(mask)
        self.background = ~mask
        self.dmed = np.stack([oof.scene_derivatives(median[g], self.src) for g in range(ngroups)])
        ends = (0, ngroups - 1)
        winv_ends = np.stack([_inverse_variance(frames, median[g], err2=median_err2) for g in ends])
        # sqrt of the median's inverse variance, for the outlier test; kept for this pass only
        self._sqrt_winv_med = np.empty(median.shape, dtype=np.float32)
        for g in range(ngroups):
            winv = _inverse_variance(frames, median[g], err2=median_err2)
            np.sqrt(winv, out=self._sqrt_winv_med[g])
        self.learn = n >= _LEARN_INTS
        self.k = 2 if self.learn else 1
        self.n = n
        self.total = np.zeros((ngroups, frames.ny, frames.nx), dtype=np.float32)
        self.sprod = np.zeros((ngroups, self.k, self.src.size), dtype=np.float64)
        self.su, self.suu = np.zeros(3), np.zeros((3, 3))
        self.u = np.zeros((n, 3))
        self._cache = {}
        self._cache_bytes = 0
        err2 = np.zeros((frames.ny, frames.nx), dtype=np.float64) if frames.has_err else None
        nerr = np.zeros((frames.ny, frames.nx), dtype=np.uint32) if frames.has_err else None
        data = bad = None
        with progress_bar("oneoverf: scene model", total=n, enabled=not quiet) as advance:
            for i in range(n):
                _release_free_memory()
                data, bad = frames.read(i, data, bad)
                try:
                    u = _fit_integration(data, bad, median, self.dmed, winv_ends, self.src, self.src_amp,
                                         self.box, geo.amplifiers)
                except _FIT_ERRORS:
                    u = np.full(3, np.nan)
                if not np.isfinite(u).all() or u[0] <= 0:
                    u = np.array([1.0, 0.0, 0.0])
                self.u[i] = u
                levels, outliers = [], []
                for g in range(ngroups):
                    clean, lev, out_idx = self._clean_group(g, data[g], bad[g], u)
                    self.total[g] += clean
                    if self.src.size:
                        vals = clean.reshape(-1)[self.src]
                        self.sprod[g] += u[: self.k, None] * vals[None, :]
                    levels.append(lev)
                    outliers.append(out_idx)
                self._remember(i, levels, outliers)
                self.su += u
                self.suu += np.outer(u, u)
                if err2 is not None:
                    e2 = frames.read_err2(i)
                    ok = np.isfinite(e2) & ~bad[0]
                    err2 += np.where(ok, e2, 0.0)
                    nerr += ok
                advance()
        del data, bad
        self._sqrt_winv_med = None
        if err2 is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                self.err2 = np.where(nerr > 0, err2 / np.maximum(nerr, 1), np.nan)
        self.cleaning = np.zeros((ngroups, frames.nx), dtype=np.float32)
        self.stripes = np.zeros((ngroups, frames.ny, len(geo.amplifiers)), dtype=np.float32)
        self.dxmean = np.stack([oof.scene_derivatives(self.mean(g), self.src)[0] for g in range(ngroups)])
        log.debug("scene model: %s; %d of %d integrations' cleaning kept (%.1f MB)",
                  "per-pixel response to flux and y shift" if self.learn else "mean scaled by flux",
                  len(self._cache), n, self._cache_bytes / 2**20)

    def mean(self, g):
        """Return the temporal mean of group g, float32 (ny, nx); cleaned after :meth:`set_cleaning`."""
        m = np.divide(self.total[g], np.float32(self.n))
        for a, (x0, x1) in enumerate(self.frames.geometry.amplifiers):
            m[:, x0:x1] -= self.cleaning[g][None, x0:x1] + self.stripes[g][:, a, None]
        return m

    def winv(self, g):
        """Return the inverse variance of group g from the mean: float32 (ny, nx)."""
        return _inverse_variance(self.frames, self.mean(g), err2=self.err2, overwrite=True)

    def _pred(self, g, u):
        coef = (u[0], -u[0] * u[2], -u[0] * u[1])
        return oof.predict_scene(self.median[g], self.dmed[g], self.src, coef)

    def _clean_group(self, g, data_g, bad_g, u):
        """Clean group g: offsets and row drifts out, outliers replaced by the median fit.

        Returns the cleaned plane, the row levels (ny, namps) float32 and the flat indices
        of the good pixels replaced as outliers.
        """
        geo = self.frames.geometry
        pred = self._pred(g, u)
        resid = data_g - pred
        lev = oof.row_levels(resid, self.background & ~bad_g, geo.amplifiers, min_pixels=self.params.min_row_pixels)
        self._minus_levels(resid, lev, out=resid)
        np.abs(resid, out=resid)
        if self._sqrt_winv_med is not None:
            resid *= self._sqrt_winv_med[g]
        else:
            winv = _inverse_variance(self.frames, self.median[g], err2=self._median_err2)
            resid *= np.sqrt(winv, out=winv)
        keep = resid < np.float32(7.5)
        keep &= ~bad_g
        out = self._minus_levels(data_g, lev, out=resid)
        np.copyto(out, pred, where=~keep)
        outliers = np.flatnonzero(~keep & ~bad_g).astype(np.int32)
        return out, lev, (outliers, pred.reshape(-1)[outliers])

    def _minus_levels(self, plane, levels, out):
        """``plane - levels[:, amap]`` (one level per row and amplifier), into ``out``."""
        for a, (x0, x1) in enumerate(self.frames.geometry.amplifiers):
            np.subtract(plane[:, x0:x1], levels[:, a, None], out=out[:, x0:x1])
        return out

    def _remember(self, i, levels, outliers):
        """Keep integration i's row levels and outliers (index, value) for pass 2, within budget."""
        lev = np.stack(levels)
        nbytes = lev.nbytes + sum(o[0].nbytes + o[1].nbytes for o in outliers)
        if self._cache_bytes + nbytes <= _CACHE_BYTES:
            self._cache[i] = (lev, outliers)
            self._cache_bytes += nbytes

    @property
    def all_remembered(self) -> bool:
        """True when every integration's cleaning is kept: the median is then no longer needed."""
        return len(self._cache) == self.n

    def release_median(self):
        """Drop the median and its derivatives (only valid when :attr:`all_remembered`)."""
        if self.all_remembered:
            self.median = self.dmed = None

    def _clean_again(self, i, g, data_g, bad_g, u):
        """Rebuild the cleaned group g of integration i as the first pass made it.

        From the cache, pixels flagged bad in this integration keep ``data - level``
        instead of the median fit: they carry zero weight in the estimate and every other
        pixel's scene is computed pixel by pixel, so the result is the same.
        """
        if i not in self._cache:
            return self._clean_group(g, data_g, bad_g, u)[0]
        lev, outliers = self._cache[i]
        out = self._minus_levels(data_g, lev[g], out=np.empty_like(data_g))
        idx, values = outliers[g]
        out.reshape(-1)[idx] = values
        return out

    def set_cleaning(self, columns, stripes):
        """Per-column (ngroups, nx) and per-row (ngroups, ny, namps) corrections of the mean."""
        self.cleaning = np.asarray(columns, dtype=np.float32)
        self.stripes = np.asarray(stripes, dtype=np.float32)

    def begin(self, i):
        """Regressor sums without integration i, for :meth:`predict_group`."""
        u = self.u[i]
        su = self.su - u
        suu = self.suu - np.outer(u, u)
        return u, su, suu, su / (self.n - 1)

    def predict_group(self, i, g, data_g, bad_g, sums):
        """Scene of group g of integration i from the other integrations: float32 (ny, nx)."""
        n1 = self.n - 1
        u, su, suu, ubar = sums
        k = self.k
        clean = self._clean_again(i, g, data_g, bad_g, u)
        out = np.subtract(self.total[g], clean, out=clean if self.src.size == 0 else None)
        out /= np.float32(n1)
        out -= self.cleaning[g][None, :]
        self._minus_levels(out, self.stripes[g], out=out)
        if not self.src.size:
            return out
        flat = out.reshape(-1)
        c = clean.reshape(-1)[self.src]
        mean_src_raw = (self.total[g].reshape(-1)[self.src] - c) / n1
        if self.learn:
            b, _ = oof.solve_pixel_regression(mean_src_raw, self.sprod[g] - u[:k, None] * c[None, :],
                                              su[:k], suu[:k, :k], n1)
            flat[self.src] += ((u[:k] - ubar[:k]) @ b).astype(np.float32)
        else:
            flat[self.src] *= np.float32(u[0] / ubar[0])
        flat[self.src] -= np.float32(u[0] * (u[2] - ubar[2])) * self.dxmean[g]
        return out


def _clean_model(model_of, winv_of, mask, frames: _Frames, params):
    """Measure the model's own amplifier offsets, odd/even columns and row stripes, keeping the sky.

    ``model_of(g)`` and ``winv_of(g)`` give group g of the model and its inverse variance,
    float32 (ny, nx) (new arrays, or views not modified here).

    The temporal mean still holds the mean of the pre-amp offsets; each amplifier's offset is
    measured on its reference pixels (which see no light), so the sky and the star's wings
    stay in the model. Amplifiers without reference pixels take the others' sky level.
    The model's row stripes (the mean of the integrations' 1/f, smaller by sqrt(nints)) are
    measured only on columns the source mask never touches (beyond the grism filter's
    cut-off, beside the weak-lens donut) and taken off the rows of those amplifiers; in
    columns crossed by the source they cannot be told from static structure such as the
    PSF's far wings, and are kept.

    Returns
    -------
    sky : float64 ndarray, shape (ngroups,)
        Background level of the light-sensitive pixels above the reference pixels, per
        group (0 where no amplifier has reference pixels).
    cleaning : float32 ndarray, shape (ngroups, nx)
        The per-column correction (offsets + odd/even) to take off.
    stripes : float32 ndarray, shape (ngroups, ny, namps)
        The row stripes to take off each amplifier.
    """
    geo = frames.geometry
    ref = frames.reference
    usable = ~mask & ~ref
    ngroups = frames.ngroups
    sky = np.zeros(ngroups)
    cleaning = np.zeros((ngroups, frames.nx), dtype=np.float32)
    namps = len(geo.amplifiers)
    stripes = np.zeros((ngroups, frames.ny, namps), dtype=np.float32)
    dark = usable & ~mask.any(axis=0)[None, :]
    for g in range(ngroups):
        model_g, winv_g = model_of(g), winv_of(g)
        w = np.where(usable & np.isfinite(model_g), winv_g, np.float32(0))
        est = oof.estimate_frame(model_g, w, geo.amplifiers, params, xstart=geo.xstart, reference_columns=())
        ref_off = np.full(len(geo.amplifiers), np.nan)
        for a, (x0, x1) in enumerate(geo.amplifiers):
            vals = model_g[:, x0:x1][ref[:, x0:x1]]
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
            cleaning[g, x0:x1] = ref_off[a] + parity
        if dark.any():
            w = np.where(dark & np.isfinite(model_g), winv_g, np.float32(0))
            rows = oof.estimate_frame(model_g - cleaning[g][None, :], w, geo.amplifiers, params,
                                      xstart=geo.xstart, reference_columns=())
            for a in range(namps):
                measured = rows.row_source[a] == 0
                if measured.sum() >= 2:
                    stripes[g, measured, a] = rows.rows[a, measured] - np.median(rows.rows[a, measured])
    return sky, cleaning, stripes
