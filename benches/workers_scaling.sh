#!/usr/bin/env bash
# How `replay --workers 2` scales on this machine, and what bounds it. Each round runs,
# one after the other on the same capture:
#   one    one engine pinned to core A (`replay`);
#   w2     `replay --workers 2` on cores A and B (the reader's thread and one worker
#          thread, running two engines);
#   pair   two independent one-engine replays started together, one pinned to each
#          core: what the two cores give work that shares nothing but the machine;
#   split  `replay --workers 2` again, its threads' CPU read while it runs
#          (benches/timed.py --threads; a run of its own, so the polling does not
#          touch w2's time): the main thread (it reads, and runs engines' batches
#          while it may queue no more) and the worker thread (rw-w0);
#   solo   `replay --workers 2` with all three threads on core A: the CPU the parallel
#          path costs on one core (the reader's walk, hash and hand-over, two engines'
#          tables), with nothing moving between cores and no second core contending;
#   halves the capture split by the same flow hash into two files, the flows of one
#          engine each (target/release/split_capture, once, before the rounds), replayed
#          at once by two one-engine replays, one a core: the work split with no
#          reader, no hand-over and nothing shared but the machine. Each half also
#          pays a process's start (~5 ms here) that `--workers 2` pays once, so on a
#          busy host `--workers 2` can come out ahead of it.
# Prints each round, then the medians: the speedup of w2 over one engine (wall), the
# CPU two workers use against one engine, the pair's slowdown against one engine
# alone (1.0: the cores scale perfectly), and the bound two cores put on w2: at best
# they halve the total CPU, so speedup <= 2 x one CPU / w2 CPU. From the split: each
# thread's CPU and how busy the two cores were (the threads' CPU over twice the wall).
# From solo: how w2's extra CPU splits into the path's own cost (solo / one) and what
# running on two cores adds to it (w2 / solo: the cores contending for memory, as the
# pair shows, and each frame's lines moving from the reader's core to an engine's).
# From halves: the perfect split's speedup over one engine (what two cores give this
# work here when nothing is shared), and how much of it --workers 2 reaches.
#
#   benches/workers_scaling.sh --capture capture.pcap [--rounds 6] [--cores 0,1] [--file-access auto|read|map] [--keep-cache]
#
# --file-access is passed to every replay (default: replay's own, `auto`). Before each
# round (and before the split and solo runs) the capture's cached pages are dropped and
# it is read back, so every round starts from the same page cache; --keep-cache only
# reads it (benches/page_cache.sh says why that matters).
#
# Needs release builds of rstwatch-sensor and split_capture (cargo build --release -p
# rstwatch-sensor -p rstwatch-benches), and room in $TMPDIR for a copy of the capture.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sensor="$here/target/release/rstwatch-sensor"
rounds=6 cores=0,1 capture= access=() cache=()
while [ $# -gt 0 ]; do
    case "$1" in
        --capture) capture=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --file-access) access=(--file-access "$2"); shift 2 ;;
        --keep-cache) cache=(--keep); shift ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$capture" ] || { echo "--capture FILE is required" >&2; exit 2; }
