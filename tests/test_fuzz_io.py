"""Fuzzing the product loader: any header and shape gives a product or one ProductError."""

import os
import tempfile

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsotools.errors import ProductError
from tsotools.info import format_summary, summarize
from tsotools.io import open_product

KEYS = ["NINTS", "NGROUPS", "NOUTPUTS", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2", "FASTAXIS",
        "SLOWAXIS", "INTSTART", "INTEND", "EXSEGNUM", "TFRAME"]
values = st.one_of(st.integers(-5000, 5000), st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.text(alphabet="ABCXYZ0123 .-", max_size=8), st.booleans())
headers = st.dictionaries(st.sampled_from(KEYS + ["EXP_TYPE", "DATAMODL", "S_PHOTOM"]), values, max_size=10)
shapes = st.lists(st.integers(1, 5), min_size=0, max_size=5).map(tuple)
dtypes = st.sampled_from([np.float32, np.uint16, np.uint8, np.int32, np.float64])
extnames = st.lists(st.sampled_from(["SCI", "GROUPDQ", "PIXELDQ", "DQ", "ERR", "INT_TIMES", "WAVELENGTH",
                                     "EXTRACT1D", "ASDF"]), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, shapes, dtypes, extnames, st.booleans())
def test_loader_never_raises_anything_but_product_error(hdr, shape, dtype, names, sci_header_ref):
    primary = fits.PrimaryHDU()
    for key, value in hdr.items():
        primary.header[key] = value
    hdus = [primary]
    if shape:
        sci = fits.ImageHDU(np.zeros(shape, dtype=dtype), name="SCI")
        if sci_header_ref:
            sci.header["XREF_SCI"] = 3.5
            sci.header["SLTSTRT1"] = 1
        hdus.append(sci)
    for name in names:
        if name in ("INT_TIMES", "EXTRACT1D", "ASDF"):
            hdus.append(fits.BinTableHDU.from_columns([fits.Column("integration_number", "J", array=[1])], name=name))
        else:
            hdus.append(fits.ImageHDU(np.zeros((2, 2), np.float32), name=name))
    fd, path = tempfile.mkstemp(suffix=".fits")
    os.close(fd)
    try:
        fits.HDUList(hdus).writeto(path, overwrite=True, output_verify="silentfix+ignore")
        try:
            with open_product(path) as prod:
                text = format_summary(summarize(prod))
                assert prod.kind in text
                if prod.kind not in ("x1dints", "guider"):
                    prod.read("SCI", 0)
                    prod.integration_times()
        except ProductError as exc:
            assert str(exc).startswith(path) and "\n" not in str(exc)
    finally:
        os.unlink(path)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=6000), st.integers(0, 5))
def test_garbage_and_truncated_bytes_are_refused_in_one_line(garbage, cut_blocks):
    fd, path = tempfile.mkstemp(suffix=".fits")
    os.close(fd)
    try:
        good = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 4, 8, 8), np.float32), name="SCI")])
        good.writeto(path, overwrite=True)
        raw = open(path, "rb").read()
        with open(path, "wb") as fh:
            fh.write(raw[: 2880 * cut_blocks] + garbage if cut_blocks < 4 else garbage)
        try:
            with open_product(path) as prod:
                prod.read("SCI", 0)
        except ProductError as exc:
            assert "\n" not in str(exc)
    finally:
        os.unlink(path)
