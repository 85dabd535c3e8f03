#!/usr/bin/env bash
# Run every benchmark in benchmarks/ (make bench). Each prints its figures and exits
# non-zero when a target is missed. Data go to benchmarks/output/ (ignored by git).
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p output
status=0
for bench in bench_*.py; do
    echo "=== $bench"
    python "$bench" --workdir output || status=1
done
exit $status
