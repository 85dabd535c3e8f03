"""Benchmark rejump --method two-point against stcal's jump detection on the same >= 500 MB ramp.

Each side runs in its own process, one after the other in the same run: stcal opens the
ramp as a RampModel, runs ``detect_jumps_data`` with the pipeline defaults (one process,
``max_cores`` none) and saves the model, as ``strun jump`` would; tsotools runs
``run_rejump`` (two-point) from file to file. Reported: wall time of each process, its
peak RSS (VmHWM), both ratios, and the Jaccard index of the two sets of flags.
Targets: tsotools at least 3x faster and at most half stcal's peak RSS.

Usage: python bench_rejump.py --workdir DIR [--nints 25]
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPEED_TARGET = 3.0
MEMORY_TARGET = 0.5
GAIN, RN, THRESHOLD = 1.8, 14.142136, 4.0

_STCAL = f"""
import sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from stdatamodels.jwst import datamodels as dm
from stcal.jump.jump import detect_jumps_data
from stcal.jump.jump_class import JumpData
src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
model = dm.RampModel(src)
ny, nx = model.data.shape[2:]
flags = {{"GOOD": 0, "SATURATED": 2, "JUMP_DET": 4, "NO_GAIN_VALUE": 2**19, "DO_NOT_USE": 1,
         "REFERENCE_PIXEL": 2**31}}
gain = np.full((ny, nx), {GAIN}, np.float32)
jd = JumpData(model, gain2d=gain, rnoise2d=np.full((ny, nx), {RN}, np.float32), dqflags=flags)
jd.rejection_thresh, jd.max_cores = {THRESHOLD}, "none"
gdq, pdq, ncr, _ = detect_jumps_data(jd)
model.groupdq, model.pixeldq = gdq, pdq
model.save(out)
print("elapsed", time.perf_counter() - t0)
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""

_TSOTOOLS = f"""
import sys, time
from tsotools.algorithms.jumps import JumpParams
from tsotools.steps.rejump import run_rejump
src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
params = JumpParams(method="two-point", threshold={THRESHOLD})
run_rejump(src, out, params=params, gain={GAIN}, readnoise={RN},
           overwrite=True, progress=False)
print("elapsed", time.perf_counter() - t0)
# VmHWM (this process image's peak RSS); ru_maxrss would carry the parent's peak across exec
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""


def make_ramp(workdir: Path, nints: int) -> Path:
    """A SUBGRISM256 ramp of 10 groups (21 MB per integration), made once and reused."""
    from tsotools.simulate import GrismParams, simulate_grism

    prefix = f"bench_rejump_{nints}"
    path = workdir / f"{prefix}_ramp.fits"
    if not path.exists():
        params = GrismParams(seed=0, nints=nints, ngroups=10, subarray="SUBGRISM256")
        simulate_grism(workdir, params, prefix=prefix, truth=False, overwrite=True, products=["ramp"])
    return path


def measure(script: str, src: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", script, str(src), str(out)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"benchmark process failed:\n{res.stderr[-2000:]}")
    lines = res.stdout.strip().splitlines()
    return {
        "wall_s": wall,
        "inner_s": float(lines[-2].split()[1]),
        "peak_mb": int(lines[-1]) / 1024,
    }


def jump_flags(path: Path) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path, memmap=True) as h:
        return (np.asarray(h["GROUPDQ"].data) & 4) != 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("output"))
    parser.add_argument(
        "--nints", type=int, default=25, help="integrations (25 give a 524 MB ramp)"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    ramp = make_ramp(args.workdir, args.nints)
    size_mb = ramp.stat().st_size / 2**20
    stcal = measure(_STCAL, ramp, args.workdir / "bench_rejump_stcal.fits")
    mine = measure(_TSOTOOLS, ramp, args.workdir / "bench_rejump_tsotools.fits")
    a, b = (
        jump_flags(args.workdir / "bench_rejump_stcal.fits"),
        jump_flags(args.workdir / "bench_rejump_tsotools.fits"),
    )
    jaccard = (a & b).sum() / max((a | b).sum(), 1)
    speed = stcal["wall_s"] / mine["wall_s"]
    memory = mine["peak_mb"] / stcal["peak_mb"]
    print(
        f"ramp: {ramp.name}, {size_mb:.0f} MB ({args.nints} integrations x 10 groups x 256 x 2048)"
    )
    print(
        f"stcal detect_jumps_data (+ RampModel read/save): {stcal['wall_s']:.1f} s wall "
        f"({stcal['inner_s']:.1f} s after imports), peak RSS {stcal['peak_mb']:.0f} MB"
    )
    print(
        f"tsotools rejump --method two-point:              {mine['wall_s']:.1f} s wall "
        f"({mine['inner_s']:.1f} s after imports), peak RSS {mine['peak_mb']:.0f} MB"
    )
    print(
        f"speed-up {speed:.2f}x (target >= {SPEED_TARGET:g}x); peak RSS ratio {memory:.3f} "
        f"(target <= {MEMORY_TARGET:g}); flags: {a.sum()} vs {b.sum()}, Jaccard {jaccard:.5f}"
    )
    ok = speed >= SPEED_TARGET and memory <= MEMORY_TARGET and size_mb >= 500
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
