#!/usr/bin/env bash
# Run every benchmark in benchmarks/ (make bench). Each prints its figures and exits
# non-zero when a target is missed.
#
# The benchmarks simulate and write GB of data (bench_spectra 13 GB). By default each one
# works in a temporary directory under benchmarks/, removed when it ends; set
# BENCH_WORKDIR=DIR to work in DIR instead and keep the files (about 23 GB), so that a
# rerun reuses the simulated inputs.
set -uo pipefail
cd "$(dirname "$0")"
keep=${BENCH_WORKDIR:-}
[ -n "$keep" ] && mkdir -p "$keep"
work=
trap '[ -z "$keep" ] && [ -n "$work" ] && rm -rf "$work"' EXIT
status=0
for bench in bench_*.py; do
    echo "=== $bench"
    work=${keep:-$(mktemp -d "$PWD/output.XXXXXX")}
    python "$bench" --workdir "$work" || status=1
    [ -z "$keep" ] && rm -rf "$work"
done
exit $status
