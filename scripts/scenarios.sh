#!/usr/bin/env bash
# Offline tour: generate every labelled scenario capture and replay each through the
# sensor engine, printing its RST events, flow records and anomalies. Needs no root.
#
#   scripts/scenarios.sh [OUTDIR]      (captures are kept in OUTDIR, default a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p rstwatch-sensor
bin=target/release/rstwatch-sensor
out="${1:-$(mktemp -d -t rstwatch-demo.XXXXXX)}"
mkdir -p "$out"
for s in refused abort idle-timeout after-fin injection blind-inwindow storm scan backscatter mixed; do
    "$bin" gen --scenario "$s" --out "$out/$s.pcap"
    echo
    echo "=== $s ($out/$s.pcap) ==="
    if [ "$s" = storm ] || [ "$s" = mixed ]; then
        # Thousands of records: show the anomalies and a sample of the RSTs.
        "$bin" replay --format table --only anomaly "$out/$s.pcap"
        "$bin" replay --format table --only rst "$out/$s.pcap" | head -n 15
        echo "... ($("$bin" replay --only rst "$out/$s.pcap" | wc -l) RST events in all)"
    else
        "$bin" replay --format table "$out/$s.pcap"
    fi
done
echo
echo "Captures are in $out; try: $bin replay $out/injection.pcap | jq 'select(.suspect)'"
