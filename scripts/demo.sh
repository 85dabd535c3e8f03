#!/usr/bin/env bash
# make demo: simulate NIRCam TSO data, run every tsotools command on it, draw the plots,
# check them, and print a summary.
# Usage: scripts/demo.sh [OUTDIR]   (default demo-output; tsotools on PATH: make demo sees to that)
# Sizes: NINTS=40 GRISM_SUBARRAY=SUBGRISM64 scripts/demo.sh   (environment variables)
# README figures: DEMO_IMAGES=docs/images make demo  (copies each PNG there, 128 colours)
set -uo pipefail
out=${1:-demo-output}
nints=${NINTS:-40}
subarray=${GRISM_SUBARRAY:-SUBGRISM64}
rm -rf "$out"
mkdir -p "$out/json"
log="$out/demo.log"
names=(); results=()

step() {  # step NAME COMMAND...: run one command with --json, record ok / FAILED
    local name=$1; shift
    printf '  %-24s' "$name" >&2
    local js
    js=$(printf '%s/json/%02d_%s.json' "$out" "${#names[@]}" "${name// /_}")
    "$@" --json >"$js" 2>"$out/.err"
    local rc=$?
    names+=("$name")
    if [ "$rc" -eq 0 ]; then
        results+=("ok"); echo "ok" >&2
    else
        results+=("FAILED (exit $rc)"); echo "FAILED" >&2
        sed 's/^/      /' "$out/.err" >&2
    fi
    { echo "\$ $*"; cat "$out/.err"; } >>"$log"
}

g=$out/grism; i=$out/imaging; s=$out/guider
echo "tsotools demo in $out/ (log: $log)" >&2
step "simulate grism"        tsotools simulate grism -o "$g" --seed 1 --nints "$nints" --subarray "$subarray" -q
step "simulate imaging"      tsotools simulate imaging -o "$i" --seed 2 --nints "$nints" -q
step "simulate guider"       tsotools simulate guider -o "$s" --seed 3 --nints "$nints" --prefix gs -q
step "info"                  tsotools info "$g/grism_ramp.fits"

# grism: 1/f -> jumps -> rates -> tall cutout -> spectra
step "oneoverf"              tsotools oneoverf "$g/grism_ramp.fits" -o "$g/grism_1overf_ramp.fits" \
                                 --plot "$out/oneoverf.png" -q
step "rejump"                tsotools rejump "$g/grism_1overf_ramp.fits" -o "$g/grism_jump_ramp.fits" \
                                 --method two-point --sweep 4,5,6,8,10,15 --threshold 8 \
                                 --report "$out/jump_sweep.ecsv" \
                                 --plot "$out/jump_sweep.png" -q
step "rampfit"               tsotools rampfit "$g/grism_jump_ramp.fits" -o "$g/grism_clean_rateints.fits" -q
step "widen-cutout"          tsotools widen-cutout "$g/grism_clean_rateints.fits" -o "$g/grism_cutout.fits" \
                                 --wavelengths-from "$g/grism_calints.fits" -q
step "spectra"               tsotools spectra "$g/grism_cutout.fits" -o "$g/grism_x1dints.fits" \
                                 --white-light "$out/whitelight.ecsv" --lightcurves "$out/lightcurves.ecsv" \
                                 --bins 10 --noise-report "$out/noise.ecsv" --plot "$out/spectra.png" -q
step "plot lightcurve"       tsotools plot lightcurve "$out/whitelight.ecsv" -o "$out/lightcurve.png" --bin 4 -q
step "plot noise"            tsotools plot noise "$out/noise.ecsv" -o "$out/noise.png" -q
step "plot bins"             tsotools plot lightcurve "$out/lightcurves.ecsv" -o "$out/lightcurves.png" -q

# cutout height: the pipeline's 64 rows of a SUBGRISM256 exposure against the whole subarray
step "simulate SUBGRISM256"  tsotools simulate grism -o "$out/g256" --seed 4 --nints 4 --ngroups 3 \
                                 --subarray SUBGRISM256 --no-truth -q
