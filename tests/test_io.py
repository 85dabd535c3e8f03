import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from stdatamodels.jwst import datamodels as dm

from tsotools import dqflags, io
from tsotools.errors import OutputError, ProcessingError, ProductError

from conftest import sha256


def _meta(model, nints, ngroups, ny, nx, intstart=1):
    m = model.meta
    m.instrument.name, m.instrument.detector = "NIRCAM", "NRCALONG"
    m.instrument.filter, m.instrument.pupil = "F322W2", "GRISMR"
    m.exposure.type, m.exposure.readpatt = "NRC_TSGRISM", "RAPID"
    m.exposure.nints, m.exposure.ngroups, m.exposure.nframes, m.exposure.groupgap = nints, ngroups, 1, 0
    m.exposure.integration_start, m.exposure.integration_end = intstart, intstart + nints - 1
    m.exposure.noutputs = 4
    m.subarray.name = "SUBGRISM64"
    m.subarray.xstart, m.subarray.ystart, m.subarray.xsize, m.subarray.ysize = 1, 1, nx, ny
    m.subarray.fastaxis, m.subarray.slowaxis = -1, 2
    m.cal_step.superbias = "COMPLETE"


def _int_times(n_total):
    t0 = 60000.0
    rows = [(i, t0 + i, t0 + i + 0.5, t0 + i + 1, t0 + i + 1e-3, t0 + i + 0.5 + 1e-3, t0 + i + 1 + 1e-3)
            for i in range(1, n_total + 1)]
    return np.array(rows, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8"),
                                 ("int_mid_MJD_UTC", "f8"), ("int_end_MJD_UTC", "f8"),
                                 ("int_start_BJD_TDB", "f8"), ("int_mid_BJD_TDB", "f8"),
                                 ("int_end_BJD_TDB", "f8")])


@pytest.fixture
def ramp_path(tmp_path):
    """A small RampModel saved by stdatamodels (so it carries the ASDF extension)."""
    nints, ngroups, ny, nx = 3, 4, 16, 2048
    rng = np.random.default_rng(3)
    model = dm.RampModel((nints, ngroups, ny, nx))
    _meta(model, nints, ngroups, ny, nx, intstart=4)
    model.data[:] = rng.normal(100, 10, model.data.shape).astype(np.float32)
    model.groupdq[1, 2, 5, 7] = dqflags.JUMP_DET
    model.pixeldq[:4, :] = dqflags.REFERENCE_PIXEL
    model.pixeldq[8, 9] = dqflags.HOT | dqflags.DO_NOT_USE
    model.int_times = _int_times(8)
    path = tmp_path / "in_ramp.fits"
    model.save(path)
    return path


def test_identifies_a_ramp_and_its_metadata(ramp_path):
    with io.open_product(ramp_path) as prod:
        info = prod.info
        assert info.kind == "ramp" and info.datamodel == "RampModel"
        assert info.shape == (3, 4, 16, 2048)
        assert (info.nints, info.ngroups, info.intstart, info.intend) == (3, 4, 4, 6)
        assert info.detector == "NRCALONG" and info.filter == "F322W2" and info.pupil == "GRISMR"
        geo = info.geometry
        assert (geo.xstart, geo.ystart, geo.nx, geo.ny, geo.noutputs, geo.fastaxis) == (0, 0, 2048, 16, 4, -1)
        assert info.steps["S_SUPERB"] == "COMPLETE"


def test_segment_rows_of_int_times(ramp_path):
    with io.open_product(ramp_path) as prod:
        times = prod.integration_times()
    assert list(times["int_num"]) == [4, 5, 6]
    assert np.allclose(times["mjd_mid"], 60000.0 + np.array([4.5, 5.5, 6.5]))
    assert np.allclose(times["bjd_mid"] - times["mjd_mid"], 1e-3)


def test_reads_one_integration_with_native_types(ramp_path):
    model = dm.open(ramp_path)
    with io.open_product(ramp_path) as prod:
        sci = prod.read("SCI", 1)
        assert sci.dtype == np.float32 and sci.shape == (4, 16, 2048)
        assert np.array_equal(sci, model.data[1])
        pixeldq = prod.read("PIXELDQ")
        assert pixeldq.dtype == np.uint32
        assert pixeldq[0, 0] == dqflags.REFERENCE_PIXEL and pixeldq[8, 9] == dqflags.HOT | dqflags.DO_NOT_USE
        assert prod.read("GROUPDQ", 1)[2, 5, 7] == dqflags.JUMP_DET
        assert np.array_equal(prod.read("SCI", slice(1, 3)), model.data[1:3])


