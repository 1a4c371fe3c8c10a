#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md and prints what the write-up needs.
#
#   benches/run_load.sh            # load bench only (one command: cargo bench --manifest-path loadbench/Cargo.toml)
#   benches/run_load.sh --all      # plus the interleaved verify ratios (and replay 1 vs 2 threads) and the criterion suites
#                                  # (verify, outbound_broker, inbound),
#                                  # then a table of the criterion medians
#   benches/run_load.sh --wrk      # the load bench a second time with wrk as the load generator
#                                  # (ZSP_LOAD_GEN=wrk; needs wrk on PATH, Debian: apt-get install wrk);
#                                  # combines with --all
#
# Knobs for the load bench (defaults in brackets): ZSP_LOAD_SECS [3], ZSP_LOAD_ROUNDS [5],
# ZSP_LOAD_CONNS [32], ZSP_LOAD_WARMUP_SECS [1], ZSP_LOAD_VARIANTS [1,2,...,17; 14 only with ZSP_REDIS_URL],
# ZSP_LOAD_SERVER_CPU [0], ZSP_LOAD_CLIENT_CPU [1], ZSP_LOAD_ANCHORS [1; 0 runs (1) once a round], ZSP_LOAD_SINGLE_USE_RATE [25000], ZSP_LOAD_DPOP_RATE [10000],
# ZSP_LOAD_SERVER_WRAP [none; a command prefix for the servers, e.g. "valgrind --tool=callgrind"].
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
all=0
with_wrk=0
for arg in "$@"; do
    case "$arg" in
        --all) all=1 ;;
        --wrk) with_wrk=1 ;;
        *) echo "usage: $0 [--all] [--wrk]" >&2; exit 2 ;;
    esac
done
if [[ $with_wrk == 1 ]] && ! command -v wrk >/dev/null 2>&1; then
    echo "--wrk: wrk is not on PATH (Debian: apt-get install wrk)" >&2
    exit 2
fi

# Share of both CPUs' time the hypervisor stole since the last `stolen` call (/proc/stat's
# steal column, in USER_HZ = 100 ticks a second): each phase's line says how much of its
# weather was other guests.
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
last_steal=$(steal_ticks)
last_time=$(date +%s)
# Sets `share`; called directly, not in $(…), so that the new baseline outlives the call.
stolen() {
    local now_steal now_time
    now_steal=$(steal_ticks)
    now_time=$(date +%s)
    share=$(awk -v s=$((now_steal - last_steal)) -v t=$((now_time - last_time)) -v n="$(nproc)" \
        'BEGIN { printf "%.1f %%", (t > 0 ? 100 * s / (100 * t * n) : 0) }')
    last_steal=$now_steal
    last_time=$now_time
}

echo "== $(date -u '+%F %T UTC') load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --manifest-path loadbench/Cargo.toml
stolen
echo "== $(date -u '+%F %T UTC') load after load bench: $(cut -d' ' -f1-3 /proc/loadavg); stolen during it: $share"
if [[ $with_wrk == 1 ]]; then
    ZSP_LOAD_GEN=wrk cargo bench --manifest-path loadbench/Cargo.toml
    stolen
    echo "== $(date -u '+%F %T UTC') load after the wrk load bench: $(cut -d' ' -f1-3 /proc/loadavg); stolen during it: $share"
fi

if [[ $all == 1 ]]; then
    # One feature set for all, so nothing is rebuilt between them.
    cargo bench --features audit-layer --bench verify_interleaved
    cargo bench --features audit-layer --bench verify -- --warm-up-time 1 --measurement-time 3
    cargo bench --features audit-layer --bench outbound_broker -- --warm-up-time 1 --measurement-time 3
    cargo bench --features audit-layer --bench inbound -- --warm-up-time 1 --measurement-time 3
    stolen
    echo "== $(date -u '+%F %T UTC') load after criterion: $(cut -d' ' -f1-3 /proc/loadavg); stolen during the verify runs and criterion: $share"
    # Criterion medians (point estimate of the median, ns) from target/criterion.
    python3 - <<'EOF'
import json, pathlib
root = pathlib.Path("target/criterion")
for est in sorted(root.glob("*/*/new/estimates.json")):
    name = "/".join(est.parts[2:-2])
    d = json.loads(est.read_text())
    print(f"{name:55s} median {d['median']['point_estimate']:12.1f} ns")
EOF
fi
