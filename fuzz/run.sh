#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS (default 600), and prints one
# line per target: executions, coverage, and whether it found a crash.
#   fuzz/run.sh [SECONDS] [TARGET...]      (all targets when none is named)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crashes land
# in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (not committed).
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="artifacts/$t.log"
    mkdir -p artifacts
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if ((rc == 0)); then
        echo "$t: ${secs}s, ${runs:-?} runs, ${cov:-cov: ?}, no crash"
    else
        echo "$t: FAILED (exit $rc) after ${runs:-?} runs; see fuzz/$log and fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
