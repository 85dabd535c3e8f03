"""Benchmark oneoverf on a >= 1 GB SUBGRISM256 ramp against a plain memory-mapped copy.

Issue #3 point 5: in one process, ``run_oneoverf`` (default method, from file to file)
must take no more than 5x the wall time of reading and writing the same file with a plain
numpy memory-mapped copy, measured in the same run, and peak RSS (VmHWM) must stay below
3x one integration plus 200 MB. Each side runs in its own process, one after the other.

Usage: python bench_oneoverf.py --workdir DIR [--nints 50 --ngroups 10]
"""

import argparse
import subprocess
import sys
from pathlib import Path

SPEED_TARGET = 5.0
RSS_EXTRA_MB = 200.0

_COPY = """
import sys, time
import numpy as np
src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
a = np.memmap(src, dtype=np.uint8, mode="r")
b = np.memmap(out, dtype=np.uint8, mode="w+", shape=a.shape)
step = 64 << 20
for i in range(0, a.size, step):
    b[i:i + step] = a[i:i + step]
b.flush()
del a, b
print("elapsed", time.perf_counter() - t0)
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""

_TSOTOOLS = """
import sys, time
from tsotools.steps.oneoverf import run_oneoverf
src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
s = run_oneoverf(src, out, overwrite=True, progress=False)
print("elapsed", time.perf_counter() - t0)
# VmHWM (this process image's peak RSS); ru_maxrss would carry the parent's peak across exec
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
print("method", s["method"])
"""


def _run(code, *args):
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    lines = res.stdout.split("\n")
    return float(lines[0].split()[1]), float(lines[1]) / 1024.0, lines[2:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--nints", type=int, default=50)
    ap.add_argument("--ngroups", type=int, default=10)
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    ramp = work / "oneoverf_ramp.fits"
    if not ramp.exists():
        from tsotools.simulate import GrismParams, simulate_grism

        print(f"simulating a SUBGRISM256 ramp ({args.nints} x {args.ngroups} groups) ...", flush=True)
        paths = simulate_grism(work, GrismParams(seed=1, subarray="SUBGRISM256", nints=args.nints,
                                                 ngroups=args.ngroups), prefix="oneoverf", truth=False,
                               products=["ramp"])
        ramp = paths["ramp"]
    size_gb = ramp.stat().st_size / 1e9
    one_int_mb = args.ngroups * 256 * 2048 * 4 / 2**20
    out = work / "oneoverf_1overf_ramp.fits"
    out.unlink(missing_ok=True)  # both sides write a new file (replacing one costs its deletion)
    copy_s, copy_mb, _ = _run(_COPY, ramp, work / "copy.fits")
    oof_s, oof_mb, extra = _run(_TSOTOOLS, ramp, out)
    (work / "copy.fits").unlink(missing_ok=True)
    rss_limit = 3 * one_int_mb + RSS_EXTRA_MB
    print(f"ramp {size_gb:.2f} GB ({args.nints} integrations of {one_int_mb:.1f} MB); {' '.join(extra).strip()}")
    print(f"memory-mapped copy: {copy_s:.1f} s, peak RSS {copy_mb:.0f} MB")
    print(f"oneoverf:           {oof_s:.1f} s = {oof_s / copy_s:.2f}x the copy (target <= {SPEED_TARGET}x), "
          f"peak RSS {oof_mb:.0f} MB (target < {rss_limit:.0f} MB = 3 x {one_int_mb:.1f} + {RSS_EXTRA_MB:.0f})")
    ok = size_gb >= 1.0 and oof_s <= SPEED_TARGET * copy_s and oof_mb < rss_limit
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
