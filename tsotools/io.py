"""Product I/O: the only module of tsotools that opens or writes files.

Reading
    :func:`open_product` identifies the product kind from extensions and headers, collects
    the metadata tools need (:class:`ProductInfo`), and gives lazy access one integration at
    a time: each read maps just that integration's bytes, copies them to a native array and
    unmaps them, so memory does not grow with the number of integrations or the file size.

Writing
    :func:`derive_product` writes a product of the same kind as an input with some arrays
    replaced; every other HDU is copied byte for byte (headers, tables, the ASDF extension),
    so ``stdatamodels`` opens it as the same model with the same metadata.
    :func:`new_product` writes a product of another kind (rateints from a ramp, a cutout,
    x1dints). Both stream: arrays are written one integration (or table row) at a time at
    their final offset. Every output is written to a temporary file beside the target and
    renamed only on success; an output is never the input, and an existing one is replaced
    only with ``overwrite=True``. Provenance: a status keyword per tool (``S_1OVERF``...) and
    a HISTORY line with the tsotools version and the exact parameters.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from . import __version__
from .detector import Geometry
from .errors import OutputError, ProcessingError, ProductError

__all__ = [
    "KINDS",
    "Product",
    "ProductInfo",
    "ProductWriter",
    "STATUS_KEYWORDS",
    "ImageSpec",
    "TableSpec",
    "atomic_path",
    "derive_product",
    "new_product",
    "open_product",
    "read_table",
    "save_figure",
    "save_model",
    "write_table",
]

log = logging.getLogger(__name__)

#: Product kinds tsotools knows, with the stdatamodels class each opens as.
KINDS = {
    "uncal": "Level1bModel",
    "ramp": "RampModel",
    "rateints": "CubeModel",
    "calints": "CubeModel",
    "cutout": "SlitModel",
    "x1dints": "TSOMultiSpecModel",
    "guider": "GuiderCalModel",
}

#: Status keyword each tool writes in the primary header (8 characters at most).
STATUS_KEYWORDS = {
    "oneoverf": "S_1OVERF",
    "rejump": "S_REJUMP",
    "rampfit": "S_RAMPFT",
    "widen-cutout": "S_WIDCUT",
    "spectra": "S_TSOSPC",
    "centroid": "S_CENTRD",
    "photometry": "S_TSOPHT",
    "jitter-from-guidestar": "S_GSJITR",
    "simulate": "S_TSOSIM",
}

_BLOCK = 2880
_PAGE = mmap.ALLOCATIONGRANULARITY

# FITS BITPIX -> (stored big-endian dtype, native dtype once BZERO is applied)
_BITPIX_DTYPES = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}
# unsigned types that FITS stores as signed with a BZERO offset
_UNSIGNED = {np.dtype("uint16"): (16, 2**15), np.dtype("uint32"): (32, 2**31)}


# =============================================================================== reading
@dataclass(frozen=True)
class _ImageLayout:
    """Where one image HDU's data sits in the file."""

    offset: int
    shape: tuple[int, ...]
    stored: np.dtype
    bzero: float
    bscale: float

    @property
    def native(self) -> np.dtype:
        if self.bscale == 1 and self.stored.kind == "i" and self.bzero == 2 ** (8 * self.stored.itemsize - 1):
            return np.dtype(f"u{self.stored.itemsize}")
        if self.bzero == 0 and self.bscale == 1:
            return self.stored.newbyteorder("=")
        return np.dtype("f8") if self.stored.itemsize >= 4 else np.dtype("f4")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.stored.itemsize


@dataclass(frozen=True)
class ProductInfo:
    """What tsotools knows about an input product, from its headers.

    Pixel positions are 0-based (x, y) in the subarray's science frame.
    """

    path: str
    kind: str
    shape: tuple[int, ...]
    instrument: str | None = None
    detector: str | None = None
    exp_type: str | None = None
    filter: str | None = None
    pupil: str | None = None
    subarray: str | None = None
    geometry: Geometry | None = None
    nints: int = 1
    ngroups: int | None = None
    nframes: int | None = None
    groupgap: int | None = None
    tframe_s: float | None = None
    tgroup_s: float | None = None
    readpatt: str | None = None
    intstart: int = 1
    intend: int = 1
    exsegnum: int | None = None
    exsegtot: int | None = None
    xref: float | None = None
    yref: float | None = None
    cutout_origin: tuple[int, int] | None = None
    steps: Mapping[str, str] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()

    @property
    def datamodel(self) -> str:
        """Name of the stdatamodels class this product opens as."""
        return KINDS[self.kind]

    @property
    def is_grism(self) -> bool:
        """True for grism time series (NRC_TSGRISM)."""
        return (self.exp_type or "").upper() == "NRC_TSGRISM" or self.kind in ("cutout", "x1dints")

    @property
    def segment(self) -> str:
        """Human-readable segment: integrations INTSTART..INTEND and EXSEGNUM/EXSEGTOT."""
        seg = f"integrations {self.intstart}-{self.intend}"
        if self.exsegnum:
            seg += f" (segment {self.exsegnum} of {self.exsegtot or '?'})"
        return seg


def _header_value(header, key, default=None):
    value = header.get(key, default)
    if isinstance(value, str):
        value = value.strip()
    return default if value in ("", None) else value


