#!/usr/bin/env bash
# Ingest rate, single ClickHouse server vs the 2-shard x 2-replica cluster, same run:
# the same generated captures shipped by `rstwatch-sensor replay --ship` (default batch
# bounds, zstd, plain TCP on loopback) through one collector per target; ClickHouse,
# ZooKeeper and the collectors all on this machine (scripts/cluster-lib.sh).
# Reports records per second from the first frame to the last acknowledgement, and the
# rows that landed. Release binaries:
#   cargo build --release -p rstwatch-sensor -p rstwatch-collector
#   benches/ingest_cluster.sh [--scenario mixed|storm] [--flows N] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scenario=mixed
flows=20000
runs=3
while [ $# -gt 0 ]; do
    case "$1" in
        --flows) flows=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --scenario) scenario=$2; shift 2 ;;
        *) echo "usage: benches/ingest_cluster.sh [--scenario mixed|storm] [--flows N] [--runs N]" >&2; exit 2 ;;
    esac
done
t0=$(date +%s)
step() { echo "== ingest_cluster [$(( $(date +%s) - t0 )) s] $*" >&2; }
fail() { echo "ingest_cluster: $*" >&2; exit 1; }
sensor=$repo/target/release/rstwatch-sensor
collector=$repo/target/release/rstwatch-collector
[ -x "$sensor" ] && [ -x "$collector" ] || fail "build the release binaries first (see the header)"

source "$repo/scripts/cluster-lib.sh"
col_start 1 s1r1
col_start 2 single
start=$(date -u -d '-300 sec' +%Y-%m-%dT%H:%M:%SZ)
"$sensor" gen --scenario "$scenario" --flows "$flows" --start-time "$start" --out "$work/cap.pcap" 2>/dev/null
records=$("$sensor" replay "$work/cap.pcap" | wc -l)
echo "ClickHouse $(ch s1r1 -q 'SELECT version()'), $scenario scenario with --flows $flows: $records records per run, $(nproc) CPUs"
printf '%-8s %4s %10s %12s\n' target run seconds records/s
for r in $(seq "$runs"); do
    for target in single cluster; do
        port=${col_port[$([ $target = single ] && echo 2 || echo 1)]}
        ts=$(date +%s%N)
        "$sensor" replay "$work/cap.pcap" --ship "127.0.0.1:$port" --plaintext --token cluster-test \
            --sensor-id "bench-$target-$r" --spool-dir "$work/spool-$target-$r" >/dev/null 2>>"$work/bench-sensor.log" \
            || fail "$target run $r: not every batch acknowledged"
        ms=$(( ($(date +%s%N) - ts) / 1000000 ))
        printf '%-8s %4s %10.2f %12.0f\n' "$target" "$r" "$(echo "$ms/1000" | bc -l)" "$(echo "$records*1000/$ms" | bc -l)"
    done
done
for n in single s2r2; do
    echo "$n: rst_events $(ch "$n" --database rstwatch -q 'SELECT count() FROM rst_events'), flows $(ch "$n" --database rstwatch -q 'SELECT count() FROM flows') (through $([ $n = single ] && echo the tables || echo the Distributed tables))"
done
# Disk per million rows on the single server, after merges settle (compressed parts).
ch single -q "OPTIMIZE TABLE rstwatch.rst_events FINAL" >/dev/null 2>&1 || true
ch single -q "OPTIMIZE TABLE rstwatch.flows FINAL" >/dev/null 2>&1 || true
ch single -q "SELECT table, sum(rows) AS total_rows, round(sum(bytes) / sum(rows) * 1e6 / 1048576, 1) AS mib_per_million_rows
    FROM system.parts WHERE database = 'rstwatch' AND active AND table IN ('rst_events', 'flows', 'rst_minute')
    GROUP BY table ORDER BY table FORMAT PrettyCompactMonoBlock"
