"""Benchmark: iterate over every integration of a >= 1 GB ramp with bounded memory.

Target (issue #2): peak RSS below 300 MB while reading every integration of a simulated
SUBGRISM256 ramp of at least 1 GB through :mod:`tsotools.io`. The iteration runs in its own
process so that the figure is not inflated by the simulation.

Usage: python bench_io.py --workdir DIR [--nints 50 --ngroups 10]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TARGET_RSS_MB = 300.0

_ITERATE = """
import json, sys, time
import numpy as np
from tsotools.io import open_product
t0 = time.perf_counter()
total = 0.0
with open_product(sys.argv[1]) as prod:
    for i in range(prod.nints):
        total += float(np.nanmean(prod.read("SCI", i)))
        prod.read("GROUPDQ", i)
# VmHWM, not ru_maxrss: the latter carries the parent's peak across exec
with open("/proc/self/status") as fh:
    peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - t0, "nints": prod.nints, "peak_rss_mb": peak_kb / 1024}))
"""


def make_ramp(workdir: Path, nints: int, ngroups: int) -> Path:
    from tsotools.simulate import GrismParams, simulate_grism

    ramp = workdir / "bench_io_ramp.fits"
    if not ramp.exists():
        params = GrismParams(seed=1, subarray="SUBGRISM256", nints=nints, ngroups=ngroups)
        paths = simulate_grism(workdir, params, prefix="bench_io", truth=False, overwrite=True,
                               products=["ramp"])
        ramp = paths["ramp"]
    return ramp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("output"))
    parser.add_argument("--nints", type=int, default=50)
    parser.add_argument("--ngroups", type=int, default=10)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    ramp = make_ramp(args.workdir, args.nints, args.ngroups)
    size_gb = ramp.stat().st_size / 1e9
    print(f"ramp: {ramp} ({size_gb:.2f} GB, made or found in {time.perf_counter() - t0:.1f} s)")
    out = subprocess.run([sys.executable, "-c", _ITERATE, str(ramp)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ok = result["peak_rss_mb"] < TARGET_RSS_MB and size_gb >= 1.0
    print(
        f"iterated {result['nints']} integrations in {result['seconds']:.1f} s "
        f"({size_gb / result['seconds']:.2f} GB/s); peak RSS {result['peak_rss_mb']:.0f} MB "
        f"(target < {TARGET_RSS_MB:.0f} MB, file >= 1 GB): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
