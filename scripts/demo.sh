#!/usr/bin/env bash
# make demo: simulate NIRCam TSO data, run every tsotools command on it, print a summary.
# Usage: scripts/demo.sh [OUTDIR]   (tsotools must be on PATH; make demo sees to that)
set -uo pipefail
out=${1:-demo-output}
rm -rf "$out"
mkdir -p "$out"
log="$out/demo.log"
declare -a names results

step() {  # step NAME COMMAND...: run one command, record ok / not built / FAILED
    local name=$1; shift
    printf '%-28s' "$name" >&2
    if "$@" >>"$log" 2>"$out/.err"; then
        names+=("$name"); results+=("ok"); echo "ok" >&2
    elif grep -q "is not built yet" "$out/.err"; then
        names+=("$name"); results+=("not built yet"); echo "not built yet" >&2
    else
        names+=("$name"); results+=("FAILED (see $log)"); echo "FAILED" >&2
        sed 's/^/    /' "$out/.err" >&2
    fi
    cat "$out/.err" >>"$log"
}

g=$out/grism; i=$out/imaging; s=$out/guider
step "simulate grism"          tsotools simulate grism -o "$g" --seed 1 --prefix grism
step "simulate imaging"        tsotools simulate imaging -o "$i" --seed 2 --prefix wlp8
step "simulate guider"         tsotools simulate guider -o "$s" --seed 3 --prefix gs
step "info"                    tsotools info "$g/grism_ramp.fits" "$g/grism_rateints.fits"

step "oneoverf (ramp)"         tsotools oneoverf "$g/grism_ramp.fits" -o "$g/grism_1overf_ramp.fits" --plot "$out/oneoverf.png"
step "rejump"                  tsotools rejump "$g/grism_1overf_ramp.fits" -o "$g/grism_jump_ramp.fits" --threshold 6
step "rejump --sweep"          tsotools rejump "$g/grism_1overf_ramp.fits" --sweep 4,5,6,8,10,15 --report "$out/jump_sweep.ecsv"
step "rampfit"                 tsotools rampfit "$g/grism_jump_ramp.fits" -o "$g/grism_clean_rateints.fits"
step "widen-cutout"            tsotools widen-cutout "$g/grism_clean_rateints.fits" -o "$g/grism_cutout.fits" --wavelengths-from "$g/grism_calints.fits"
step "spectra"                 tsotools spectra "$g/grism_cutout.fits" -o "$g/grism_x1dints.fits" --white-light "$out/whitelight.ecsv" --bins 20 --noise-report "$out/noise.ecsv" --plot "$out/noise.png"
step "centroid"                tsotools centroid "$i/wlp8_rateints.fits" -o "$out/centroids.ecsv"
step "photometry"              tsotools photometry "$i/wlp8_rateints.fits" -o "$out/photometry.ecsv" --centroids "$out/centroids.ecsv" --radius auto
step "jitter-from-guidestar"   tsotools jitter-from-guidestar "$s"/*_gs-fg_*_cal.fits --science "$s/gs_rateints.fits" -o "$out/jitter.fits" --plot "$out/jitter.png"
rm -f "$out/.err"

echo
echo "tsotools demo summary ($out)"
n_ok=0; n_fail=0
for k in "${!names[@]}"; do
    printf '  %-28s %s\n' "${names[$k]}" "${results[$k]}"
    case ${results[$k]} in ok) n_ok=$((n_ok + 1));; FAILED*) n_fail=$((n_fail + 1));; esac
done
echo "  $n_ok ran, $n_fail failed; products in $out/ (log: $log)"
pngs=$(find "$out" -name '*.png' | sort)
[ -n "$pngs" ] && echo "  plots:" && echo "$pngs" | sed 's/^/    /'
[ "$n_fail" -eq 0 ]
