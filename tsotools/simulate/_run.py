"""The simulation runners: build every integration, write the products and the truth file.

Files are written only through :mod:`tsotools.io` (``save_model`` for the pipeline
products, ``new_product`` for the truth file, whose big 4-D ONEOVERF array is streamed one
integration at a time).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from .. import dqflags
from ..errors import OutputError
from ..io import ImageSpec, new_product, save_model
from ._guider import (
    FRAME_S,
    GS_IDEAL_XY_ARCSEC,
    Transform,
    centroid_rows,
    guider_frames,
    pointing_rows,
)
from ._noise import draw_cosmic_rays, injected_component
from ._ramps import SATURATION_DN, RampFit, build_ramp, plain_fit_weights
from ._scenes import GrismScene, ImagingScene, grism_wavelength
from ._timeline import (
    TARGET_DEC_DEG,
    TARGET_RA_DEG,
    bjd_tdb,
    hga_flags,
    integration_means,
    make_pointing,
    make_timeline,
    transit_shape,
)
from .params import SCIENCE_PRODUCTS, GrismParams, GuiderParams, ImagingParams

__all__ = ["simulate_grism", "simulate_guider", "simulate_imaging"]

log = logging.getLogger(__name__)

#: Height of the pipeline's grism cutout (extract_2d tsgrism_extract_height), rows.
CUTOUT_HEIGHT = 64
#: Random streams: SeedSequence spawn keys (integration, stream) and global streams.
_NOISE, _INJECTED, _COSMIC = 0, 1, 2
_GLOBAL = 2**31
_POINTING, _GUIDER = 0, 1
#: Position angle of V3 used for the Pointing table's RA/Dec offsets, degrees.
PA_V3_DEG = 251.3
_DAY = 86400.0


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _segment_range(params) -> tuple[int, int]:
    """0-based [first, stop) integrations this file holds."""
    if params.segment is None:
        return 0, params.nints
    k, n = params.segment
    # as np.array_split: the first nints % n segments hold one integration more
    sizes = [params.nints // n + (1 if s < params.nints % n else 0) for s in range(n)]
    first = sum(sizes[: k - 1])
    return first, first + sizes[k - 1]


# =============================================================================== planning
class _Plan:
    """Everything known before the first integration is built."""

    def __init__(self, scene, params, simkind: str, margin_s: float = 5.0):
        self.scene, self.params, self.simkind = scene, params, simkind
        geo = scene.geometry
        self.geometry = geo
        self.tframe = geo.frame_time_s
        self.tgroup = self.tframe
        self.timeline = make_timeline(
            params.expstart_mjd, params.nints, params.ngroups, self.tframe
        )
        self.first, self.stop = _segment_range(params)
        self.nseg = self.stop - self.first
        self.pointing = make_pointing(
            params,
            self.timeline,
            scene.scale_arcsec,
            _rng(params.seed, _GLOBAL, _POINTING),
            margin_s=margin_s,
        )
        pt = self.pointing
        self.mean_dx = integration_means(pt.mjd, pt.dx, self.timeline)
        self.mean_dy = integration_means(pt.mjd, pt.dy, self.timeline)
        self.shape = transit_shape(self.timeline.mid, self.timeline, params.transit_depth)
        self.hga = hga_flags(self.timeline, pt)
        tl = self.timeline
        self.bjd = {k: bjd_tdb(getattr(tl, k)) for k in ("start", "mid", "end")}
        scene.set_peak(params.peak_dn / (params.ngroups * self.tgroup))
        self.sky = (params.sky_rate * scene.light).astype(np.float64)
        ints = range(self.first, self.stop)
        ox, oy = params.xref_offset
        self.offsets = [(ox + self.mean_dx[i], oy + self.mean_dy[i]) for i in ints]
        self.rate = np.empty((self.nseg, geo.ny, geo.nx), dtype=np.float32)
        self.flux = np.empty(self.nseg)
        for j, i in enumerate(ints):
            star, self.flux[j] = scene.render(*self.offsets[j], self.shape[i])
            self.rate[j] = star + self.sky
        self.rate_oot = (scene.star_rate(ox, oy, 0.0) + self.sky).astype(np.float32)
        self.cosmic = [self._cosmic_rays(i) for i in ints]

    def _cosmic_rays(self, i):
        p = self.params
        if not (p.cosmic_rays and p.cr_rate > 0):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, np.zeros(0, dtype=np.float32)
        return draw_cosmic_rays(
            _rng(p.seed, i, _COSMIC),
            self.scene.light,
            p.ngroups,
            self.tgroup,
            p.cr_rate,
            p.cr_min_dn,
            p.cr_max_dn,
        )

    def cosmic_table(self) -> Table:
        p = self.params
        rows = {"INT": [], "GROUP": [], "Y": [], "X": [], "AMPLITUDE_DN": [], "SIGMA": []}
        for j, (g, y, x, amp) in enumerate(self.cosmic):
            noise = np.sqrt(2 * p.readnoise**2 + self.rate[j][y, x] * self.tgroup / p.gain)
            rows["INT"].append(np.full(len(g), self.first + j + 1, dtype=np.int32))
            rows["GROUP"].append(g.astype(np.int32))
            rows["Y"].append(y.astype(np.int32))
            rows["X"].append(x.astype(np.int32))
            rows["AMPLITUDE_DN"].append(amp.astype(np.float32))
            rows["SIGMA"].append((amp / noise).astype(np.float32))
        tab = Table({k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()})
        return tab

    def group_table(self) -> np.ndarray:
        """GROUP table rows (one per group of this file's integrations), as in level-1b files."""
        tl, p, geo = self.timeline, self.params, self.geometry
        ints = np.repeat(np.arange(self.first, self.stop), p.ngroups)
        groups = np.tile(np.arange(p.ngroups), self.nseg)
        end = tl.start[ints] + (groups + 1) * self.tgroup / _DAY
        t = Time(end, format="mjd", scale="utc")
        day_start = Time(np.floor(end), format="mjd", scale="utc")
        rows = np.zeros(
            len(end),
            dtype=[
                ("integration_number", "i4"),
                ("group_number", "i2"),
                ("end_day", "i2"),
                ("end_milliseconds", "i4"),
                ("end_submilliseconds", "i2"),
                ("group_end_time", "S26"),
                ("number_of_columns", "i2"),
                ("number_of_rows", "i2"),
                ("number_of_gaps", "i2"),
                ("completion_code_number", "i2"),
                ("completion_code_text", "S36"),
                ("bary_end_time", "f8"),
                ("helio_end_time", "f8"),
            ],
        )
        ms = (end - np.floor(end)) * _DAY * 1000.0
        rows["integration_number"] = ints + 1
        rows["group_number"] = groups + 1
        rows["end_day"] = [int(d.split(":")[1]) for d in np.atleast_1d(day_start.yday)]
        rows["end_milliseconds"] = np.floor(ms).astype(np.int32)
        rows["end_submilliseconds"] = np.floor((ms - np.floor(ms)) * 1000).astype(np.int16)
        rows["group_end_time"] = [s.encode() for s in t.isot]
        rows["number_of_columns"] = geo.nx
        rows["number_of_rows"] = geo.ny
        rows["completion_code_text"] = b"COMPLETE"
        # the barycentric correction barely changes within an exposure: use the mid-exposure one
        offset = float(np.mean(self.bjd["mid"] - 2400000.5 - tl.mid))
        rows["bary_end_time"] = end + offset
        rows["helio_end_time"] = end + offset
        return rows

    def int_times(self) -> np.ndarray:
        """INT_TIMES rows for the whole exposure."""
        tl = self.timeline
        rows = np.zeros(
            tl.nints,
            dtype=[
                ("integration_number", "i4"),
                ("int_start_MJD_UTC", "f8"),
                ("int_mid_MJD_UTC", "f8"),
                ("int_end_MJD_UTC", "f8"),
                ("int_start_BJD_TDB", "f8"),
                ("int_mid_BJD_TDB", "f8"),
                ("int_end_BJD_TDB", "f8"),
            ],
        )
        rows["integration_number"] = np.arange(1, tl.nints + 1)
        for k in ("start", "mid", "end"):
            rows[f"int_{k}_MJD_UTC"] = getattr(tl, k)
            rows[f"int_{k}_BJD_TDB"] = self.bjd[k] - 2400000.5
        return rows


# ============================================================================ metadata
def _set_meta(model, plan: _Plan, *, bunit: str | None, steps: dict) -> None:
    """Exposure, instrument, subarray and aperture keywords, through the model's meta."""
    sc, p, tl, geo = plan.scene, plan.params, plan.timeline, plan.geometry
    m = model.meta
    m.telescope = "JWST"
    m.instrument.name = "NIRCAM"
    m.instrument.detector = sc.detector
    m.instrument.filter = sc.filter
    m.instrument.pupil = sc.pupil
    m.instrument.module = "A"
    m.instrument.channel = "LONG" if sc.detector.endswith("LONG") else "SHORT"
    e = m.exposure
    e.type = sc.exp_type
    e.readpatt = "RAPID"
    e.nints = p.nints
    e.ngroups = p.ngroups
    e.nframes = 1
    e.groupgap = 0
    e.frame_time = plan.tframe
    e.group_time = plan.tgroup
    e.noutputs = geo.noutputs
    e.integration_start = plan.first + 1
    e.integration_end = plan.stop
    e.segment_number = p.segment[0] if p.segment else 1
    e.segment_total = p.segment[1] if p.segment else 1
    e.start_time = tl.expstart
    e.end_time = tl.expend
    e.mid_time = 0.5 * (tl.expstart + tl.expend)
    e.duration = tl.span_s
    e.integration_time = (p.ngroups - 1) * plan.tgroup
    e.exposure_time = (p.ngroups - 1) * plan.tgroup * p.nints
    e.nresets_between_ints = 1
    e.nresets_at_start = 1
    e.nsamples = 1
    e.sample_time = 10
    e.tsovisit = True
    s = m.subarray
    s.name = p.subarray
    s.xstart = geo.xstart + 1
    s.ystart = geo.ystart + 1
    s.xsize = geo.nx
    s.ysize = geo.ny
    s.fastaxis = -1
    s.slowaxis = 2
    m.target.ra = TARGET_RA_DEG
    m.target.dec = TARGET_DEC_DEG
    m.target.catalog_name = "SIMULATED-STAR"
    m.target.proposer_name = "tsotools simulation"
    t = Time(tl.expstart, format="mjd", scale="utc").isot
    m.observation.date, m.observation.time = t[:10], t[11:23]
    m.visit.tsovisit = True
    w = m.wcsinfo
    w.siaf_xref_sci = sc.xref + 1.0
    w.siaf_yref_sci = sc.yref + 1.0
    w.v3yangle = Transform(sc.detector, sc.scale_arcsec).science_v3yangle
    w.vparity = -1
    if bunit:
        model.meta.bunit_data = bunit
        if hasattr(model, "err") and bunit:
            model.meta.bunit_err = bunit
    for step, status in steps.items():
        setattr(m.cal_step, step, status)


_RAMP_STEPS = {
    "dq_init": "COMPLETE",
    "saturation": "COMPLETE",
    "superbias": "COMPLETE",
    "refpix": "SKIPPED",
}
_RATE_STEPS = {**_RAMP_STEPS, "jump": "COMPLETE", "ramp_fit": "COMPLETE"}
_CAL_STEPS = {
    **_RATE_STEPS,
    "assign_wcs": "COMPLETE",
    "extract_2d": "COMPLETE",
    "flat_field": "SKIPPED",
    "photom": "SKIPPED",
}


# ============================================================================== truth
def _truth_header(plan: _Plan, transform: Transform | None) -> fits.Header:
    p, sc = plan.params, plan.scene
    h = fits.Header()
    h["SIMKIND"] = (plan.simkind, "simulated product kind")
    h["SEED"] = (p.seed, "numpy Generator seed")
    h["GAIN"] = (p.gain, "[e-/DN] gain")
    h["RDNOISE"] = (p.readnoise, "[DN] white read noise of one read")
    h["KTCNOISE"] = (p.ktc_noise, "[DN] kTC noise per pixel per integration")
    h["TFRAME"] = (plan.tframe, "[s] frame time")
    h["TGROUP"] = (plan.tgroup, "[s] group time")
    h["NINTS"] = (p.nints, "integrations in the exposure")
    h["NGROUPS"] = (p.ngroups, "groups per integration")
    h["INTSTART"] = (plan.first + 1, "first integration in this truth (1-based)")
    h["INTEND"] = (plan.stop, "last integration in this truth (1-based)")
    h["ONEOVERF"] = (p.oneoverf_scale, "scale of the injected 1/f + offsets component")
    h["SHAREDFR"] = (p.shared_fraction, "part of the 1/f variance common to all outputs")
    h["XOFFSET"] = (p.xref_offset[0], "[px] true star x minus XREF_SCI (0-based)")
    h["YOFFSET"] = (p.xref_offset[1], "[px] true star y minus YREF_SCI (0-based)")
    h["XREF"] = (sc.xref, "[px] 0-based reference x (XREF_SCI - 1)")
    h["YREF"] = (sc.yref, "[px] 0-based reference y (YREF_SCI - 1)")
    h["TRANSDEP"] = (p.transit_depth, "white-light transit depth")
    h["CONTAM"] = (sc.contamination(), "neighbour fraction of flux within the donut")
    h["PEAKRATE"] = (float(plan.rate_oot.max()), "[DN/s] brightest pixel, out of transit")
    h["SKYRATE"] = (p.sky_rate, "[DN/s/px] sky")
    h["JITTER"] = (p.jitter_mas, "[mas] rms of per-integration mean pointing")
    dx, dy = p.drift_xy_px
    h["DRIFTX"] = (dx, "[px] drift along x over the exposure")
    h["DRIFTY"] = (dy, "[px] drift along y over the exposure")
    h["HGA"] = (p.hga, "an antenna move mid-exposure")
    h["PIXSCALE"] = (sc.scale_arcsec, "[arcsec/px] science pixel scale")
    h["SATURATE"] = (SATURATION_DN, "[DN] saturation level above superbias")
    if transform is not None:
        for key, card in transform.header_cards().items():
            h[key] = card
    return h


def _bintable(name: str, table: Table, units: dict | None = None) -> fits.BinTableHDU:
    """Make a binary table HDU; ``units`` (column -> unit string) go to TUNITn as written."""
    hdu = fits.BinTableHDU(table, name=name)
    for k, col in enumerate(hdu.columns.names, start=1):
        if units and col in units:
            hdu.header[f"TUNIT{k}"] = units[col]
    return hdu


def _truth_tables(plan: _Plan, guider_truth: dict | None) -> list:
    p, sc, tl = plan.params, plan.scene, plan.timeline
    ints = np.arange(plan.first, plan.stop)
    pos = np.array([sc.position(*o) for o in plan.offsets]).reshape(-1, 2)
    integ = Table(
        {
            "INT_NUM": (ints + 1).astype(np.int32),
            "MJD_MID": tl.mid[ints],
            "BJD_MID": plan.bjd["mid"][ints] - 2400000.5,
            "X": pos[:, 0],
            "Y": pos[:, 1],
            "FLUX": plan.flux,
            "SHAPE": plan.shape[ints],
            "HGA": plan.hga[ints],
            "SKY": np.full(len(ints), p.sky_rate),
        }
    )
    hdus = [
        _bintable(
            "COSMIC_RAYS", plan.cosmic_table(), {"AMPLITUDE_DN": "DN", "X": "pix", "Y": "pix"}
        ),
        _bintable(
            "INTEGRATIONS",
            integ,
            {
                "FLUX": "DN/s",
                "SKY": "DN/s/pix",
                "X": "pix",
                "Y": "pix",
                "MJD_MID": "d",
                "BJD_MID": "d",
            },
        ),
    ]
    if isinstance(sc, GrismScene):
        hdus.append(
            _bintable(
                "TRACE",
                Table(sc.trace_table()),
                {"WAVELENGTH": "um", "SPECTRUM": "DN/s", "Y_CENTER": "pix", "X": "pix"},
            )
        )
    pt = plan.pointing
    moves = Table(
        {
            "START_MJD": [pt.hga_start] if pt.hga_start else np.zeros(0),
            "STOP_MJD": [pt.hga_stop] if pt.hga_stop else np.zeros(0),
        }
    )
    hdus.append(_bintable("HGA_MOVES", moves, {"START_MJD": "d", "STOP_MJD": "d"}))
    if guider_truth is not None:
        hdus.append(
            _bintable(
                "GUIDER",
                guider_truth["GUIDER"],
                {"MJD": "d", "X_MAS": "mas", "Y_MAS": "mas", "FLUX": "DN/s"},
            )
        )
        hdus.append(
            _bintable(
                "SCIENCE",
                guider_truth["SCIENCE"],
                {"DX_MAS": "mas", "DY_MAS": "mas", "DX_PIX": "pix", "DY_PIX": "pix"},
            )
        )
    return hdus


# ============================================================================= runner
def _check_outputs(paths: dict, overwrite: bool) -> None:
    for path in paths.values():
        if path.exists() and not overwrite:
            raise OutputError(f"{path}: exists; use --overwrite to replace it")
        if path.is_dir():
            raise OutputError(f"{path}: is a directory")


def _outdir(outdir) -> Path:
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create directory ({exc.strerror or exc})") from None
    return out


def _simulate(
    outdir,
    params,
    scene,
    simkind: str,
    prefix: str,
    truth: bool,
    overwrite: bool,
    progress: Callable | None,
    guider: GuiderParams | None = None,
    products: Collection[str] | None = None,
) -> dict[str, Path]:
    from stdatamodels.jwst import datamodels as dm

    t_start = time.perf_counter()
    if not prefix or "/" in prefix:
        raise ValueError(f"prefix must be a non-empty file-name prefix, got {prefix!r}")
    out = Path(outdir)
    kinds = _science_products(scene, products)
    paths = {k: out / f"{prefix}_{k}.fits" for k in kinds}
    if truth:
        paths["truth"] = out / f"{prefix}_truth.fits"
    margin = guider.margin_s if guider is not None else 5.0
    plan = _Plan(scene, params, simkind, margin_s=margin)
    transform = Transform(scene.detector, scene.scale_arcsec)
    guider_out = None
    if guider is not None:
        guider_out = _plan_guider(plan, guider, transform)
        for n in range(len(guider_out["files"])):
            paths[f"gs-fg_{n + 1}"] = out / f"{prefix}_gs-fg_{n + 1}_cal.fits"
    _check_outputs(paths, overwrite)
    stale = sorted(
        str(f)
        for f in out.glob(f"{prefix}_gs-fg_*_cal.fits")
        if f not in paths.values() and f.name[len(prefix) + 7 : -9].isdigit()
    )
    if stale:
        log.warning("older guider files not replaced by this run: %s", ", ".join(stale))
    _outdir(out)

    p, geo = params, scene.geometry
    nseg, ng, ny, nx = plan.nseg, p.ngroups, geo.ny, geo.nx
    refmask = geo.reference_mask()
    pixeldq = np.where(refmask, np.uint32(dqflags.REFERENCE_PIXEL), np.uint32(0)).astype(np.uint32)

    ramp = dm.RampModel()
    ramp.data = np.empty((nseg, ng, ny, nx), dtype=np.float32)
    ramp.groupdq = np.zeros((nseg, ng, ny, nx), dtype=np.uint8)
    ramp.pixeldq = pixeldq
    ramp.int_times = plan.int_times()
    ramp.group = plan.group_table()
    _set_meta(ramp, plan, bunit="DN", steps=_RAMP_STEPS)

    sci = np.empty((nseg, ny, nx), dtype=np.float32)
    dq = np.empty((nseg, ny, nx), dtype=np.uint32)
    var_p = np.empty_like(sci)
    var_r = np.empty_like(sci)

    with contextlib.ExitStack() as stack:
        writer = None
        if truth:
            _, sxx, pc = plain_fit_weights(p.ngroups, plan.tgroup)
            rate_var = (plan.rate_oot * (plan.tgroup / p.gain * pc) + p.readnoise**2 / sxx).astype(
                np.float32
            )
            extensions = [
                ImageSpec("RATE", plan.rate.shape, "float32", _unit_header("DN/s"), data=plan.rate),
                ImageSpec("ONEOVERF", (nseg, ng, ny, nx), "float32", _unit_header("DN")),
                ImageSpec("ONEOVERF_RATE", (nseg, ny, nx), "float32", _unit_header("DN/s")),
                ImageSpec(
                    "RATE_VAR", (ny, nx), "float32", _unit_header("(DN/s)**2"), data=rate_var
                ),
                *_truth_tables(plan, guider_out),
            ]
            writer = stack.enter_context(
                new_product(
                    paths["truth"],
                    _truth_header(plan, transform),
                    extensions,
                    tool="simulate",
                    params={"kind": simkind, **p.as_dict()},
                    overwrite=overwrite,
                )
            )
        for j in range(nseg):
            i = plan.first + j
            injected = injected_component(
                geo,
                ng,
                _rng(p.seed, i, _INJECTED),
                scale=p.oneoverf_scale,
                shared_fraction=p.shared_fraction,
                oddeven=p.oddeven,
            )
            cr = plan.cosmic[j]
            data, saturated = build_ramp(
                plan.rate[j],
                injected,
                _rng(p.seed, i, _NOISE),
                tgroup_s=plan.tgroup,
                gain=p.gain,
                readnoise_dn=p.readnoise,
                ktc_dn=p.ktc_noise,
                cr=cr,
            )
            any_sat = bool(saturated.any())
            fit = RampFit(ng, ny, nx, plan.tgroup, cr, saturated if any_sat else None)
            ramp.data[j] = data
            if any_sat:
                ramp.groupdq[j][saturated] = dqflags.SATURATED
            sci[j] = fit.slope(data)
            var_p[j], var_r[j] = fit.variances(sci[j], p.gain, p.readnoise)
            flags = pixeldq.copy()
            flags[fit.jump] |= np.uint32(dqflags.JUMP_DET)
            flags[fit.any_saturated] |= np.uint32(dqflags.SATURATED)
            flags[~fit.usable] |= np.uint32(dqflags.DO_NOT_USE)
            dq[j] = flags
            if writer is not None:
                writer.write("ONEOVERF", j, injected)
                writer.write("ONEOVERF_RATE", j, fit.slope(injected))
            del data, injected
            if progress is not None:
                progress(1)
        _save_science(dm, plan, ramp, sci, dq, var_p, var_r, paths, overwrite)
        if guider_out is not None:
            _save_guider(dm, plan, guider, guider_out, transform, paths, overwrite)
    log.info(
        "simulated %s: %d integration(s) of %d x %d x %d groups in %.1f s",
        simkind,
        nseg,
        nx,
        ny,
        ng,
        time.perf_counter() - t_start,
    )
    return paths


def _unit_header(unit: str) -> fits.Header:
    h = fits.Header()
    h["BUNIT"] = unit
    return h


def _science_products(scene, products: Collection[str] | None) -> tuple[str, ...]:
    """Return the science products to write: ``products`` checked against ``scene``."""
    made = SCIENCE_PRODUCTS if isinstance(scene, GrismScene) else SCIENCE_PRODUCTS[:2]
    if products is None:
        return made
    wanted = tuple(dict.fromkeys(products))
    unknown = [k for k in wanted if k not in made]
    if unknown:
        raise ValueError(f"products must be among {', '.join(made)}; got {', '.join(unknown)}")
    return tuple(k for k in made if k in wanted)


def _save_science(dm, plan, ramp, sci, dq, var_p, var_r, paths, overwrite):
    if "ramp" in paths:
        save_model(ramp, paths["ramp"], overwrite=overwrite)
    del ramp
    rate = dm.CubeModel()
    rate.data = sci
    rate.dq = dq
    rate.var_poisson = var_p
    rate.var_rnoise = var_r
    rate.err = np.sqrt(var_p + var_r).astype(np.float32)
    rate.int_times = plan.int_times()
    _set_meta(rate, plan, bunit="DN/s", steps=_RATE_STEPS)
    if "rateints" in paths:
        save_model(rate, paths["rateints"], overwrite=overwrite)
    if "calints" in paths:
        sc = plan.scene
        h = min(CUTOUT_HEIGHT, plan.geometry.ny)
        cut = dm.SlitModel()
        cut.data = np.ascontiguousarray(sci[:, :h])
        cut.dq = np.ascontiguousarray(dq[:, :h])
        cut.var_poisson = np.ascontiguousarray(var_p[:, :h])
        cut.var_rnoise = np.ascontiguousarray(var_r[:, :h])
        cut.err = np.ascontiguousarray(rate.err[:, :h])
        wl = grism_wavelength(np.arange(plan.geometry.nx), sc.filter)
        cut.wavelength = np.broadcast_to(wl, (h, plan.geometry.nx)).astype(np.float32)
        cut.int_times = plan.int_times()
        _set_meta(cut, plan, bunit="DN/s", steps=_CAL_STEPS)
        size = {"SUBGRISM64": 64, "SUBGRISM128": 128, "SUBGRISM256": 256}[plan.params.subarray]
        cut.name = f"NRCA5_GRISM{size}_{sc.filter}"
        cut.xstart, cut.xsize = 1, plan.geometry.nx
        cut.ystart, cut.ysize = 1, h
        cut.source_xpos = sc.xref
        cut.source_ypos = sc.yref
        cut.meta.wcsinfo.spectral_order = 1
        cut.meta.wcsinfo.dispersion_direction = 1
        save_model(cut, paths["calints"], overwrite=overwrite)


# ============================================================================== guider
def _plan_guider(plan: _Plan, gp: GuiderParams, transform: Transform) -> dict:
    """Guider frames over the pointing series, split into files, and their truth tables."""
    pt = plan.pointing
    xy_mas = transform.science_to_guider @ np.vstack([pt.dx, pt.dy])
    frames = guider_frames(pt.mjd, xy_mas[0], xy_mas[1], gp.gs_mag, _rng(gp.seed, _GLOBAL, _GUIDER))
    n = len(pt.mjd)
    files = [np.arange(a, min(a + gp.frames_per_file, n)) for a in range(0, n, gp.frames_per_file)]
    ints = np.arange(plan.first, plan.stop)
    sci_dx = plan.mean_dx[ints]
    sci_dy = plan.mean_dy[ints]
    mas = integration_means(pt.mjd, xy_mas.T, plan.timeline)[ints]
    guider_tab = Table(
        {"MJD": pt.mjd, "X_MAS": xy_mas[0], "Y_MAS": xy_mas[1], "FLUX": frames["flux"]}
    )
    science = Table(
        {
            "INT_NUM": (ints + 1).astype(np.int32),
            "DX_MAS": mas[:, 0],
            "DY_MAS": mas[:, 1],
            "DX_PIX": sci_dx,
            "DY_PIX": sci_dy,
        }
    )
    return {
        "frames": frames,
        "files": files,
        "xy_mas": xy_mas,
        "GUIDER": guider_tab,
        "SCIENCE": science,
    }


def _save_guider(dm, plan, gp: GuiderParams, gout: dict, transform: Transform, paths, overwrite):
    from ._guider import FGS_V3IDLYANGLE_DEG, FGS_VIDLPARITY

    pt = plan.pointing
    frames = gout["frames"]
    for n, idx in enumerate(gout["files"]):
        model = dm.GuiderCalModel()
        model.data = frames["sci"][idx]
        model.err = frames["err"][idx]
        model.dq = np.zeros((8, 8), dtype=np.uint32)
        start = float(pt.mjd[idx[0]] - 0.5 * FRAME_S / _DAY)
        end = float(pt.mjd[idx[-1]] + 0.5 * FRAME_S / _DAY)
        if gp.tables:
            x, y = gout["xy_mas"][0][idx], gout["xy_mas"][1][idx]
            model.pointing_table = pointing_rows(
                pt.mjd[idx], x, y, start, pt.hga_start, pt.hga_stop, transform, PA_V3_DEG
            )
            model.centroid_table = centroid_rows(
                pt.mjd[idx], {k: v[idx] for k, v in frames.items() if k not in ("sci", "err")}
            )
        m = model.meta
        m.telescope = "JWST"
        m.instrument.name = "FGS"
        m.instrument.detector = "GUIDER1"
        m.exposure.type = "FGS_FINEGUIDE"
        m.exposure.start_time = start
        m.exposure.end_time = end
        m.exposure.frame_time = FRAME_S
        m.exposure.group_time = FRAME_S
        m.exposure.nints = len(idx)
        m.exposure.ngroups = 1
        m.guidestar.gs_mag = gp.gs_mag
        m.guidestar.gs_id = "S4HQ000123"
        m.guidestar.gs_ra = TARGET_RA_DEG + 0.05
        m.guidestar.gs_dec = TARGET_DEC_DEG - 0.03
        m.guidestar.data_start = start
        m.guidestar.data_end = end
        m.guidestar.fgs_v3yangle = FGS_V3IDLYANGLE_DEG
        m.guidestar.fgs_vparity = FGS_VIDLPARITY
        m.guidestar.gs_ideal_x = GS_IDEAL_XY_ARCSEC[0]
        m.guidestar.gs_ideal_y = GS_IDEAL_XY_ARCSEC[1]
        m.wcsinfo.v3yangle = FGS_V3IDLYANGLE_DEG
        m.wcsinfo.vparity = FGS_VIDLPARITY
        m.target.ra = TARGET_RA_DEG
        m.target.dec = TARGET_DEC_DEG
        m.bunit_data = "DN/s"
        m.bunit_err = "DN/s"
        save_model(model, paths[f"gs-fg_{n + 1}"], overwrite=overwrite)


# ============================================================================== public
def simulate_grism(
    outdir,
    params: GrismParams | None = None,
    *,
    prefix: str = "grism",
    truth: bool = True,
    overwrite: bool = False,
    progress: Callable | None = None,
    products: Collection[str] | None = None,
) -> dict[str, Path]:
    """Simulate a NIRCam grism time series: ramp, rateints, calints cutout and truth.

    Parameters
    ----------
    outdir : path-like
        Output directory (created if missing).
    params : GrismParams
        Settings; defaults to ``GrismParams()``.
    prefix : str
        File-name prefix: ``<prefix>_ramp.fits``, ``_rateints.fits``, ``_calints.fits``,
        ``_truth.fits``.
    truth : bool
        Write the truth file (False for large benchmark products).
    overwrite : bool
        Replace existing outputs.
    progress : callable or None
        Called with 1 after each integration.
    products : collection of str or None
        Science products to write, among ``ramp``, ``rateints`` and ``calints``
        (default all); the others are computed but not written.

    Returns
    -------
    dict of str to Path
        The written ``products`` and (with ``truth``) ``truth``.
    """
    params = GrismParams() if params is None else params
    if not isinstance(params, GrismParams):
        raise TypeError("params must be a GrismParams")
    return _simulate(
        outdir, params, GrismScene(params), "grism", prefix, truth, overwrite, progress,
        products=products,
    )


def simulate_imaging(
    outdir,
    params: ImagingParams | None = None,
    *,
    prefix: str = "imaging",
    truth: bool = True,
    overwrite: bool = False,
    progress: Callable | None = None,
    products: Collection[str] | None = None,
) -> dict[str, Path]:
    """Simulate a weak-lens imaging time series: ramp, rateints and truth.

    Parameters are as for :func:`simulate_grism` (``products`` among ``ramp`` and
    ``rateints``); the outputs are those products and (with ``truth``) ``truth``.
    """
    params = ImagingParams() if params is None else params
    if not isinstance(params, ImagingParams):
        raise TypeError("params must be an ImagingParams")
    return _simulate(
        outdir, params, ImagingScene(params), "imaging", prefix, truth, overwrite, progress,
        products=products,
    )


def simulate_guider(
    outdir,
    params: GuiderParams | None = None,
    *,
    prefix: str = "guider",
    truth: bool = True,
    overwrite: bool = False,
    progress: Callable | None = None,
    products: Collection[str] | None = None,
) -> dict[str, Path]:
    """Simulate fine-guide files and the science exposure they cover.

    Writes ``<prefix>_gs-fg_<n>_cal.fits`` (n = 1, 2, ...; GuiderCalModel, 16 Hz frames)
    covering the science exposure with ``margin_s`` to spare on each side, plus the
    science ``ramp``/``rateints`` (and ``calints`` for grism) and one truth file holding
    the science truth and the guider truth (GUIDER, SCIENCE, HGA_MOVES, transform keywords).

    ``products`` selects the science products as for that science kind.

    Returns
    -------
    dict of str to Path
        Science outputs as for the science kind, plus ``gs-fg_1``, ``gs-fg_2``, ...
    """
    params = GuiderParams() if params is None else params
    if not isinstance(params, GuiderParams):
        raise TypeError("params must be a GuiderParams")
    sp = params.science_params()
    scene = ImagingScene(sp) if params.science == "imaging" else GrismScene(sp)
    return _simulate(
        outdir, sp, scene, "guider", prefix, truth, overwrite, progress, guider=params,
        products=products,
    )
