"""Benchmark: centroid + photometry speed and memory on SUB400P weak-lens rateints.

Targets (issue #6): on simulated SUB400P rateints with >= 1000 integrations, in one
process, at least 100 integrations/s for centroid+photometry, and a peak RSS that does not
grow with the number of integrations (compared with a 250-integration file of the same
frame size: the difference must stay below 50 MB, i.e. nothing per-frame is kept).

Each measurement runs in its own process so that the simulation does not inflate it.

Usage: python bench_photometry.py --workdir DIR [--nints 1000]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATE = 100.0
TARGET_RSS_GROWTH_MB = 50.0

_RUN = """
import json, resource, sys, time, logging
logging.disable(logging.WARNING)
from tsotools.steps.centroid import run_centroid
from tsotools.steps.photometry import run_photometry
src, workdir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if mode == "photometry":      # one pass: centroids measured with the apertures
    s = run_photometry(src, workdir + "/bench_phot.ecsv", overwrite=True, progress=False)
else:                          # the chain: centroid table, then photometry reading it
    run_centroid(src, workdir + "/bench_cen.ecsv", overwrite=True, progress=False)
    s = run_photometry(src, workdir + "/bench_phot2.ecsv", centroids_path=workdir + "/bench_cen.ecsv",
                       overwrite=True, progress=False)
# VmHWM (this process image's peak RSS); ru_maxrss would carry the parent's peak across exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "nints": s["nints"], "radius": s["radius"],
                  "peak_rss_mb": peak}))
"""


def make_rateints(workdir: Path, nints: int) -> Path:
    from tsotools.simulate import ImagingParams, simulate_imaging

    prefix = f"bench_phot_{nints}"
    path = workdir / f"{prefix}_rateints.fits"
    if not path.exists():
        params = ImagingParams(seed=1, subarray="SUB400P", nints=nints, ngroups=2)
        path = simulate_imaging(workdir, params, prefix=prefix, truth=False, overwrite=True,
                                products=["rateints"])["rateints"]
    return path


def measure(path: Path, workdir: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, str(path), str(workdir), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("output"))
    parser.add_argument("--nints", type=int, default=1000)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    small_n = max(args.nints // 4, 50)

    t0 = time.perf_counter()
    big = make_rateints(args.workdir, args.nints)
    small = make_rateints(args.workdir, small_n)
    print(f"inputs: {big.name} ({big.stat().st_size / 1e9:.2f} GB), {small.name}; "
          f"made or found in {time.perf_counter() - t0:.0f} s")

    one_pass = measure(big, args.workdir, "photometry")
    chain = measure(big, args.workdir, "chain")
    one_small = measure(small, args.workdir, "photometry")
    rate = one_pass["nints"] / one_pass["seconds"]
    chain_rate = chain["nints"] / chain["seconds"]
    growth = one_pass["peak_rss_mb"] - one_small["peak_rss_mb"]
    print(f"photometry (centroids in the same pass), {one_pass['nints']} integrations of 400x400: "
          f"{one_pass['seconds']:.1f} s = {rate:.0f} integrations/s (target >= {TARGET_RATE:.0f}); "
          f"radius auto -> {one_pass['radius']:g} px")
    print(f"centroid then photometry --centroids: {chain['seconds']:.1f} s = {chain_rate:.0f} integrations/s")
    print(f"peak RSS: {one_pass['peak_rss_mb']:.0f} MB with {one_pass['nints']} integrations, "
          f"{one_small['peak_rss_mb']:.0f} MB with {one_small['nints']}: growth {growth:+.0f} MB "
          f"(target < {TARGET_RSS_GROWTH_MB:.0f} MB)")
    ok = rate >= TARGET_RATE and one_pass["nints"] >= 1000 and growth < TARGET_RSS_GROWTH_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