def _int_keyword(path, header, key, default=None):
    """An integer keyword, or ``default`` when absent; anything else is a :class:`ProductError`."""
    value = _header_value(header, key, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ProductError(f"{path}: keyword {key} is not an integer ({value!r})")


def _float_keyword(path, header, key):
    """A finite number keyword, or None when absent; anything else is a :class:`ProductError`."""
    value = _header_value(header, key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    raise ProductError(f"{path}: keyword {key} is not a finite number ({value!r})")


def _str_keyword(path, header, key):
    """A text keyword, or None when absent; anything else is a :class:`ProductError`."""
    value = _header_value(header, key)
    if value is None or isinstance(value, str):
        return value
    raise ProductError(f"{path}: keyword {key} is not text ({value!r})")


class Product:
    """An open pipeline product, read lazily one integration at a time.

    Use :func:`open_product` to make one; close it (or use ``with``) when done.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._sci_reads: dict[int, list[int]] = {}  # integration -> [reads, reads without a finite pixel]
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise ProductError(f"{self.path}: cannot read ({exc.strerror})") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._hdul = fits.open(
                    self.path, memmap=False, lazy_load_hdus=False, do_not_scale_image_data=True
                )
                self._hdul.verify("silentfix+ignore")
        except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise ProductError(f"{self.path}: not a readable FITS file ({_short(exc)})") from None
        if len(self._hdul) == 0:
            raise ProductError(f"{self.path}: not a readable FITS file (no HDU)")
        if getattr(self._hdul._file, "compression", None):
            self.close()
            raise ProductError(f"{self.path}: compressed FITS cannot be streamed; decompress it first (e.g. gunzip)")
        self._layout: dict[str, _ImageLayout] = {}
        self._locations: list[tuple[int, int, int]] = []
        for i, hdu in enumerate(self._hdul):
            loc = self._hdul.fileinfo(i)
            start, data_start, span = loc["hdrLoc"], loc["datLoc"], loc["datSpan"]
            self._locations.append((start, data_start, span))
            if data_start + _padded(span) > size and data_start + span > size:
                self.close()
                raise ProductError(f"{self.path}: truncated FITS file (HDU {i} runs past the end)")
            name = _extname(hdu, i)
            if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get("NAXIS", 0) > 0:
                hdr = hdu.header
                shape = tuple(int(hdr[f"NAXIS{k}"]) for k in range(hdr["NAXIS"], 0, -1))
                stored = _BITPIX_DTYPES.get(int(hdr["BITPIX"]))
                if stored is None:
                    continue
                self._layout.setdefault(
                    name,
                    _ImageLayout(data_start, shape, stored, float(hdr.get("BZERO", 0)), float(hdr.get("BSCALE", 1))),
                )
        self.primary_header = self._hdul[0].header
        try:
            self.info = _identify(self)
        except ProductError:
            self.close()
            raise

    # ------------------------------------------------------------------ basics
    def close(self):
        """Close the file; warn once about integrations whose SCI held no finite pixel."""
        empty = self.empty_integrations()
        self._sci_reads = {}
        if empty:
            shown = ", ".join(str(i + 1) for i in empty[:10]) + (", ..." if len(empty) > 10 else "")
            log.warning("%s: integration(s) %s of %d have no valid pixels (all NaN): their results are NaN",
                        os.path.basename(self.path), shown, self.nints)
        self._hdul.close()

    def empty_integrations(self) -> list[int]:
        """0-based integrations in which every SCI read so far held no finite value."""
        return sorted(i for i, (reads, empty) in self._sci_reads.items() if reads and reads == empty)

    def _note_sci(self, extname: str, first: int, values: np.ndarray, per_integration: bool) -> None:
        """Count SCI reads without a finite pixel, per integration (``values`` starts at ``first``)."""
        if extname.upper() != "SCI" or values.dtype.kind != "f" or values.size == 0:
            return
        if per_integration:
            finite = np.isfinite(values.reshape(values.shape[0], -1)).any(axis=1)
        else:
            finite = np.array([np.isfinite(values).any()])
        for k, ok in enumerate(finite):
            entry = self._sci_reads.setdefault(first + k, [0, 0])
            entry[0] += 1
            entry[1] += int(not ok)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Product {self.info.kind} {self.path!r} shape={self.info.shape}>"

    @property
    def kind(self) -> str:
        """Product kind: one of :data:`KINDS`."""
        return self.info.kind

    @property
    def nints(self) -> int:
        """Number of integrations in this file (this segment's)."""
        return self.info.nints

    def has(self, extname: str) -> bool:
        """Return True if the file has an extension of that name."""
        return extname.upper() in self.extnames

    @property
    def extnames(self) -> tuple[str, ...]:
        """Extension names in file order (the primary is ``PRIMARY``)."""
        return tuple(_extname(h, i) for i, h in enumerate(self._hdul))

    def header(self, extname: str = "PRIMARY") -> fits.Header:
        """Header of an extension (a copy)."""
        try:
            return self._hdul[extname].header.copy()
        except KeyError:
            raise ProductError(f"{self.path}: no {extname} extension") from None

    def shape(self, extname: str = "SCI") -> tuple[int, ...]:
        """Numpy shape of an image extension."""
        return self._image(extname).shape

    def dtype(self, extname: str = "SCI") -> np.dtype:
        """Native dtype of an image extension once BZERO/BSCALE are applied."""
        return self._image(extname).native

    def _image(self, extname: str) -> _ImageLayout:
        try:
            return self._layout[extname.upper()]
        except KeyError:
            raise ProductError(f"{self.path}: no {extname} image extension") from None

    # ------------------------------------------------------------------ arrays
    def read(self, extname: str, index: int | slice | None = None) -> np.ndarray:
        """Read an image extension, or one plane (integration) of it, into memory.

        Parameters
        ----------
        extname : str
            Extension name, e.g. ``"SCI"``, ``"GROUPDQ"``, ``"PIXELDQ"``.
        index : int, slice or None
            Integration (first axis) to read; None reads the whole array, which is meant
            for small arrays (PIXELDQ, WAVELENGTH).

        Returns
        -------
        ndarray
            Native byte order, BZERO/BSCALE applied (uint16/uint32 where FITS stores them
            as offset signed integers). A new array, never a view of the file.
        """
        lay = self._image(extname)
        plane = int(np.prod(lay.shape[1:], dtype=np.int64)) if len(lay.shape) > 1 else 1
        if index is None:
            first, count, shape = 0, lay.shape[0], lay.shape
        elif isinstance(index, slice):
            first, stop, step = index.indices(lay.shape[0])
            if step != 1:
                raise ValueError("only contiguous slices can be read")
            count, shape = max(stop - first, 0), (max(stop - first, 0),) + lay.shape[1:]
        else:
            if not -lay.shape[0] <= index < lay.shape[0]:
                raise IndexError(f"integration {index} out of range 0..{lay.shape[0] - 1}")
            first, count, shape = index % lay.shape[0], 1, lay.shape[1:]
        nbytes = count * plane * lay.stored.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype=lay.native)
        start = lay.offset + first * plane * lay.stored.itemsize
        raw = _read_mapped(self.path, start, nbytes, lay.stored).reshape(shape)
        values = _to_native(raw, lay)
        if index is not None and len(lay.shape) >= 3:
            self._note_sci(extname, first, values, per_integration=isinstance(index, slice))
        return values

    def iter_integrations(self, extname: str = "SCI") -> Iterator[np.ndarray]:
        """Yield each integration of an image extension in turn (see :meth:`read`)."""
        for i in range(self.shape(extname)[0]):
            yield self.read(extname, i)

    def read_table(self, extname: str) -> Table:
        """Read a binary-table extension as an astropy Table."""
        try:
            hdu = self._hdul[extname]
        except KeyError:
            raise ProductError(f"{self.path}: no {extname} table") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Table.read(hdu)

    def integration_times(self) -> Table | None:
        """Per-integration times of this file's integrations from INT_TIMES.

        Returns
        -------
        Table or None
            Columns ``int_num`` (1-based, exposure numbering), ``mjd_start``, ``mjd_mid``,
            ``mjd_end`` (MJD UTC) and ``bjd_mid`` (BJD TDB, NaN if absent); one row per
            integration of this file, honouring INTSTART..INTEND. None when the file has
            no usable INT_TIMES table.
        """
        if not self.has("INT_TIMES"):
            return None
        try:
            tab = self.read_table("INT_TIMES")
            num = np.asarray(tab["integration_number"], dtype=int)
        except (KeyError, ValueError, ProductError):
            return None
        info = self.info
        wanted = np.arange(info.intstart, info.intstart + info.nints)
        rows = [np.flatnonzero(num == n) for n in wanted]
        if all(len(r) for r in rows):
            idx = np.array([r[0] for r in rows])
        elif len(tab) == info.nints:
            idx = np.arange(info.nints)
        else:
            return None

        def col(name):
            return np.asarray(tab[name], dtype=float)[idx] if name in tab.colnames else np.full(len(idx), np.nan)

        return Table(
            {
                "int_num": wanted,
                "mjd_start": col("int_start_MJD_UTC"),
                "mjd_mid": col("int_mid_MJD_UTC"),
                "mjd_end": col("int_end_MJD_UTC"),
                "bjd_mid": col("int_mid_BJD_TDB"),
            }
        )

    def hdu_bytes_location(self, index: int) -> tuple[int, int, int]:
        """(header start, data start, data length in bytes) of HDU ``index``."""
        return self._locations[index]


def _read_mapped(path: str, start: int, nbytes: int, dtype: np.dtype) -> np.ndarray:
    """Map ``nbytes`` of ``path`` from ``start``, copy them out and unmap them.

    The map is dropped before returning, so the pages it touched do not stay in this
    process's resident set.
    """
    aligned = start - start % _PAGE
    with open(path, "rb") as fh:
        with mmap.mmap(fh.fileno(), nbytes + (start - aligned), access=mmap.ACCESS_READ, offset=aligned) as mm:
            out = np.frombuffer(mm, dtype=dtype, count=nbytes // dtype.itemsize, offset=start - aligned).copy()
            with contextlib.suppress(AttributeError, OSError):  # drop the page-cache pages we no longer need
                mm.madvise(mmap.MADV_DONTNEED)
    return out


def _to_native(raw: np.ndarray, lay: _ImageLayout) -> np.ndarray:
    native = lay.native
    if native.kind == "u" and lay.stored.kind == "i":  # offset-signed FITS storage
        # flip the sign bit in native byte order: ufuncs on big-endian data are several times slower
        values = raw.astype(lay.stored.newbyteorder("=")).view(native)
        values ^= native.type(1 << (8 * lay.stored.itemsize - 1))
        return values
    if lay.bzero == 0 and lay.bscale == 1:
        return raw.astype(native)
    return (raw * lay.bscale + lay.bzero).astype(native)


def _extname(hdu, index: int) -> str:
    if index == 0:
        return "PRIMARY"
    return str(hdu.header.get("EXTNAME", f"HDU{index}")).strip().upper()


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _padded(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


# ----------------------------------------------------------------------- identification
def _identify(prod: Product) -> ProductInfo:
    names = prod.extnames
    h0 = prod.primary_header
    datamodel = str(_header_value(h0, "DATAMODL", "")).strip()
    exp_type = str(_header_value(h0, "EXP_TYPE", "")).upper()
    sci = prod._layout.get("SCI")
    kind = None
    if exp_type.startswith("FGS") or datamodel.startswith("Guider"):
        kind = "guider"
    elif "EXTRACT1D" in names or datamodel in ("TSOMultiSpecModel", "MultiSpecModel"):
        kind = "x1dints"
    elif sci is not None and len(sci.shape) == 4:
        if sci.stored.kind in "iu" and sci.native.kind in "iu":
            kind = "uncal"
        else:
            kind = "ramp"
    elif sci is not None and len(sci.shape) == 3:
        sci_hdr = prod._hdul["SCI"].header
        if "SLTSTRT1" in sci_hdr or datamodel in ("SlitModel", "MultiSlitModel") or "WAVELENGTH" in names:
            kind = "cutout"
        elif _header_value(h0, "S_PHOTOM") == "COMPLETE" or _header_value(h0, "S_FLAT") == "COMPLETE":
            kind = "calints"
        else:
            kind = "rateints"
    if kind is None:
        what = "no SCI image" if sci is None else f"a {len(sci.shape)}-D SCI image"
        raise ProductError(
            f"{prod.path}: not a NIRCam TSO product ({what}); expected an uncal, ramp, rateints, "
            "calints, grism cutout, x1dints or guide-star file"
        )

    if kind == "x1dints":
        shape = (sum(1 for n in names if n == "EXTRACT1D"),)
    else:
        shape = sci.shape if sci is not None else ()

    def ival(key, default=None):
        return _int_keyword(prod.path, h0, key, default)

    def fval(key, header=h0):
        return _float_keyword(prod.path, header, key)

    def sval(key):
        return _str_keyword(prod.path, h0, key)

    sci_hdr = prod._hdul["SCI"].header if "SCI" in names else fits.Header()
    nints = shape[0] if kind not in ("guider",) and shape else (ival("NINTS", 1) or 1)
    if kind == "x1dints":
        nints = _x1dints_rows(prod) or nints
    ngroups = shape[1] if kind in ("uncal", "ramp") else ival("NGROUPS")
    intstart = ival("INTSTART", 1) or 1
    intend = ival("INTEND", intstart + nints - 1) or intstart + nints - 1

    geometry = None
    if kind != "guider":
        geometry = _geometry(prod, h0, sci_hdr, kind, shape, ival)

    origin = None
    if kind == "cutout":
        sx, sy = fval("SLTSTRT1", sci_hdr), fval("SLTSTRT2", sci_hdr)
        origin = (int(sx) - 1 if sx else 0, int(sy) - 1 if sy else 0)
    xref, yref = fval("XREF_SCI", sci_hdr), fval("YREF_SCI", sci_hdr)
    steps = {k: str(v) for k, v in h0.items() if k.startswith("S_") and isinstance(v, str)}

    return ProductInfo(
        path=prod.path,
        kind=kind,
        shape=tuple(shape),
        instrument=sval("INSTRUME"),
        detector=sval("DETECTOR"),
        exp_type=exp_type or None,
        filter=sval("FILTER"),
        pupil=sval("PUPIL"),
        subarray=sval("SUBARRAY"),
        geometry=geometry,
        nints=int(nints),
        ngroups=ngroups,
        nframes=ival("NFRAMES"),
        groupgap=ival("GROUPGAP"),
        tframe_s=fval("TFRAME"),
        tgroup_s=fval("TGROUP"),
        readpatt=sval("READPATT"),
        intstart=intstart,
        intend=intend,
        exsegnum=ival("EXSEGNUM"),
        exsegtot=ival("EXSEGTOT"),
        xref=None if xref is None else xref - 1.0,
        yref=None if yref is None else yref - 1.0,
        cutout_origin=origin,
        steps=steps,
        extensions=names,
    )


def _x1dints_rows(prod: Product) -> int | None:
    if prod.extnames.count("EXTRACT1D") == 1:
        return int(prod._hdul["EXTRACT1D"].header.get("NAXIS2", 0)) or None
    return prod.extnames.count("EXTRACT1D") or None


def _geometry(prod, h0, sci_hdr, kind, shape, ival) -> Geometry | None:
    """Subarray geometry from SUBSTRT/SUBSIZE, NOUTPUTS, FASTAXIS/SLOWAXIS."""
    if kind == "x1dints":
        return None
    missing = [k for k in ("SUBSTRT1", "SUBSTRT2", "NOUTPUTS") if _header_value(h0, k) is None]
    if missing:
        raise ProductError(f"{prod.path}: missing keyword {', '.join(missing)} in the primary header")
    nx = ival("SUBSIZE1") or shape[-1]
    ny = ival("SUBSIZE2") or shape[-2]
    if kind != "cutout" and (nx, ny) != tuple(shape[-1:-3:-1]):
        raise ProductError(
            f"{prod.path}: SCI is {shape[-1]} x {shape[-2]} pixels but SUBSIZE1/2 say {nx} x {ny}"
        )
    try:
        return Geometry(
            xstart=ival("SUBSTRT1") - 1,
            ystart=ival("SUBSTRT2") - 1,
            nx=nx,
            ny=ny,
            noutputs=ival("NOUTPUTS"),
            fastaxis=int(np.sign(ival("FASTAXIS", 1) or 1)),
            slowaxis=int(np.sign(ival("SLOWAXIS", 2) or 2)),
        )
    except ValueError as exc:
        raise ProductError(f"{prod.path}: {exc}") from None


def open_product(path: str | os.PathLike, expect: tuple[str, ...] | None = None, tool: str | None = None) -> Product:
    """Open a pipeline product and check it is of a kind the caller can use.

    Parameters
    ----------
    path : str or path-like
        The FITS file.
    expect : tuple of str, optional
        Kinds accepted (see :data:`KINDS`); any other raises :class:`ProductError`.
    tool : str, optional
        Name of the command, for the error message.

    Returns
    -------
    Product
    """
    prod = Product(path)
    if expect and prod.kind not in expect:
        prod.close()
        who = f"{tool} needs" if tool else "expected"
        hint = ""
        if prod.kind == "uncal" and "ramp" in expect:
            hint = " (run calwebb_detector1 through the superbias step first: group_scale, dq_init, saturation, superbias)"
        raise ProductError(f"{path}: this is a {prod.kind} product; {who} {_or_list(expect)}{hint}")
    if prod.kind in ("ramp", "rateints", "calints", "cutout", "uncal"):
        try:
            nints_hdr = _int_keyword(path, prod.primary_header, "NINTS")
            ngroups_hdr = _int_keyword(path, prod.primary_header, "NGROUPS")
        except ProductError:
            prod.close()
            raise
        sci_shape = prod.shape("SCI")
        for name, lay in prod._layout.items():
            if name != "SCI" and len(lay.shape) == len(sci_shape) and lay.shape != sci_shape:
                prod.close()
                raise ProductError(f"{path}: {name} has shape {lay.shape} but SCI {sci_shape}")
        seg = prod.info.intend - prod.info.intstart + 1
        if nints_hdr is not None and prod.nints not in (nints_hdr, seg):
            prod.close()
            raise ProductError(
                f"{path}: SCI holds {prod.nints} integrations but NINTS={nints_hdr} "
                f"and INTSTART..INTEND={prod.info.intstart}..{prod.info.intend}"
            )
        if prod.kind in ("ramp", "uncal") and ngroups_hdr is not None and ngroups_hdr != prod.info.ngroups:
            prod.close()
            raise ProductError(f"{path}: SCI holds {prod.info.ngroups} groups but NGROUPS={ngroups_hdr}")
    return prod


def _or_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


# =============================================================================== writing
@dataclass
class ImageSpec:
    """An image extension to write: its header and the array it will hold.

    ``header`` supplies EXTNAME and any keywords; shape and dtype keywords are set from
    ``shape`` and ``dtype``. ``shape[0]`` is the integration axis data is written along.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | str
    header: fits.Header | None = None
    data: np.ndarray | None = None  # write the whole array at once


@dataclass
class TableSpec:
    """A binary-table extension to write, row by row or whole.

    ``columns`` maps a column name to ``(dtype, shape of one cell, unit)``; ``nrows`` is
    the number of rows that will be written.
    """

    name: str
    columns: Mapping[str, tuple]
    nrows: int
    header: fits.Header | None = None
    data: Table | np.ndarray | None = None


@dataclass
class _Planned:
    kind: str  # "copy", "image", "table"
    header_bytes: bytes = b""
    copy_from: tuple[str, int, int] | None = None  # (path, start, length)
    data_offset: int = 0
    data_nbytes: int = 0
    stored: np.dtype | None = None
    native: np.dtype | None = None
    plane_shape: tuple[int, ...] = ()
    nplanes: int = 0
    bzero: int = 0
    written: np.ndarray | None = None
    initial: object = None


class ProductWriter:
    """A FITS file being written, its arrays filled one integration at a time.

    Made by :func:`derive_product` or :func:`new_product`; use it as a context manager.
    On leaving the ``with`` block without an exception every planned plane must have been
    written; the file is then flushed, synced and renamed onto the output path. On an
    exception the temporary file is removed and the output path is left untouched.
    """

    def __init__(self, out_path: Path, plan: list[tuple[str, _Planned]], overwrite: bool):
        self.path = Path(out_path)
        self._plan = dict(plan)
        self._order = [name for name, _ in plan]
        self._overwrite = overwrite
        self._tmp: Path | None = None
        self._fh = None

    def __enter__(self):
        """Lay the file out: headers, copied bytes, and zero-filled space for written data."""
        self._tmp = _temp_path(self.path)
        try:
            self._fh = open(self._tmp, "wb")
            offset = 0
            for name in self._order:
                p = self._plan[name]
                if p.kind == "copy":
                    src, start, length = p.copy_from
                    _copy_bytes(src, start, length, self._fh)
                    offset += length
                elif p.kind == "bytes":
                    self._fh.write(p.header_bytes)
                    offset += len(p.header_bytes)
                elif p.kind == "hdrcopy":
                    self._fh.write(p.header_bytes)
                    src, start, length = p.copy_from
                    _copy_bytes(src, start, length, self._fh)
                    offset += len(p.header_bytes) + length
                else:
                    self._fh.write(p.header_bytes)
                    offset += len(p.header_bytes)
                    p.data_offset = offset
                    total = _padded(p.data_nbytes)
                    if total:
                        self._fh.truncate(offset + total)
                        self._fh.seek(offset + total)
                    offset += total
            self._fh.flush()
            for name in self._order:
                p = self._plan[name]
                if p.initial is not None:
                    self._write_planes(p, 0, p.initial)
                    p.initial = None
        except OSError as exc:
            self._abort()
            raise ProcessingError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, extname: str, index: int, values) -> None:
        """Write plane ``index`` (an integration, or a table row) of extension ``extname``.

        Parameters
        ----------
        extname : str
            Extension planned for writing.
        index : int
            0-based integration (first axis) or table row.
        values : ndarray, or a mapping of column name to value for a table row
            Converted to the extension's dtype; must have the plane's shape.
        """
        p = self._plan[extname.upper()]
        if p.kind not in ("image", "table"):
            raise ValueError(f"{extname} is copied, not written")
        self._write_planes(p, index, values, single=True)

    def _write_planes(self, p: _Planned, first: int, values, single: bool = False):
        if p.kind == "table":
            rows = _table_rows(values, p.stored, single, p.native)
            data, count = rows.tobytes(), len(rows)
            start = p.data_offset + first * p.stored.itemsize
        else:
            arr = np.asarray(values)
            shape = p.plane_shape if single else (arr.shape[0],) + p.plane_shape
            if arr.shape != shape:
                raise ValueError(f"expected shape {shape}, got {arr.shape}")
            count = 1 if single else arr.shape[0]
            data = _to_stored(arr, p)
            start = p.data_offset + first * (len(data) // count)
        if first < 0 or first + count > p.nplanes:
            raise IndexError(f"plane {first} out of range 0..{p.nplanes - 1}")
        try:
            os.pwrite(self._fh.fileno(), data, start)
        except OSError as exc:
            raise ProcessingError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        p.written[first : first + count] = True

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._abort()
            return False
        missing = [n for n in self._order if self._plan[n].written is not None and not self._plan[n].written.all()]
        if missing:
            self._abort()
            raise ProcessingError(f"internal: {self.path} was left incomplete ({', '.join(missing)})")
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            _commit(self._tmp, self.path, self._overwrite)
        except OSError as exc:
            self._abort()
            raise ProcessingError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return False

    def _abort(self):
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


def _to_stored(arr: np.ndarray, p: _Planned) -> bytes:
    if p.bzero:
        return (arr.astype(np.int64) - p.bzero).astype(p.stored).tobytes()
    return np.ascontiguousarray(arr, dtype=p.native).astype(p.stored, copy=False).tobytes()


def _stored_field(dtype: np.dtype) -> np.dtype:
    """Big-endian FITS storage of a table field; unsigned ints as offset signed (TZERO)."""
    if dtype.kind == "b":
        raise ValueError("boolean table columns are not supported; use int16")
    if dtype.kind == "u" and dtype.itemsize > 1:
        return np.dtype(f">i{dtype.itemsize}")
    return dtype.newbyteorder(">") if dtype.itemsize > 1 and dtype.kind != "S" else dtype


def _store_column(values, stored: np.dtype, native: np.dtype):
    if native.base.kind == "u" and native.base.itemsize > 1:
        offset = 1 << (8 * native.base.itemsize - 1)
        return (np.asarray(values).astype(np.int64) - offset).astype(stored.base)
    return values


def _table_rows(values, dtype: np.dtype, single: bool, native: np.dtype | None = None) -> np.ndarray:
    native = native or dtype
    if single:
        row = np.zeros(1, dtype=dtype)
        for name in dtype.names:
            if name in values:
                row[name][0] = _store_column(values[name], dtype[name], native[name])
            elif dtype[name].base.kind == "f":
                row[name][0] = np.nan
        return row
    if isinstance(values, Table):
        values = values.as_array()
    out = np.zeros(len(values), dtype=dtype)
    for name in dtype.names:
        out[name] = _store_column(values[name], dtype[name], native[name])
    return out


def _copy_bytes(src: str, start: int, length: int, dst) -> None:
    with open(src, "rb") as fh:
        fh.seek(start)
        remaining = length
        while remaining:
            chunk = fh.read(min(remaining, 16 * 2**20))
            if not chunk:
                raise OSError(f"{src} ended early")
            dst.write(chunk)
            remaining -= len(chunk)


def _image_header(header: fits.Header | None, name: str, shape, dtype: np.dtype, primary: bool = False):
    """A header for an image extension, with the shape and type keywords of ``dtype``."""
    dtype = np.dtype(dtype)
    bitpix, bzero = {np.dtype("uint8"): (8, 0)}.get(dtype, (None, 0))
    if dtype in _UNSIGNED:
        bitpix, bzero = _UNSIGNED[dtype]
    elif bitpix is None:
        bitpix = {"f4": -32, "f8": -64, "i2": 16, "i4": 32, "i8": 64}[dtype.str[1:]]
    hdu = (fits.PrimaryHDU if primary else fits.ImageHDU)(header=None if header is None else header.copy())
    hdr = hdu.header
    for key in [k for k in hdr if k.startswith("NAXIS")] + ["BZERO", "BSCALE"]:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdr["BITPIX"] = bitpix
    hdr["NAXIS"] = len(shape)
    after = "NAXIS"
    for k, n in enumerate(reversed(shape), start=1):
        hdr.insert(after, (f"NAXIS{k}", int(n)), after=True)
        after = f"NAXIS{k}"
    if not primary:
        hdr.set("PCOUNT", 0, after=after)
        hdr.set("GCOUNT", 1, after="PCOUNT")
        hdr["EXTNAME"] = name
    if bzero:
        hdr["BSCALE"] = 1
        hdr["BZERO"] = bzero
    stored = _BITPIX_DTYPES[bitpix]
    return hdr, stored, bzero


def _plan_image(spec: ImageSpec, primary: bool = False) -> _Planned:
    dtype = np.dtype(spec.dtype)
    hdr, stored, bzero = _image_header(spec.header, spec.name, spec.shape, dtype, primary)
    nplanes = spec.shape[0] if spec.shape else 0
    return _Planned(
        kind="image",
        header_bytes=hdr.tostring().encode("ascii"),
        data_nbytes=int(np.prod(spec.shape, dtype=np.int64)) * stored.itemsize if spec.shape else 0,
        stored=stored,
        native=dtype,
        plane_shape=tuple(spec.shape[1:]),
        nplanes=nplanes,
        bzero=bzero,
        written=np.zeros(nplanes, dtype=bool),
        initial=spec.data,
    )


def _plan_table(spec: TableSpec) -> _Planned:
    fields, formats = [], []
    for name, col in spec.columns.items():
        dtype, cell = np.dtype(col[0]), tuple(col[1]) if len(col) > 1 and col[1] else ()
        fields.append((name, dtype, cell) if cell else (name, dtype))
    native = np.dtype(fields)
    proto = fits.BinTableHDU(data=np.zeros(1, dtype=native), header=None, name=spec.name)
    hdr = proto.header
    for k, (name, col) in enumerate(spec.columns.items(), start=1):
        if len(col) > 2 and col[2]:
            hdr[f"TUNIT{k}"] = col[2]
        formats.append(hdr[f"TFORM{k}"])
    if spec.header is not None:
        for card in spec.header.cards:
            if card.keyword in ("", "COMMENT", "HISTORY"):
                hdr.append(card)
            elif not (card.keyword.startswith(("NAXIS", "TFORM", "TTYPE", "TDIM", "TUNIT"))
                      or card.keyword in ("XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "TFIELDS")):
                hdr[card.keyword] = (card.value, card.comment)
    hdr["NAXIS2"] = spec.nrows
    stored = np.dtype([(n, _stored_field(native[n].base), native[n].shape) for n in native.names])
    hdr["NAXIS1"] = stored.itemsize
    return _Planned(
        kind="table",
        header_bytes=hdr.tostring().encode("ascii"),
        data_nbytes=stored.itemsize * spec.nrows,
        stored=stored,
        native=native,
        nplanes=spec.nrows,
        written=np.zeros(spec.nrows, dtype=bool),
        initial=spec.data,
    )


def _plan_hdu(hdu) -> _Planned:
    """Plan an in-memory astropy HDU (small: tables, 2D images) to be written whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdul = fits.HDUList([fits.PrimaryHDU(), hdu] if not isinstance(hdu, fits.PrimaryHDU) else [hdu])
        import io as _pyio

        buf = _pyio.BytesIO()
        hdul.writeto(buf)
    raw = buf.getvalue()
    if not isinstance(hdu, fits.PrimaryHDU):
        first = _padded(len(fits.PrimaryHDU().header.tostring()))
        raw = raw[first:]
    return _Planned(kind="bytes", header_bytes=raw)


def _provenance(header: fits.Header, tool: str, params: Mapping | None) -> None:
    key = STATUS_KEYWORDS.get(tool)
    if key:
        header[key] = ("COMPLETE", f"tsotools {tool}")
    header["TSOTVER"] = (__version__, "tsotools version")
    text = ", ".join(f"{k}={_fmt_param(v)}" for k, v in (params or {}).items())
    header.add_history(f"tsotools {__version__} {tool}: {text}".rstrip(": "))


def _fmt_param(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt_param(v) for v in value)
    return str(value)


def derive_product(
    src: Product,
    out_path: str | os.PathLike,
    replace: Mapping[str, ImageSpec | None] | None = None,
    *,
    tool: str,
    params: Mapping | None = None,
    overwrite: bool = False,
    header_updates: Mapping[str, Mapping] | None = None,
    inputs: tuple[str, ...] = (),
) -> ProductWriter:
    """Plan an output of the same kind as ``src`` with some image extensions rewritten.

    Parameters
    ----------
    src : Product
        The input product; every extension not in ``replace`` is copied byte for byte.
    out_path : path-like
        Output file; must not be any input. Replaced only with ``overwrite``.
    replace : mapping of str to ImageSpec or None
        Extensions whose data the caller writes plane by plane. None keeps the input's
        shape, dtype and header.
    tool : str
        Tool name for provenance (``S_*`` keyword and HISTORY line in the primary header).
    params : mapping
        Parameters recorded in the HISTORY line.
    header_updates : mapping of extension name to {keyword: value or (value, comment)}
        Keywords to set; a value of None removes the keyword.
    inputs : tuple of str
        Other input paths the output must not overwrite.

    Returns
    -------
    ProductWriter
        Use it as a context manager and :meth:`ProductWriter.write` every plane.
    """
    replace = {k.upper(): v for k, v in (replace or {}).items()}
    updates = {k.upper(): v for k, v in (header_updates or {}).items()}
    out = _check_output(out_path, (src.path, *inputs), overwrite)
    plan = []
    for i, name in enumerate(src.extnames):
        start, data_start, span = src.hdu_bytes_location(i)
        hdr = src._hdul[i].header
        if name in replace:
            spec = replace[name]
            if spec is None:
                lay = src._image(name)
                spec = ImageSpec(name, lay.shape, lay.native, hdr)
            elif spec.header is None:
                spec.header = hdr
            spec.header = spec.header.copy()
            _apply_updates(spec.header, updates.get(name))
            if i == 0:
                _provenance(spec.header, tool, params)
                _rename(spec.header, out)
            plan.append((name, _plan_image(spec, primary=(i == 0))))
        elif i == 0 or name in updates:
            new = hdr.copy()
            _apply_updates(new, updates.get(name))
            if i == 0:
                _provenance(new, tool, params)
                _rename(new, out)
            planned = _Planned(
                kind="hdrcopy",
                header_bytes=new.tostring().encode("ascii"),
                copy_from=(src.path, data_start, _padded(span)),
            )
            plan.append((_unique(name, i, plan), planned))
        else:
            length = data_start - start + _padded(span)
            plan.append((_unique(name, i, plan), _Planned(kind="copy", copy_from=(src.path, start, length))))
    return ProductWriter(out, plan, overwrite)


def _rename(header: fits.Header, out: Path) -> None:
    """FILENAME names the output (the ASDF tree's copy is reset by stdatamodels on open)."""
    if "FILENAME" in header:
        header["FILENAME"] = out.name


def _unique(name: str, index: int, plan: list) -> str:
    """Plan key for an HDU: its name, or name#index when the name repeats (EXTRACT1D)."""
    return name if name not in dict(plan) else f"{name}#{index}"


def _apply_updates(header: fits.Header, updates: Mapping | None) -> None:
    for key, value in (updates or {}).items():
        if value is None:
            header.remove(key, ignore_missing=True, remove_all=True)
        else:
            header[key] = value


def new_product(
    out_path: str | os.PathLike,
    primary_header: fits.Header,
    extensions: list,
    *,
    tool: str,
    params: Mapping | None = None,
    overwrite: bool = False,
    inputs: tuple[str, ...] = (),
    datamodel: str | None = None,
) -> ProductWriter:
    """Plan a new FITS product: a primary header and a list of extensions.

    Parameters
    ----------
    out_path : path-like
        Output file; must not be any of ``inputs``.
    primary_header : astropy Header
        Copied; DATAMODL is set to ``datamodel`` when given; provenance is added.
    extensions : list of ImageSpec, TableSpec or astropy HDU
        In file order. Image and table specs without ``data`` are filled plane by plane
        with :meth:`ProductWriter.write`; astropy HDUs (small tables) are written whole.
    """
    out = _check_output(out_path, inputs, overwrite)
    hdr = primary_header.copy()
    for key in [k for k in hdr if k.startswith("NAXIS")] + ["BZERO", "BSCALE", "EXTEND", "CHECKSUM", "DATASUM"]:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdr["EXTEND"] = True
    if datamodel:
        hdr["DATAMODL"] = (datamodel, "Type of data model")
    hdr["FILENAME"] = out.name
    _provenance(hdr, tool, params)
    plan = [("PRIMARY", _plan_image(ImageSpec("PRIMARY", (), "f4", hdr), primary=True))]
    plan[0][1].header_bytes = fits.PrimaryHDU(header=hdr).header.tostring().encode("ascii")
    for ext in extensions:
        if isinstance(ext, ImageSpec):
            plan.append((_unique(ext.name.upper(), len(plan), plan), _plan_image(ext)))
        elif isinstance(ext, TableSpec):
            plan.append((_unique(ext.name.upper(), len(plan), plan), _plan_table(ext)))
        else:
            name = str(ext.header.get("EXTNAME", f"HDU{len(plan)}")).upper()
            plan.append((_unique(name, len(plan), plan), _plan_hdu(ext)))
    return ProductWriter(out, plan, overwrite)




# ------------------------------------------------------------------ atomic outputs
def _check_output(out_path, inputs, overwrite: bool) -> Path:
    out = Path(out_path)
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give an output file name")
    for src in inputs:
        if src and (os.path.abspath(src) == os.path.abspath(out)
                    or (out.exists() and os.path.exists(src) and os.path.samefile(src, out))):
            raise OutputError(f"{out}: is an input file; choose another output name")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: exists; use --overwrite to replace it")
    if not out.parent.exists():
        raise OutputError(f"{out.parent}: no such directory")
    _remove_stale_temps(out)
    return out


def _temp_path(out: Path, suffix: str = "") -> Path:
    """``.NAME.PID.part`` beside ``out`` (plus ``suffix`` for writers that pick a format by it)."""
    return out.with_name(f".{out.name}.{os.getpid()}.part{suffix}")


def _remove_stale_temps(out: Path) -> None:
    """Remove temporary files left for ``out`` by processes that no longer exist."""
    for tmp in out.parent.glob(f".{out.name}.*.part*"):
        try:
            pid = int(tmp.name[len(out.name) + 2 :].split(".", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        except (ValueError, PermissionError, OSError):
            continue


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, out)
        return
    try:  # link(2) fails if someone created the output meanwhile: never clobber it
        os.link(tmp, out)
    except FileExistsError:
        tmp.unlink()
        raise OutputError(f"{out}: appeared while writing; use --overwrite to replace it") from None
    except OSError:
        os.replace(tmp, out)  # filesystems without hard links
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(out_path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str, ...] = (), suffix: str = ""):
    """Yield a temporary path beside ``out_path``; rename it onto ``out_path`` on success.

    For writers that want a path (astropy ``Table.write``, ``stdatamodels`` ``save``).
    ``suffix`` is appended to the temporary name for writers that choose the format by it.
    """
    out = _check_output(out_path, inputs, overwrite)
    tmp = _temp_path(out, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _commit(tmp, out, overwrite)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ProcessingError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_table(
    table: Table,
    out_path: str | os.PathLike,
    *,
    tool: str,
    params: Mapping | None = None,
    overwrite: bool = False,
    inputs: tuple[str, ...] = (),
) -> Path:
    """Write a table as ECSV (``.ecsv``) or FITS (``.fits``/``.fit``), atomically.

    Provenance goes to ``table.meta`` (ECSV header or FITS primary/table header).
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    fmt = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits"}.get(suffix)
    if fmt is None:
        raise OutputError(f"{out}: table outputs end in .ecsv or .fits")
    table = table.copy(copy_data=False)
    hdr = fits.Header()
    _provenance(hdr, tool, params)
    for card in hdr.cards:
        if card.keyword == "HISTORY":
            table.meta.setdefault("HISTORY", [])
            table.meta["HISTORY"] = list(table.meta["HISTORY"]) + [card.value]
        else:
            table.meta[card.keyword] = card.value
    with atomic_path(out, overwrite=overwrite, inputs=inputs, suffix=suffix) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table.write(tmp, format=fmt)
    return out


def read_table(path: str | os.PathLike) -> Table:
    """Read an ECSV or FITS table written by tsotools (or any astropy-readable table)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Table.read(path, format="ascii.ecsv" if str(path).lower().endswith(".ecsv") else None)
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: not a readable table ({_short(exc)})") from None


def save_model(model, out_path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a ``stdatamodels`` model atomically (used by the simulator)."""
    out = Path(out_path)
    with atomic_path(out, overwrite=overwrite, suffix=".fits") as tmp:
        model.meta.filename = out.name  # FILENAME names the product, not the temporary file
        with warnings.catch_warnings(), open(tmp, "wb") as fh:
            warnings.simplefilter("ignore")
            model.to_fits(fh, overwrite=True)  # a file object: stdatamodels keeps meta.filename
    return out


def save_figure(figure, out_path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str, ...] = ()) -> Path:
    """Save a matplotlib Figure as PNG, atomically (plots are made without a display)."""
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise OutputError(f"{out}: plots are written as .png")
    with atomic_path(out, overwrite=overwrite, inputs=inputs, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
    return out


# ---- widen-cutout, spectra
def read_rows(prod: Product, extname: str, index: int, y0: int, y1: int) -> np.ndarray:
    """Read rows ``y0 .. y1 - 1`` of integration ``index`` of a 3D image extension.

    The rows of one integration are contiguous in the file: one positioned read
    (``os.preadv``) puts them straight into the result, without the page faults of a map
    (a 2 MB SUBGRISM256 SCI plane: 0.26 ms of CPU against 0.42 ms through a map).
    Returns a native-byte-order array of shape (y1 - y0, nx).
    """
    lay = prod._image(extname)
    if len(lay.shape) != 3:
        raise ProductError(f"{prod.path}: {extname} is not a 3-D image")
    nints, ny, nx = lay.shape
    if not -nints <= index < nints:
        raise IndexError(f"integration {index} out of range 0..{nints - 1}")
    y0, y1 = max(int(y0), 0), min(int(y1), ny)
    if y1 <= y0:
        return np.empty((0, nx), dtype=lay.native)
    raw = np.empty((y1 - y0, nx), dtype=lay.stored)
    start = lay.offset + ((index % nints) * ny + y0) * nx * lay.stored.itemsize
    with open(prod.path, "rb", buffering=0) as fh:
        if os.preadv(fh.fileno(), [memoryview(raw).cast("B")], start) != raw.nbytes:
            raise ProductError(f"{prod.path}: {extname} ends early (truncated file?)")
    values = _to_native(raw, lay)
    prod._note_sci(extname, index % nints, values, per_integration=False)
    return values


def write_rows(writer: ProductWriter, extname: str, first: int, rows) -> None:
    """Write consecutive rows of a planned table extension in one go.

    ``rows`` is an astropy Table or a structured array holding every column of the
    extension; its first row goes to row ``first``.
    """
    p = writer._plan[extname.upper()]
    if p.kind != "table":
        raise ValueError(f"{extname} is not a table being written")
    writer._write_planes(p, first, rows)


def asdf_extension(datamodel: str) -> fits.BinTableHDU:
    """A minimal ASDF extension for a product of ``datamodel`` written by :func:`new_product`.

    It holds only the model type; ``stdatamodels`` fills everything else from the FITS
    keywords and HDUs. Some readers (``chromatic-lightcurves``) expect the ASDF extension to
    be the last HDU of an x1dints file.
    """
    import tempfile

    from stdatamodels.jwst import datamodels

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(datamodels, datamodel)()
        path = os.path.join(tmp, "blank.fits")
        model.save(path)
        model.close()
        with fits.open(path) as hdul:
            src = hdul["ASDF"]
            return fits.BinTableHDU(src.data.copy(), header=src.header.copy(), name="ASDF")


# ---- oneoverf
def read_group(prod: Product, extname: str, index: int, group: int) -> np.ndarray:
    """Read one group (2D plane) of one integration of a 4-D image extension.

    Only that plane's bytes are mapped and copied, so a temporal median per group over a
    sample of integrations needs one plane per integration in memory, not whole ramps.
    Returns a native-byte-order array of shape (ny, nx).
    """
    lay, start, ny, nx = _group_location(prod, extname, index, group)
    raw = _read_mapped(prod.path, start, ny * nx * lay.stored.itemsize, lay.stored).reshape(ny, nx)
    values = _to_native(raw, lay)
    prod._note_sci(extname, index % lay.shape[0], values, per_integration=False)
    return values


def _group_location(prod: Product, extname: str, index: int, group: int):
    """Layout, byte offset and plane shape of one group of a 4-D image (indices checked)."""
    lay = prod._image(extname)
    if len(lay.shape) != 4:
        raise ProductError(f"{prod.path}: {extname} is not a 4-D image")
    nints, ngroups, ny, nx = lay.shape
    if not -nints <= index < nints:
        raise IndexError(f"integration {index} out of range 0..{nints - 1}")
    if not -ngroups <= group < ngroups:
        raise IndexError(f"group {group} out of range 0..{ngroups - 1}")
    start = lay.offset + ((index % nints) * ngroups + group % ngroups) * ny * nx * lay.stored.itemsize
    return lay, start, ny, nx


def read_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a source mask: a 2-D FITS image (primary or first image extension), nonzero = masked.

    Raises :class:`ProductError` unless the image has ``shape`` (ny, nx).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                data = next((h.data for h in hdul if getattr(h, "data", None) is not None
                             and isinstance(h, (fits.PrimaryHDU, fits.ImageHDU))), None)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise ProductError(f"{path}: not a readable FITS mask ({_short(exc)})") from None
    if data is None or data.ndim != 2:
        raise ProductError(f"{path}: a mask must be a 2-D FITS image")
    if tuple(data.shape) != tuple(shape):
        raise ProductError(f"{path}: mask is {data.shape[1]} x {data.shape[0]} pixels, the data "
                           f"{shape[1]} x {shape[0]}")
    return np.asarray(data) != 0


def write_mask(mask: np.ndarray, out_path: str | os.PathLike, *, tool: str, params: Mapping | None = None,
               overwrite: bool = False, inputs: tuple[str, ...] = ()) -> Path:
    """Write a source mask as a uint8 FITS image (1 = masked), readable by :func:`read_mask`."""
    out = Path(out_path)
    hdr = fits.Header()
    hdr["EXTNAME"] = "MASK"
    hdr["BUNIT"] = ("", "1 = source (masked), 0 = background")
    _provenance(hdr, tool, params)
    hdu = fits.PrimaryHDU(np.asarray(mask, dtype=np.uint8), header=hdr)
    with atomic_path(out, overwrite=overwrite, inputs=inputs, suffix=".fits") as tmp:
        hdu.writeto(tmp)
    return out


# ---- rejump
def read_row_block(prod: Product, extname: str, y0: int, y1: int) -> np.ndarray:
    """Read rows ``y0 .. y1 - 1`` of every integration (and group) of a 3-D or 4-D image.

    For algorithms that need every integration of a pixel at once (medians over
    integrations) with memory set by the number of rows asked for, not by the file: only
    those rows' bytes are read, one positioned read per plane.

    Returns
    -------
    ndarray
        Native byte order, shape (nints, ngroups, y1 - y0, nx) or (nints, y1 - y0, nx).
    """
    lay = prod._image(extname)
    if len(lay.shape) not in (3, 4):
        raise ProductError(f"{prod.path}: {extname} is not a 3-D or 4-D image")
    ny, nx = lay.shape[-2:]
    y0, y1 = max(int(y0), 0), min(int(y1), ny)
    lead = lay.shape[:-2]
    if y1 <= y0:
        return np.empty(lead + (0, nx), dtype=lay.native)
    # One positioned read per plane straight into the result: a strided view of a memory
    # map would fault in (and count in RSS) pages around every row, up to the whole file.
    nplanes = int(np.prod(lead, dtype=np.int64))
    raw = np.empty((nplanes, y1 - y0, nx), dtype=lay.stored)
    row_bytes, plane_bytes = nx * lay.stored.itemsize, ny * nx * lay.stored.itemsize
    with open(prod.path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        for k in range(nplanes):
            want = (y1 - y0) * row_bytes
            got = os.preadv(fd, [memoryview(raw[k]).cast("B")], lay.offset + k * plane_bytes + y0 * row_bytes)
            if got != want:
                raise ProductError(f"{prod.path}: {extname} ends early (truncated file?)")
    raw = raw.reshape(lead + (y1 - y0, nx))
    values = _to_native(raw, lay)
    prod._note_sci(extname, 0, values, per_integration=True)
    return values


def read_reference_image(path: str | os.PathLike, geometry: Geometry, reftype: str) -> np.ndarray:
    """Read a CRDS-style reference image (GAIN, READNOISE) cut to a subarray.

    Parameters
    ----------
    path : path-like
        FITS file with a 2-D SCI image (GainModel, ReadnoiseModel); SUBSTRT1/2 in its
        primary header give where it sits on the detector (1-based; 1 if absent).
    geometry : Geometry
        The science subarray.
    reftype : str
        "GAIN" or "READNOISE"; a file whose REFTYPE says otherwise is refused.

    Returns
    -------
    float32 ndarray, shape (ny, nx)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                h0 = hdul[0].header
                hdu = hdul["SCI"] if "SCI" in hdul else hdul[0]
                data = None if hdu.data is None else np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ProductError(f"{path}: not a readable FITS reference file ({_short(exc)})") from None
    kind = str(_header_value(h0, "REFTYPE", "")).upper()
    if kind and kind != reftype.upper():
        raise ProductError(f"{path}: a {kind} reference file, not {reftype.upper()}")
    if data is None or data.ndim != 2:
        raise ProductError(f"{path}: a {reftype.lower()} reference needs a 2-D SCI image")
    try:
        x0 = int(_header_value(h0, "SUBSTRT1", 1)) - 1
        y0 = int(_header_value(h0, "SUBSTRT2", 1)) - 1
    except (TypeError, ValueError):
        raise ProductError(f"{path}: SUBSTRT1/2 are not integers") from None
    dx, dy = geometry.xstart - x0, geometry.ystart - y0
    if dx < 0 or dy < 0 or dx + geometry.nx > data.shape[1] or dy + geometry.ny > data.shape[0]:
        raise ProductError(
            f"{path}: covers detector x {x0}..{x0 + data.shape[1] - 1}, y {y0}..{y0 + data.shape[0] - 1} "
            f"(0-based), not the whole subarray")
    return np.ascontiguousarray(data[dy:dy + geometry.ny, dx:dx + geometry.nx])


# ---- jitter-from-guidestar
def write_fits_tables(
    tables: Mapping[str, Table],
    out_path: str | os.PathLike,
    *,
    tool: str,
    params: Mapping | None = None,
    overwrite: bool = False,
    inputs: tuple[str, ...] = (),
) -> Path:
    """Write several tables as one FITS file: an empty primary, then one BINTABLE each.

    ``tables`` maps EXTNAME to an astropy Table, in file order; each table's ``meta``
    goes to its extension header (long keys as HIERARCH). Provenance (status keyword,
    HISTORY) goes to the primary header. Written atomically like :func:`write_table`.
    """
    out = Path(out_path)
    if out.suffix.lower() not in (".fits", ".fit", ".fts"):
        raise OutputError(f"{out}: a multi-table output ends in .fits")
    primary = fits.PrimaryHDU()
    _provenance(primary.header, tool, params)
    hdus = [primary]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, table in tables.items():
            hdu = fits.table_to_hdu(table)
            hdu.name = name.upper()
            hdus.append(hdu)
        with atomic_path(out, overwrite=overwrite, inputs=inputs, suffix=".fits") as tmp:
            fits.HDUList(hdus).writeto(tmp)
    return out


# ---- plots
def check_output(out_path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str, ...] = (),
                 suffix: str | None = None) -> Path:
    """Refuse an output before any work is done: exists without ``overwrite``, is an input,
    its directory is missing, or (with ``suffix``, e.g. ".png") it has another extension."""
    out = Path(out_path)
    if suffix is not None and out.suffix.lower() != suffix:
        raise OutputError(f"{out}: must end in {suffix}")
    return _check_output(out, inputs, overwrite)


def read_fits_table(path: str | os.PathLike, extname: str) -> Table | None:
    """Read the binary table ``extname`` of a FITS file (None when it has none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                if extname not in hdul:
                    return None
                return Table.read(hdul[extname])
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: not a readable FITS table file ({_short(exc)})") from None




# ---- oneoverf: reading into buffers
def read_group_into(prod: Product, extname: str, index: int, group: int, out: np.ndarray) -> np.ndarray:
    """Read one group of one integration of a 4-D image extension into ``out``.

    The same values as :func:`read_group`, converted from the file's byte order in one
    pass into a caller's buffer (reused from one integration to the next) instead of
    three new arrays. ``out`` must have shape (ny, nx); values are cast to its dtype.
    Images stored with BZERO/BSCALE go through :func:`read_group`. Returns ``out``.
    """
    lay, start, ny, nx = _group_location(prod, extname, index, group)
    if out.shape != (ny, nx):
        raise ValueError(f"out must have shape {(ny, nx)}, got {out.shape}")
    if not (lay.bzero == 0 and lay.bscale == 1):
        np.copyto(out, read_group(prod, extname, index, group), casting="unsafe")
        return out
    plane = ny * nx * lay.stored.itemsize
    aligned = start - start % _PAGE
    with open(prod.path, "rb") as fh:
        with mmap.mmap(fh.fileno(), plane + (start - aligned), access=mmap.ACCESS_READ, offset=aligned) as mm:
            raw = np.frombuffer(mm, dtype=lay.stored, count=ny * nx, offset=start - aligned).reshape(ny, nx)
            np.copyto(out, raw, casting="unsafe")
            del raw
            with contextlib.suppress(AttributeError, OSError):  # as _read_mapped: drop the pages
                mm.madvise(mmap.MADV_DONTNEED)
    prod._note_sci(extname, index % lay.shape[0], out, per_integration=False)
    return out
