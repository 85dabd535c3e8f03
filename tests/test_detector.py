import numpy as np
import pytest

from tsotools.detector import Geometry, default_gain, default_readnoise_cds, is_longwave


def subgrism(ny=64, noutputs=4):
    # NRCALONG SUBGRISM: SUBSTRT1=1, SUBSTRT2=1, full width
    return Geometry(xstart=0, ystart=0, nx=2048, ny=ny, noutputs=noutputs, fastaxis=-1, slowaxis=1)


@pytest.mark.parametrize(
    "geo, tframe",
    [
        (subgrism(64), 0.34061),
        (subgrism(128), 0.67597),
        (subgrism(256), 1.34669),
        (Geometry(1984, 0, 64, 64, noutputs=1, fastaxis=-1), 0.05016),
        (Geometry(0, 0, 2048, 2048, noutputs=4), 10.73677),
    ],
)
def test_frame_time_reproduces_flight_values(geo, tframe):
    assert geo.frame_time_s == pytest.approx(tframe, abs=1e-6)
    assert geo.ticks_per_frame * 10e-6 == pytest.approx(tframe, abs=1e-6)


def test_four_amplifiers_of_512_columns():
    geo = subgrism()
    assert geo.amplifiers == ((0, 512), (512, 1024), (1024, 1536), (1536, 2048))
    amap = geo.amplifier_map()
    assert amap[511] == 0 and amap[512] == 1 and amap[2047] == 3


def test_one_output_covers_the_width():
    geo = Geometry(1888, 0, 160, 160, noutputs=1, fastaxis=-1)
    assert geo.amplifiers == ((0, 160),)
    assert set(np.unique(geo.amplifier_map())) == {0}


def test_narrow_subarray_with_four_outputs_is_clipped():
    geo = Geometry(400, 100, 300, 50, noutputs=4)
    assert geo.amplifiers == ((0, 112), (112, 300))
    assert geo.amplifier_ids == (0, 1)


def test_reference_pixels_only_where_the_subarray_touches_an_edge():
    geo = subgrism(64)
    assert list(geo.reference_rows) == [0, 1, 2, 3]
    assert list(geo.reference_columns) == [0, 1, 2, 3, 2044, 2045, 2046, 2047]
    corner = Geometry(1888, 0, 160, 160, noutputs=1)
    assert list(corner.reference_rows) == [0, 1, 2, 3]
    assert list(corner.reference_columns) == [156, 157, 158, 159]
    inner = Geometry(500, 500, 64, 64, noutputs=1)
    assert inner.reference_rows.size == 0 and inner.reference_columns.size == 0
    assert not inner.reference_mask().any()
    top = Geometry(0, 2048 - 64, 2048, 64)
    assert list(top.reference_rows) == [60, 61, 62, 63]


def test_read_order_alternates_between_amplifiers():
    geo = subgrism(8)
    ticks = geo.read_ticks()
    row = ticks[0]
    # FASTAXIS=-1: amplifier 1 reads from its high-x edge, amplifier 2 from its low-x edge
    assert row[511] == 0 and row[0] == 511
    assert row[512] == 0 and row[1023] == 511
    assert row[1535] == 0 and row[1536] == 0
    # the next row starts 512 + 12 ticks later
    assert ticks[1, 511] - ticks[0, 511] == 524
    # outputs read simultaneously: each tick appears once per amplifier in a row
    assert np.array_equal(np.sort(row[:512]), np.sort(row[512:1024]))


def test_read_times_fit_inside_the_frame():
    geo = subgrism(64)
    t = geo.read_times_s()
    assert t.min() == 0.0
    assert t.max() < geo.frame_time_s


def test_slow_axis_reverses_row_order():
    geo = Geometry(0, 0, 16, 4, noutputs=1, fastaxis=1, slowaxis=-1)
    ticks = geo.read_ticks()
    assert ticks[3, 0] == 0 and ticks[0, 0] == 3 * (16 + 12)


def test_bad_geometry_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="noutputs"):
        Geometry(0, 0, 10, 10, noutputs=2)
    with pytest.raises(ValueError, match="off the detector"):
        Geometry(2000, 0, 100, 10)


def test_detector_defaults():
    assert is_longwave("NRCALONG") and is_longwave("NRCB5") and not is_longwave("NRCA3")
    assert default_gain("NRCALONG") == pytest.approx(1.8)
    assert default_gain("NRCA3") == pytest.approx(2.05)
    assert default_readnoise_cds("NRCA3") == pytest.approx(10 * np.sqrt(2))
