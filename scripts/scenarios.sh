#!/usr/bin/env bash
# Offline tour: generate every labelled scenario capture and replay each through the
# sensor engine, printing its RST events, flow records and anomalies, then how the
# sensor's causes compare with the generator's labels (one line per scenario). Needs no
# root; the comparison needs jq.
#
#   scripts/scenarios.sh [OUTDIR]      (captures are kept in OUTDIR, default a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p rstwatch-sensor
bin=target/release/rstwatch-sensor
out="${1:-$(mktemp -d -t rstwatch-demo.XXXXXX)}"
mkdir -p "$out"
scenarios="refused abort idle-timeout after-fin injection blind-inwindow storm scan backscatter
    server-overload vip-failover reboot connect-race keepalive-race write-after-close
    unread-close middlebox app-abort mixed"
for s in $scenarios; do
    "$bin" gen --scenario "$s" --out "$out/$s.pcap" --labels "$out/$s.labels.jsonl"
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
if command -v jq > /dev/null; then
    echo "=== causes: RSTs whose sensor cause matches the label ==="
    for s in $scenarios; do
        # Key an RST by timestamp, four-tuple and seq, as the labels are.
        key='[.ts, .src, .sport, .dst, .dport, .seq] | map(tostring) | join(" ")'
        "$bin" replay --only rst "$out/$s.pcap" | jq -r "($key) + \" \" + .cause" | sort > "$out/$s.got"
        jq -r "($key) + \" \" + .cause" "$out/$s.labels.jsonl" | sort > "$out/$s.want"
        total=$(wc -l < "$out/$s.want")
        same=$(comm -12 "$out/$s.got" "$out/$s.want" | wc -l)
        printf '  %-18s %5d of %5d  (labelled: %s)\n' "$s" "$same" "$total" \
            "$(awk '{print $NF}' "$out/$s.want" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//')"
    done
fi
echo
echo "Captures are in $out; try: $bin replay $out/injection.pcap | jq 'select(.suspect)'"