def test_round_trip_keeps_everything_but_the_changed_array(ramp_path, tmp_path):
    out = tmp_path / "out_ramp.fits"
    before = sha256(ramp_path)
    with io.open_product(ramp_path) as prod:
        with io.derive_product(prod, out, {"SCI": None}, tool="oneoverf", params={"method": "auto", "scale": 1.5}) as w:
            for i in range(prod.nints):
                w.write("SCI", i, prod.read("SCI", i) * 2 + 1)
    assert sha256(ramp_path) == before
    a, b = dm.open(ramp_path), dm.open(out)
    assert type(b) is dm.RampModel
    assert np.allclose(b.data, a.data * 2 + 1)
    assert np.array_equal(b.groupdq, a.groupdq) and np.array_equal(b.pixeldq, a.pixeldq)
    assert np.array_equal(np.asarray(b.int_times), np.asarray(a.int_times))
    assert b.meta.instance["subarray"] == a.meta.instance["subarray"]
    assert b.meta.instance["exposure"] == a.meta.instance["exposure"]
    assert b.meta.instance["instrument"] == a.meta.instance["instrument"]
    with fits.open(ramp_path) as ha, fits.open(out) as hb:
        assert [h.name for h in ha] == [h.name for h in hb]
        assert hb["ASDF"].data.tobytes() == ha["ASDF"].data.tobytes()
        for name in ("PIXELDQ", "GROUPDQ", "INT_TIMES"):
            assert hb[name].header == ha[name].header
        added = {"S_1OVERF", "TSOTVER", "HISTORY"}
        assert {k for k in ha[0].header if k not in added} == {k for k in hb[0].header if k not in added}
        changed = added | {"FILENAME"}
        assert all(hb[0].header[k] == ha[0].header[k] for k in ha[0].header if k not in changed and k)
        assert hb[0].header["FILENAME"] == "out_ramp.fits"  # names the output, not the input or a temp file
        assert b.meta.filename == "out_ramp.fits"
        assert hb[0].header["S_1OVERF"] == "COMPLETE"
        assert "method=auto, scale=1.5" in " ".join(hb[0].header["HISTORY"])


def test_never_writes_onto_the_input_or_an_existing_file(ramp_path, tmp_path):
    with io.open_product(ramp_path) as prod:
        with pytest.raises(OutputError, match="input"):
            io.derive_product(prod, ramp_path, {"SCI": None}, tool="oneoverf", overwrite=True)
        other = tmp_path / "exists.fits"
        other.write_bytes(b"keep me")
        with pytest.raises(OutputError, match="--overwrite"):
            io.derive_product(prod, other, {"SCI": None}, tool="oneoverf")
        assert other.read_bytes() == b"keep me"


def test_failed_write_leaves_no_file(ramp_path, tmp_path):
    out = tmp_path / "partial.fits"
    with io.open_product(ramp_path) as prod:
        with pytest.raises(RuntimeError):
            with io.derive_product(prod, out, {"SCI": None}, tool="oneoverf") as w:
                w.write("SCI", 0, prod.read("SCI", 0))
                raise RuntimeError("boom")
        assert not out.exists()
        with pytest.raises(ProcessingError, match="incomplete"):
            with io.derive_product(prod, out, {"SCI": None}, tool="oneoverf") as w:
                w.write("SCI", 0, prod.read("SCI", 0))
    assert not out.exists()
    assert not list(tmp_path.glob(".partial.fits*"))


def test_new_product_streams_a_cube_stdatamodels_reads(ramp_path, tmp_path):
    out = tmp_path / "rateints.fits"
    with io.open_product(ramp_path) as prod:
        nints, _, ny, nx = prod.info.shape
        exts = [
            io.ImageSpec("SCI", (nints, ny, nx), "float32"),
            io.ImageSpec("DQ", (nints, ny, nx), "uint32"),
            fits.BinTableHDU(prod.read_table("INT_TIMES"), name="INT_TIMES"),
        ]
        with io.new_product(out, prod.header(), exts, tool="rampfit", datamodel="CubeModel", inputs=(prod.path,)) as w:
            for i in range(nints):
                w.write("SCI", i, np.full((ny, nx), i, np.float32))
                w.write("DQ", i, np.full((ny, nx), 2**31 + i, np.uint32))
    model = dm.open(out)
    assert type(model) is dm.CubeModel
    assert model.data.shape == (3, 16, 2048) and model.data[2, 0, 0] == 2
    assert model.dq.dtype == np.uint32 and model.dq[1, 3, 3] == 2**31 + 1
    assert len(model.int_times) == 8
    assert model.meta.exposure.nints == 3 and model.meta.subarray.name == "SUBGRISM64"


def test_table_extension_streamed_row_by_row(tmp_path):
    out = tmp_path / "tab.fits"
    spec = io.TableSpec("EXTRACT1D", {"INT_NUM": ("i4",), "FLUX": ("f8", (5,), "Jy")}, nrows=3)
    with io.new_product(out, fits.Header(), [spec], tool="spectra") as w:
        for i in range(3):
            w.write("EXTRACT1D", i, {"INT_NUM": i + 1, "FLUX": np.arange(5) * i})
    tab = Table.read(out, hdu="EXTRACT1D")
    assert list(tab["INT_NUM"]) == [1, 2, 3]
    assert np.array_equal(tab["FLUX"][2], np.arange(5) * 2.0)
    assert str(tab["FLUX"].unit) == "Jy"