step "widen-cutout 256"      tsotools widen-cutout "$out/g256/grism_rateints.fits" -o "$out/g256/grism_tall.fits" -q
step "plot frame cutout"     tsotools plot frame "$out/g256/grism_calints.fits" "$out/g256/grism_tall.fits" \
                                 -o "$out/cutout.png" -q

# weak-lens imaging: centroids -> photometry that follows them
step "plot frame imaging"    tsotools plot frame "$i/imaging_rateints.fits" -o "$out/imaging_frame.png" -q
step "centroid"              tsotools centroid "$i/imaging_rateints.fits" -o "$out/centroids.ecsv" \
                                 --plot "$out/centroids.png" -q
step "photometry"            tsotools photometry "$i/imaging_rateints.fits" -o "$out/photometry.ecsv" \
                                 --centroids "$out/centroids.ecsv" --radius auto --plot "$out/photometry.png" -q

# guide star: jitter and antenna moves on the science clock
step "jitter-from-guidestar" tsotools jitter-from-guidestar "$s"/gs_gs-fg_*_cal.fits \
                                 --science "$s/gs_rateints.fits" -o "$out/jitter.fits" --plot "$out/jitter.png" -q
rm -f "$out/.err"

echo
echo "tsotools demo summary ($out/)"
n_ok=0; n_fail=0
for k in "${!names[@]}"; do
    printf '  %-24s %s\n' "${names[$k]}" "${results[$k]}"
    case ${results[$k]} in ok) n_ok=$((n_ok + 1));; *) n_fail=$((n_fail + 1));; esac
done
# what each step reported (the "message" of its --json summary), and a check of the plots
python - "$out" <<'EOF'
import json, os, pathlib, sys

import numpy as np
from matplotlib.image import imread

out = pathlib.Path(sys.argv[1])
print("\nwhat they found:")
for path in sorted((out / "json").glob("*.json")):
    try:
        text = path.read_text().strip()
        summary = json.loads(text) if text else {}
    except ValueError:
        continue
    if isinstance(summary, dict) and summary.get("message"):
        print(f"  {path.stem[3:].replace('_', ' ')}: {summary['message']}")
print("\nplots:")
bad = 0
for name in ("lightcurve", "spectra", "jitter", "oneoverf", "jump_sweep", "noise", "lightcurves", "centroids",
             "photometry", "cutout", "imaging_frame"):
    png = out / f"{name}.png"
    if not png.exists():
        print(f"  {png}: MISSING"); bad += 1; continue
    img = imread(png)[..., :3]
    colours = len(np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0))
    ok = img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.05 and colours > 50
    bad += not ok
    print(f"  {png}  {img.shape[1]}x{img.shape[0]} px, {colours} colours, {png.stat().st_size // 1024} kB"
          + ("" if ok else "  BLANK?"))
images = os.environ.get("DEMO_IMAGES")  # DEMO_IMAGES=docs/images make demo: the README's figures
if images and not bad:
    from PIL import Image

    pathlib.Path(images).mkdir(parents=True, exist_ok=True)
    for png in sorted(out.glob("*.png")):
        target = pathlib.Path(images) / png.name
        img = Image.open(png).convert("RGB")
        for colours, scale in ((128, 1.0), (48, 1.0), (48, 0.8), (32, 0.65)):  # each under 150 kB
            small = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
            small.quantize(colors=colours).save(target, optimize=True)
            if target.stat().st_size < 150_000:
                break
        print(f"  copied to {target} ({target.stat().st_size // 1024} kB)")
sys.exit(1 if bad else 0)
EOF
plots_ok=$?
echo "  $n_ok ran, $n_fail failed; products in $out/"
[ "$n_fail" -eq 0 ] && [ "$plots_ok" -eq 0 ]
