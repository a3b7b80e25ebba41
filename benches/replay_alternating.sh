#!/usr/bin/env bash
# Compares builds of rstwatch-sensor on one capture, alternating: each round runs every
# build once (`replay --no-progress CAPTURE > /dev/null`, pinned to one core), so a
# change in the machine's load falls on all of them alike. Prints each build's median
# CPU time (user + system: on a shared VM the wall time of a pinned run also counts the
# time it waited for its core) and, for each build after the first, in how many rounds
# it was faster than the first and the median of its per-round ratio to it.
#
#   benches/replay_alternating.sh --capture capture.pcap --rounds 12 old/rstwatch-sensor new/rstwatch-sensor
#
# Options: --capture FILE (required), --rounds N (10), --cpu C (1), --workers N (1; with
# more than one the runs are not pinned, and the ratio compares CPU used, not wall),
# --file-access auto|read|map (auto), passed to every run; --keep-cache: read the
# capture into the page cache before each run as it is, instead of dropping its pages
# and reading it back (benches/page_cache.sh says why that matters).
set -euo pipefail

rounds=10 cpu=1 workers=1 capture= access=auto cache=()
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --capture) capture=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --file-access) access=$2; shift 2 ;;
        --keep-cache) cache=(--keep); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) bins+=("$1"); shift ;;
    esac
done
[ -n "$capture" ] || { echo "--capture FILE is required" >&2; exit 2; }
[ ${#bins[@]} -ge 1 ] || { echo "name at least one rstwatch-sensor binary" >&2; exit 2; }
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done

pin=(taskset -c "$cpu")
[ "$workers" -gt 1 ] && pin=()
results=$(mktemp)
trap 'rm -f "$results" "$results.t"' EXIT
for r in $(seq 1 "$rounds"); do
    for i in "${!bins[@]}"; do
        # Into the page cache right before each run, the same way each time: this
        # VM's DAMON pages out file pages untouched for ~6 s (benches/page_cache.sh).
        "$(dirname "$0")/page_cache.sh" "${cache[@]}" "$capture"
        "$(dirname "$0")/timed.py" "$results.t" "${pin[@]}" "${bins[$i]}" replay \
            --no-progress --workers "$workers" --file-access "$access" "$capture" >/dev/null
        read -r wall cpu rss <"$results.t"
        echo "$i $r $wall $cpu $rss" >>"$results"
    done
done

python3 - "$results" "${bins[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
bins = sys.argv[2:]
cpu = {i: [float(r[3]) for r in rows if int(r[0]) == i] for i in range(len(bins))}
wall = {i: [float(r[2]) for r in rows if int(r[0]) == i] for i in range(len(bins))}
rss = {i: [int(r[4]) for r in rows if int(r[0]) == i] for i in range(len(bins))}
for i, b in enumerate(bins):
    print(f"{b}: CPU median {statistics.median(cpu[i]):.3f} s ({min(cpu[i]):.3f}-{max(cpu[i]):.3f}), "
          f"wall median {statistics.median(wall[i]):.3f} s, peak RSS {max(rss[i]) // 1024} MiB")
for i, b in enumerate(bins[1:], 1):
    ratios = [y / x for x, y in zip(cpu[0], cpu[i])]
    faster = sum(1 for q in ratios if q < 1)
    print(f"{b} against {bins[0]}: faster in {faster} of {len(ratios)} rounds, "
          f"median CPU ratio {statistics.median(ratios):.3f}")
EOF
