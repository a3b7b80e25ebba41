#!/usr/bin/env bash
# Replay speed against Suricata on the same synthetic capture, side by side in one run,
# both pinned to one core (issue 12). Prints each run's wall time, CPU time and peak
# RSS, then the medians and the ratios. The `read` rows are the floor under both:
# `dd` reading the file's bytes once on the same core (page cache to /dev/null,
# nothing parsed), run before each tool; the summary says how much of rstwatch's time
# is above it and what the 20x target leaves for the work itself.
#
#   benches/replay_vs_suricata.sh [--runs N] [--cpu C] [--packets N] [--flows N]
#                                 [--workers N] [--keep DIR] [--keep-cache]
#
# Before each tool's run the capture's cached pages are dropped and it is read back
# (benches/page_cache.sh), so both tools start from the page cache a freshly read file
# leaves; --keep-cache only reads it, leaving whatever the host left.
#
# Needs: release builds of rstwatch-sensor and replay_capture
#   cargo build --release -p rstwatch-sensor -p rstwatch-benches --bin replay_capture
# and Suricata 7 (Debian bookworm-backports: `scripts/setup.sh --bench` installs it).
# Suricata runs with its packaged configuration and no rules (`-S /dev/null`),
# `--runmode single`; rstwatch writes every record as JSON lines to /dev/null.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
runs=5 cpu=1 packets=2000000 flows=50000 workers=1 keep="" cache=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --packets) packets=$2; shift 2 ;;
        --flows) flows=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --keep-cache) cache=(--keep); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
sensor="$here/target/release/rstwatch-sensor"
gen="$here/target/release/replay_capture"
for b in "$sensor" "$gen"; do
    [ -x "$b" ] || { echo "missing $b (cargo build --release -p rstwatch-sensor -p rstwatch-benches --bin replay_capture)" >&2; exit 1; }
done
command -v suricata >/dev/null || { echo "suricata is not installed (scripts/setup.sh --bench)" >&2; exit 1; }

work="${keep:-$(mktemp -d /tmp/replay-vs-suricata.XXXXXX)}"
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
cap="$work/capture-${packets}-${flows}.pcap"
[ -s "$cap" ] || "$gen" --packets "$packets" --flows "$flows" --out "$cap"

records=$("$sensor" replay --no-progress --stats "$cap" 2>"$work/stats" | wc -l)
echo "$(suricata -V | head -1); capture $(du -m "$cap" | cut -f1) MiB, $packets frames, $flows concurrent flows; rstwatch writes $records records"
# How replay's default (`--file-access auto`) took the file: mapped or read (a file of
# 128 MiB or more is mapped).
python3 - "$work/stats" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("rstwatch's file access: " + ("mapped" if s.get("files_mapped") else "read"))
PY
echo "cpu $cpu, $runs runs each, alternating; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# One timed run: "<wall s> <user+sys s> <peak RSS KiB>" (benches/timed.py: to the
# microsecond, where /usr/bin/time's hundredths are 5 % of a 0.2 s replay).
timed() {
    local t="$work/time"
    "$here/benches/timed.py" "$t" taskset -c "$cpu" "$@" >/dev/null 2>"$work/stderr" || {
        cat "$work/stderr" >&2; exit 1; }
    cat "$t"
}

sensor_cmd=("$sensor" replay --no-progress "$cap")
[ "$workers" -gt 1 ] && sensor_cmd=("$sensor" replay --no-progress --workers "$workers" "$cap")
printf '%-9s %4s %8s %8s %10s %12s\n' tool run wall_s cpu_s Mpps peak_rss_MiB
: >"$work/results"
# Each tool runs right after `dd`, so both start from the same state of the machine.
# The order matters: in two rounds at 06:18 UTC on 2026-12-02, rstwatch right after
# Suricata took 0.53-0.54 s (more of it system time), right after `dd` 0.44-0.47 s.
row() {
    local tool=$1 r=$2 w c m; shift 2
    read -r w c m < <(timed "$@")
    echo "$tool $w $c $m" >>"$work/results"
    printf '%-9s %4d %8.3f %8.3f %10.3f %12.1f\n' "$tool" "$r" "$w" "$c" "$(echo "$packets / $w / 1000000" | bc -l)" "$(echo "$m / 1024" | bc -l)"
}
for r in $(seq 1 "$runs"); do
    "$here/benches/page_cache.sh" "${cache[@]}" "$cap"
    row read "$r" dd if="$cap" of=/dev/null bs=1M status=none
    rm -rf "$work/suricata-log"; mkdir -p "$work/suricata-log"
    row suricata "$r" suricata -r "$cap" --runmode single -S /dev/null -k none -l "$work/suricata-log"
    "$here/benches/page_cache.sh" "${cache[@]}" "$cap"
    row read "$r" dd if="$cap" of=/dev/null bs=1M status=none
    row rstwatch "$r" "${sensor_cmd[@]}"
done

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$work/results" | median; }
sw=$(col suricata 2) rw=$(col rstwatch 2) sc=$(col suricata 3) rc=$(col rstwatch 3)
sm=$(col suricata 4) rm_=$(col rstwatch 4)
echo "median wall: suricata ${sw} s, rstwatch ${rw} s -> rstwatch is $(echo "scale=1; $sw / $rw" | bc -l)x faster ($(echo "scale=2; $packets / $rw / 1000000" | bc -l) Mpps)"
echo "median CPU:  suricata ${sc} s, rstwatch ${rc} s -> ratio $(echo "scale=1; $sc / $rc" | bc -l)"
fw=$(col read 2)
# The copy's rate says how busy the host's memory was: the ratio falls with it, since a
# third of rstwatch's time is the file's bytes streaming through the core and little of
# Suricata's is (benches/RESULTS.md, "Replay against Suricata follows the host's memory
# bandwidth").
echo "read floor:  $fw s (dd, $(echo "scale=1; $(stat -c %s "$cap") / $fw / 1000000000" | bc -l) GB/s); rstwatch spends $(echo "scale=2; $rw - $fw" | bc -l) s above it, $(echo "scale=0; ($rw - $fw) * 1000000000 / $packets" | bc -l) ns per frame; at 20x suricata it would have $(echo "scale=3; $sw / 20 - $fw" | bc -l) s, $(echo "scale=3; x = ($sw / 20 - $fw) * 1000000000 / $packets; scale=0; x / 1" | bc -l) ns per frame"
echo "peak RSS:    suricata $((sm / 1024)) MiB, rstwatch $((rm_ / 1024)) MiB -> rstwatch uses $(echo "scale=3; $rm_ / $sm" | bc -l) of suricata's"
