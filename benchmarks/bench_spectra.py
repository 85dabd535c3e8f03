"""Benchmark: spectra speed and memory on SUBGRISM256 rateints with 1000 integrations.

Targets (issue #5): one process, box >= 100 integrations/s, optimal >= 20 integrations/s,
and a peak RSS that does not grow with the number of integrations (compared with a
250-integration file of the same frame size: the difference must stay below 50 MB).

The input is made by simulating 40 SUBGRISM256 integrations (truth=False) and writing them
over and over into a 1000-integration rateints through tsotools.io (the simulator would hold
a 4 GB ramp in memory). Each measurement runs in its own process, timed from the call of
run_spectra to its return (imports excluded), after the input has been read once so that it
sits in the page cache, as a file the pipeline has just written does: the figures are those
of tsotools, not of the disk (a cold 10 GB file reads at about 1 GB/s on the 2-core test VM,
and box extraction reads ~4 MB per integration: SCI and DQ over the background rows).
Besides wall-clock rates the CPU time of the process and the load average are printed: on
a shared machine the wall-clock rate falls with the other processes' load.

Usage: python bench_spectra.py --workdir DIR [--nints 1000]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TARGET_BOX = 100.0
TARGET_OPTIMAL = 20.0
TARGET_RSS_GROWTH_MB = 50.0
SIM_NINTS = 40

_RUN = """
import json, sys, time, logging
logging.disable(logging.WARNING)
from tsotools.algorithms.extraction import ExtractionParams
from tsotools.steps.spectra import run_spectra
src, out, method = sys.argv[1], sys.argv[2], sys.argv[3]
t0, c0 = time.perf_counter(), time.process_time()
s = run_spectra(src, out, params=ExtractionParams(method=method), white_light=out + ".ecsv", overwrite=True,
                progress=False)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                  "nints": s["nints"], "peak_rss_mb": int(hwm[0].split()[1]) / 1024}))
"""


def make_rateints(workdir: Path, nints: int) -> Path:
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from tsotools.io import ImageSpec, new_product, open_product
    from tsotools.simulate import GrismParams, simulate_grism

    path = workdir / f"bench_spectra_{nints}_rateints.fits"
    if path.exists():
        return path
    seed = workdir / "bench_spectra_seed_rateints.fits"
    if not seed.exists():
        simulate_grism(workdir, GrismParams(seed=5, subarray="SUBGRISM256", nints=SIM_NINTS, ngroups=2),
                       prefix="bench_spectra_seed", truth=False, overwrite=True, products=["rateints"])
    with open_product(seed) as src:
        primary = src.header("PRIMARY")
        primary["NINTS"], primary["INTSTART"], primary["INTEND"] = nints, 1, nints
        times = src.read_table("INT_TIMES")
        step = float(times["int_mid_MJD_UTC"][1] - times["int_mid_MJD_UTC"][0])
        k = np.arange(nints)
        tab = Table({"integration_number": k + 1})
        for col in times.colnames[1:]:
            tab[col] = float(times[col][0]) + step * k
        names = [n for n in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE") if src.has(n)]
        specs = [ImageSpec(n, (nints,) + src.shape(n)[1:], src.dtype(n), src.header(n)) for n in names]
        specs.append(fits.BinTableHDU(tab, name="INT_TIMES"))
        with new_product(path, primary, specs, tool="simulate", overwrite=True, datamodel="CubeModel") as w:
            for i in range(nints):
                for n in names:
                    w.write(n, i, src.read(n, i % src.nints))
    return path


def warm_cache(path: Path) -> None:
    """Read the file once so that the measurement does not time the disk."""
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(16 * 2**20)
        while fh.readinto(buf):
            pass


def measure(path: Path, workdir: Path, method: str) -> dict:
    warm_cache(path)
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-c", _RUN, str(path), str(workdir / f"bench_{method}_x1dints.fits"), method],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load"] = max(load, os.getloadavg()[0])
    return res


def describe(res: dict, target: float) -> str:
    n, wall, cpu = res["nints"], res["seconds"], res["cpu_seconds"]
    return (f"{n} integrations in {wall:.1f} s = {n / wall:.1f} int/s (target >= {target:g}); "
            f"CPU {cpu:.1f} s = {n / cpu:.1f} int/s of CPU time; load average {res['load']:.1f} "
            f"on {os.cpu_count()} cores; peak RSS {res['peak_rss_mb']:.0f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("output"))
    parser.add_argument("--nints", type=int, default=1000)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    big = make_rateints(args.workdir, args.nints)
    small = make_rateints(args.workdir, max(args.nints // 4, 50))
    print(f"inputs: {big.name} ({big.stat().st_size / 1e9:.2f} GB), {small.name}; made or found in "
          f"{time.perf_counter() - t0:.0f} s")
    box = measure(big, args.workdir, "box")
    opt = measure(big, args.workdir, "optimal")
    box_small = measure(small, args.workdir, "box")
    rate_box = box["nints"] / box["seconds"]
    rate_opt = opt["nints"] / opt["seconds"]
    growth = box["peak_rss_mb"] - box_small["peak_rss_mb"]
    print(f"box:     {describe(box, TARGET_BOX)}")
    print(f"optimal: {describe(opt, TARGET_OPTIMAL)}")
    print(f"peak RSS {box_small['nints']} vs {box['nints']} integrations: {box_small['peak_rss_mb']:.0f} vs "
          f"{box['peak_rss_mb']:.0f} MB (growth {growth:+.0f} MB, target < {TARGET_RSS_GROWTH_MB:g})")
    ok = rate_box >= TARGET_BOX and rate_opt >= TARGET_OPTIMAL and growth < TARGET_RSS_GROWTH_MB
    print("PASS" if ok else "FAIL: a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
