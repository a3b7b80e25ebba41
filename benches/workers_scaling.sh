#!/usr/bin/env bash
# How `replay --workers 2` scales on this machine, and what bounds it. Each round runs,
# one after the other on the same capture:
#   one    one engine pinned to core A (`replay`);
#   w2     `replay --workers 2` on cores A and B (one reader, two engines);
#   pair   two independent one-engine replays started together, one pinned to each
#          core: what the two cores give work that shares nothing but the machine;
#   split  `replay --workers 2` again, its threads' CPU read while it runs
#          (benches/timed.py --threads; a run of its own, so the polling does not
#          touch w2's time): the reader (the main thread) and each engine (rw-w0, rw-w1).
# Prints each round, then the medians: the speedup of w2 over one engine (wall), the
# CPU two workers use against one engine, the pair's slowdown against one engine
# alone (1.0: the cores scale perfectly), and the bound three threads on two cores
# put on w2: at best they halve the total CPU, so speedup <= 2 x one CPU / w2 CPU.
# From the split: the reader's and the busiest engine's CPU, and the bound on a
# machine with a core for every thread, where the busiest thread sets the pace:
# speedup <= one CPU / max(reader, engine).
#
#   benches/workers_scaling.sh --capture capture.pcap [--rounds 6] [--cores 0,1] [--file-access auto|read|map]
#
# --file-access is passed to every replay (default: replay's own, `auto`).
#
# Needs a release build of rstwatch-sensor (cargo build --release -p rstwatch-sensor).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sensor="$here/target/release/rstwatch-sensor"
rounds=6 cores=0,1 capture= access=()
while [ $# -gt 0 ]; do
    case "$1" in
        --capture) capture=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --file-access) access=(--file-access "$2"); shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$capture" ] || { echo "--capture FILE is required" >&2; exit 2; }
[ -r "$capture" ] || { echo "cannot read $capture" >&2; exit 2; }
[ -x "$sensor" ] || { echo "missing $sensor (cargo build --release -p rstwatch-sensor)" >&2; exit 2; }
a=${cores%,*} b=${cores#*,}
[ "$a" != "$b" ] || { echo "--cores needs two different cores, like 0,1" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One timed run into "$1": "<wall s> <user+sys s>".
timed() {
    local out=$1; shift
    "$here/benches/timed.py" "$out.t" "$@" >/dev/null
    read -r w c _ <"$out.t"
    echo "$w $c" >"$out"
}
echo "round  one: wall cpu   w2: wall cpu   pair: wall (core $a) wall (core $b)   split: reader rw-w0 rw-w1 (CPU s)"
for r in $(seq 1 "$rounds"); do
    # Into the page cache before each round: this VM's DAMON pages out file pages
    # untouched for ~6 s (benches/RESULTS.md, "The page cache erodes").
    cat "$capture" >/dev/null
    timed "$work/one" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" "$capture"
    timed "$work/w2" taskset -c "$cores" "$sensor" replay --no-progress "${access[@]}" --workers 2 "$capture"
    timed "$work/pa" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" "$capture" &
    timed "$work/pb" taskset -c "$b" "$sensor" replay --no-progress "${access[@]}" "$capture"
    wait
    cat "$capture" >/dev/null
    "$here/benches/timed.py" --threads "$work/threads" "$work/split.t" \
        taskset -c "$cores" "$sensor" replay --no-progress "${access[@]}" --workers 2 "$capture" >/dev/null
    # The main thread first, then rw-w0 and rw-w1 (the progress thread is off).
    split=$(cut -d' ' -f3 "$work/threads" | head -3 | tr '\n' ' ')
    line="$(cat "$work/one") $(cat "$work/w2") $(cut -d' ' -f1 "$work/pa") $(cut -d' ' -f1 "$work/pb") $split"
    echo "$line" >>"$work/rows"
    printf '%5d  %s\n' "$r" "$line"
done

python3 - "$work/rows" <<'EOF'
import statistics as st, sys
rows = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
one_w, one_c, w2_w, w2_c = ([r[i] for r in rows] for i in range(4))
pair = [max(r[4], r[5]) / r[0] for r in rows]
speedup = [o / w for o, w in zip(one_w, w2_w)]
cpu = [w / o for o, w in zip(one_c, w2_c)]
bound = [2 / c for c in cpu]
m = st.median
print(f"one engine: wall {m(one_w):.3f} s, CPU {m(one_c):.3f} s (medians)")
print(f"--workers 2: wall {m(w2_w):.3f} s, CPU {m(w2_c):.3f} s; speedup over one engine "
      f"{m(speedup):.2f}x (per round {min(speedup):.2f}-{max(speedup):.2f})")
print(f"two workers use {m(cpu):.2f}x one engine's CPU: three threads on two cores can "
      f"at best halve that, a bound of {m(bound):.2f}x")
print(f"two independent replays at once: the slower takes {m(pair):.2f}x one alone "
      f"(1.00: the cores scale perfectly)")
reader, e0, e1 = ([r[i] for r in rows] for i in (6, 7, 8))
busiest = [max(x, y) for x, y in zip(e0, e1)]
own_cores = [o / max(rd, e) for o, rd, e in zip(one_c, reader, busiest)]
print(f"threads of --workers 2: the reader {m(reader):.3f} s CPU ({m([rd / o for rd, o in zip(reader, one_c)]):.2f}x "
      f"one engine's), the busier engine {m(busiest):.3f} s; with a core for each thread the "
      f"busiest sets the pace, a bound of {m(own_cores):.2f}x")
EOF