def test_refuses_wrong_kinds_in_one_line(ramp_path, tmp_path):
    with pytest.raises(ProductError, match="ramp product; photometry needs rateints or calints"):
        io.open_product(ramp_path, expect=("rateints", "calints"), tool="photometry")
    notfits = tmp_path / "x.fits"
    notfits.write_text("hello")
    with pytest.raises(ProductError, match="not a readable FITS file"):
        io.open_product(notfits)
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(ProductError, match="not a NIRCam TSO product"):
        io.open_product(empty)


def test_truncated_file_is_refused(ramp_path, tmp_path):
    cut = tmp_path / "cut.fits"
    cut.write_bytes(ramp_path.read_bytes()[: 2880 * 40])
    with pytest.raises(ProductError, match="truncated|not a readable"):
        io.open_product(cut)


def test_uncal_integers_are_unscaled_one_integration_at_a_time(tmp_path):
    model = dm.Level1bModel((2, 3, 8, 2048))
    _meta(model, 2, 3, 8, 2048)
    model.data[:] = 65000
    model.data[1, 2, 3, 4] = 7
    path = tmp_path / "uncal.fits"
    model.save(path)
    with io.open_product(path) as prod:
        assert prod.kind == "uncal"
        sci = prod.read("SCI", 1)
        assert sci.dtype == np.uint16 and sci[2, 3, 4] == 7 and sci[0, 0, 0] == 65000
        with pytest.raises(ProductError, match="superbias"):
            io.open_product(path, expect=("ramp",), tool="rejump")


def test_table_outputs_are_atomic_and_carry_provenance(tmp_path):
    out = tmp_path / "t.ecsv"
    io.write_table(Table({"a": [1, 2]}), out, tool="centroid", params={"box": 11})
    tab = Table.read(out)
    assert tab.meta["S_CENTRD"] == "COMPLETE" and "box=11" in tab.meta["HISTORY"][0]
    with pytest.raises(OutputError):
        io.write_table(Table({"a": [1]}), out, tool="centroid")
    with pytest.raises(OutputError, match=".ecsv or .fits"):
        io.write_table(Table({"a": [1]}), tmp_path / "t.csv", tool="centroid")


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from tsotools import io
    src, out = sys.argv[1], sys.argv[2]
    with io.open_product(src) as prod:
        with io.derive_product(prod, out, {"SCI": None}, tool="oneoverf") as w:
            for i in range(prod.nints):
                w.write("SCI", i, prod.read("SCI", i))
                print("wrote", i, flush=True)
                time.sleep(30)
    """
)


def test_sigkill_while_writing_leaves_no_output_and_input_unchanged(ramp_path, tmp_path):
    out = tmp_path / "killed.fits"
    before = sha256(ramp_path)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(ramp_path), str(out)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("wrote 0")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert sha256(ramp_path) == before
    # a rerun succeeds and clears what the killed process left behind
    with io.open_product(ramp_path) as prod:
        with io.derive_product(prod, out, {"SCI": None}, tool="oneoverf") as w:
            for i in range(prod.nints):
                w.write("SCI", i, prod.read("SCI", i))
    assert dm.open(out).data.shape == (3, 4, 16, 2048)
    assert not list(tmp_path.glob(".killed.fits.*.part"))


def test_reads_do_not_keep_the_file_mapped(ramp_path):
    """Each read maps one integration and unmaps it: nothing of the file stays mapped."""
    with io.open_product(ramp_path) as prod:
        for _ in prod.iter_integrations("SCI"):
            pass
        maps = open(f"/proc/{os.getpid()}/maps").read()
    assert str(ramp_path) not in maps




def test_table_unsigned_columns_round_trip(tmp_path):
    out = tmp_path / "u.fits"
    spec = io.TableSpec("EXTRACT1D", {"DQ": ("u4", (3,)), "N": ("i4",)}, nrows=2)
    with io.new_product(out, fits.Header(), [spec], tool="spectra") as w:
        w.write("EXTRACT1D", 0, {"DQ": [0, 4, 2**31 + 5], "N": 3})
        w.write("EXTRACT1D", 1, {"DQ": [1, 1, 1], "N": 3})
    tab = Table.read(out, hdu="EXTRACT1D")
    assert tab["DQ"].dtype == np.uint32
    assert list(tab["DQ"][0]) == [0, 4, 2**31 + 5]


def test_compressed_fits_is_refused_in_one_line(ramp_path, tmp_path):
    import gzip

    gz = tmp_path / "r.fits.gz"
    gz.write_bytes(gzip.compress(ramp_path.read_bytes()))
    with pytest.raises(ProductError, match="decompress"):
        io.open_product(gz)


def test_read_rows_equal_astropy(simulated):
    """Positioned row reads give astropy's values: float SCI and offset-unsigned DQ."""
    path = simulated("grism", seed=8, nints=3, ngroups=2)["rateints"]
    with fits.open(path) as hdul:
        want = {name: hdul[name].data[2, 3:7].copy() for name in ("SCI", "DQ", "VAR_POISSON")}
    with io.open_product(path) as prod:
        for name, expected in want.items():
            got = io.read_rows(prod, name, 2, 3, 7)
            np.testing.assert_array_equal(got, expected)
            assert got.dtype.isnative and got.dtype.kind == expected.dtype.kind