[ -r "$capture" ] || { echo "cannot read $capture" >&2; exit 2; }
[ -x "$sensor" ] || { echo "missing $sensor (cargo build --release -p rstwatch-sensor)" >&2; exit 2; }
splitter="$here/target/release/split_capture"
[ -x "$splitter" ] || { echo "missing $splitter (cargo build --release -p rstwatch-benches)" >&2; exit 2; }
a=${cores%,*} b=${cores#*,}
[ "$a" != "$b" ] || { echo "--cores needs two different cores, like 0,1" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The two engines' shares of the capture, for the halves.
"$splitter" --parts 2 --out "$work/half" "$capture" >/dev/null
# One timed run into "$1": "<wall s> <user+sys s>".
timed() {
    local out=$1; shift
    "$here/benches/timed.py" "$out.t" "$@" >/dev/null
    read -r w c _ <"$out.t"
    echo "$w $c" >"$out"
}
echo "round  one: wall cpu   w2: wall cpu   pair: wall (core $a) wall (core $b)   split: wall, main rw-w0 (CPU s)   solo: wall cpu   halves: wall (core $a) wall (core $b)"
for r in $(seq 1 "$rounds"); do
    # Into the page cache before each round, the same way each time: this VM's DAMON
    # pages out file pages untouched for ~6 s (benches/page_cache.sh).
    "$here/benches/page_cache.sh" "${cache[@]}" "$capture"
    timed "$work/one" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" "$capture"
    timed "$work/w2" taskset -c "$cores" "$sensor" replay --no-progress "${access[@]}" --workers 2 "$capture"
    timed "$work/pa" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" "$capture" &
    timed "$work/pb" taskset -c "$b" "$sensor" replay --no-progress "${access[@]}" "$capture"
    wait
    "$here/benches/page_cache.sh" "${cache[@]}" "$capture"
    "$here/benches/timed.py" --threads "$work/threads" "$work/split.t" \
        taskset -c "$cores" "$sensor" replay --no-progress "${access[@]}" --workers 2 "$capture" >/dev/null
    # The run's wall time, then the main thread and rw-w0 (the progress thread is off).
    split="$(cut -d' ' -f1 "$work/split.t") $(cut -d' ' -f3 "$work/threads" | head -2 | tr '\n' ' ')"
    "$here/benches/page_cache.sh" "${cache[@]}" "$capture"
    timed "$work/solo" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" --workers 2 "$capture"
    "$here/benches/page_cache.sh" "${cache[@]}" "$work/half-0.pcap"
    "$here/benches/page_cache.sh" "${cache[@]}" "$work/half-1.pcap"
    timed "$work/ha" taskset -c "$a" "$sensor" replay --no-progress "${access[@]}" "$work/half-0.pcap" &
    timed "$work/hb" taskset -c "$b" "$sensor" replay --no-progress "${access[@]}" "$work/half-1.pcap"
    wait
    line="$(cat "$work/one") $(cat "$work/w2") $(cut -d' ' -f1 "$work/pa") $(cut -d' ' -f1 "$work/pb") $split$(cat "$work/solo") $(cut -d' ' -f1 "$work/ha") $(cut -d' ' -f1 "$work/hb")"
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
print(f"two workers use {m(cpu):.2f}x one engine's CPU: two cores can at best halve "
      f"that, a bound of {m(bound):.2f}x")
print(f"two independent replays at once: the slower takes {m(pair):.2f}x one alone "
      f"(1.00: the cores scale perfectly)")
split_w, main, w0 = ([r[i] for r in rows] for i in (6, 7, 8))
busy = [(x + y) / (2 * w) for w, x, y in zip(split_w, main, w0)]
print(f"threads of --workers 2: the main thread {m(main):.3f} s CPU (it reads, and runs "
      f"batches while it may queue no more), rw-w0 {m(w0):.3f} s; the two cores busy "
      f"{100 * m(busy):.0f} % of the run")
solo = [r[10] / r[1] for r in rows]
second = [r[3] / r[10] for r in rows]
print(f"--workers 2 on one core uses {m(solo):.2f}x one engine's CPU (the path's own cost); "
      f"on two cores {m(second):.2f}x that again (what the second core costs)")
halves = [o / max(r[11], r[12]) for o, r in zip(one_w, rows)]
reach = [s / h for s, h in zip(speedup, halves)]
print(f"a perfect split (the two engines' halves of the capture, one replay a core, at once): "
      f"{m(halves):.2f}x one engine (per round {min(halves):.2f}-{max(halves):.2f}), what "
      f"two cores give this work sharing nothing; --workers 2 reaches {m(reach):.2f} of it")
EOF
