#!/usr/bin/env bash
# The ClickHouse cluster test (part of scripts/test.sh, so CI runs it): loopback only.
#   ZooKeeper (Debian's) + four ClickHouse servers (Debian's 18.16): cluster `rw`,
#   2 shards x 2 replicas; `rstwatch-collector migrate --cluster rw` on one node.
#   Two collectors (one on s1r1, one on s1r2), two sensors (`replay --ship a,b`, small
#   batches), each naming both collectors, in opposite orders. Mid-stream: collector 1
#   is killed (SIGKILL) and restarted, and replica s2r1 is killed and restarted; sensor 1
#   fails over to collector 2 and resends what collector 1 had not acknowledged.
#   Afterwards, through the Distributed tables: every batch in the ledger exactly once,
#   each table's rows per batch equal to the ledger's counts, totals equal to what
#   `replay` prints offline, and every canonical query (schema/queries/) gives the same
#   answer as a single server fed the same captures. Then a first `migrate --cluster`
#   killed midway completes when run again; last, with ZooKeeper stopped, `migrate
#   --cluster` is refused with a clear error before it sends any DDL.
# Everything it starts is stopped and its temp dir removed. Prints timings.
#   scripts/test-cluster.sh [--flows N]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
flows=3000
[ "${1:-}" = --flows ] && flows=$2
t0=$(date +%s)
step() { echo "== test-cluster [$(( $(date +%s) - t0 )) s] $*"; }
fail() { echo "test-cluster: $*" >&2; exit 1; }

cargo build -q -p rstwatch-sensor -p rstwatch-collector
sensor=$repo/target/debug/rstwatch-sensor
collector=$repo/target/debug/rstwatch-collector

source "$repo/scripts/cluster-lib.sh"
step "two collectors (on s1r1 and s1r2)"
col_start 1 s1r1
col_start 2 s1r2

# Captures that start two minutes ago: the canonical queries look at recent windows.
start=$(date -u -d '-120 sec' +%Y-%m-%dT%H:%M:%SZ)
for i in 1 2; do
    "$sensor" gen --scenario mixed --seed "$i" --flows "$flows" --start-time "$start" \
        --out "$work/cap$i.pcap" 2>/dev/null
done
ship() { # sensor-index collector-address(es) spool
    "$sensor" replay "$work/cap$1.pcap" --ship "$2" --plaintext --token cluster-test \
        --sensor-id "sensor-$1" --spool-dir "$3" --batch-max-events 100 --ship-timeout-secs 120 \
        > /dev/null 2>>"$work/sensor$1.log"
}
step "sensors ship; collector 1 and replica s2r1 are killed and restarted mid-stream"
ts=$(date +%s%N)
col() { echo "127.0.0.1:${col_port[$1]}"; }
ship 1 "$(col 1),$(col 2)" "$work/spool1" & pid[sensor1]=$!
ship 2 "$(col 2),$(col 1)" "$work/spool2" & pid[sensor2]=$!
stored_more_than() { # collector-index n: its metrics say more than n batches stored
    local m
    m=$(sed -n 's/.*metrics on http:\/\/\([^/]*\).*/\1/p' "$work/collector$1.log" | tail -n 1)
    [ "$(curl -s "http://$m/metrics" | awk '/^rstwatch_collector_batches_stored_total/{print $2}')" -gt "$2" ]
}
wait_for "first batches stored by collector 1" 60 stored_more_than 1 5
kill -KILL "${pid[col1]}"; echo "   collector 1 killed"
kill -KILL "${pid[s2r1]}"; echo "   replica s2r1 killed"
# Collector 1 comes back only once sensor 1 has failed over (or, on a very fast run,
# had already finished), so the failover path is what this run exercises.
failed_over_or_done() {
    grep -q "failing over from collector" "$work/sensor1.log" || ! kill -0 "${pid[sensor1]}" 2>/dev/null
}
wait_for "sensor 1 failing over to collector 2" 60 failed_over_or_done
if grep -q "failing over from collector" "$work/sensor1.log"; then
    echo "   sensor 1 failed over to collector 2"
else
    echo "   sensor 1 had finished before the kill: no failover this run"
fi
col_start 1 s1r1; echo "   collector 1 restarted"
sleep 2
# What a kill during an insert can leave behind, made certain: parts ZooKeeper never
# heard of, here copies of every part of s2r1's ledger table (two each: two thirds of
# its rows are then unknown, which ClickHouse's default refuses to start with). With
# the cluster's merge_tree setting (cluster-lib.sh, the clickhouse role) the replica
# starts, sets them aside in detached/, and the checks below find no row twice.
ledger=$work/s2r1/data/data/rstwatch/batches_local
injected=0
for part in "$ledger"/*_*_*_*; do
    [ -d "$part" ] || continue
    name=$(basename "$part")
    [[ $name =~ ^[0-9a-z]+_[0-9]+_[0-9]+_[0-9]+$ ]] || continue
    prefix=${name%_*_*_*}
    for k in 1 2; do
        block=$((900000 + injected)); injected=$((injected + 1))
        cp -r "$part" "$ledger/${prefix}_${block}_${block}_0"
    done
done
[ "$injected" -gt 0 ] || fail "no part of batches_local on s2r1 to copy"
echo "   $injected parts unknown to ZooKeeper put into s2r1's batches_local"
# A replica killed with -9 can take long to come back on a loaded machine (it checks
# its parts and re-registers in ZooKeeper); once, in CI, more than 60 s. Wait longer,
# and when it still does not answer, show why.
ch_start s2r1
if ! (wait_for "ClickHouse s2r1 back" 180 ch s2r1 -q "SELECT 1"); then
    tail -n 20 "$work/s2r1/err.log" "$work/s2r1/stdout.log" >&2 || true
    fail "ClickHouse s2r1 did not come back within 180 s after its kill -9"
fi
echo "   replica s2r1 restarted"
# Each injected part by its own block number (900000 and up; a pattern such as
# *_9000*_* misses 900100 and above once more than 100 parts were injected).
set_aside=0
for ((b = 900000; b < 900000 + injected; b++)); do
    if compgen -G "$ledger/detached/*_${b}_${b}_0" >/dev/null; then
        set_aside=$((set_aside + 1))
    fi
done
[ "$set_aside" = "$injected" ] || fail "s2r1 set aside $set_aside of the $injected unknown parts"
echo "   s2r1 set the $injected unknown parts aside (detached)"
wait "${pid[sensor1]}" || fail "sensor 1 did not get every batch acknowledged: $(tail -n 3 "$work/sensor1.log")"
wait "${pid[sensor2]}" || fail "sensor 2 did not get every batch acknowledged: $(tail -n 3 "$work/sensor2.log")"
cluster_ms=$(( ($(date +%s%N) - ts) / 1000000 ))
grep -h "shipped" "$work"/sensor*.log | sed 's/^/   /'

step "the same captures into the single server"
col_start 3 single
ts=$(date +%s%N)
ship 1 "$(col 3)" "$work/spool1s"
ship 2 "$(col 3)" "$work/spool2s"
single_ms=$(( ($(date +%s%N) - ts) / 1000000 ))

step "checks (through the Distributed tables, read on s2r2)"
q() { ch "$1" --database rstwatch -q "$2"; }
# Replication is asynchronous: wait until every replica has fetched what its peer wrote
# (a replica that was down catches up here), then the two replicas of a shard agree.
synced() {
    local n
    for n in s1r1 s1r2 s2r1 s2r2; do
        [ "$(q "$n" "SELECT sum(queue_size) + sum(inserts_in_queue) FROM system.replicas WHERE database = 'rstwatch'")" = 0 ] || return 1
    done
}
wait_for "replicas in sync" 120 synced
for t in rst_events flows anomalies sensor_stats batches rst_minute; do
    for s in 1 2; do
        a=$(q "s${s}r1" "SELECT count() FROM ${t}_local"); b=$(q "s${s}r2" "SELECT count() FROM ${t}_local")
        [ "$a" = "$b" ] || fail "shard $s: ${t}_local has $a rows on s${s}r1, $b on s${s}r2"
    done
done
echo "   replicas agree on every table"
# Every batch once in the ledger; rows per batch as the ledger says.
dup=$(q s2r2 "SELECT count() FROM (SELECT sensor_id, boot_id, seq, count() AS n FROM batches GROUP BY sensor_id, boot_id, seq HAVING n > 1)")
[ "$dup" = 0 ] || fail "$dup batches in the ledger more than once"
for t in "rst_events rst" "flows flows" "anomalies anomalies" "sensor_stats stats"; do
    set -- $t
    bad=$(q s2r2 "SELECT count() FROM (SELECT sensor_id, boot_id, seq, $2 AS want FROM batches) ALL LEFT JOIN (SELECT sensor_id, boot_id, batch_seq AS seq, count() AS got FROM $1 GROUP BY sensor_id, boot_id, seq) USING (sensor_id, boot_id, seq) WHERE got != want")
    if [ "$bad" != 0 ]; then
        q s2r2 "SELECT sensor_id, seq, want, got FROM (SELECT sensor_id, boot_id, seq, $2 AS want FROM batches) ALL LEFT JOIN (SELECT sensor_id, boot_id, batch_seq AS seq, count() AS got FROM $1 GROUP BY sensor_id, boot_id, seq) USING (sensor_id, boot_id, seq) WHERE got != want ORDER BY sensor_id, seq LIMIT 10" >&2
        fail "$1: $bad batches whose rows differ from the ledger (sensor, seq, ledger, rows)"
    fi
    c=$(q s2r2 "SELECT count() FROM $1"); s=$(q single "SELECT count() FROM $1")
    echo "   $1: cluster $c rows, single server $s rows, every batch exactly once"
    [ "$1" = sensor_stats ] || [ "$c" = "$s" ] || fail "$1: cluster $c rows, single $s"
done
want=0
for i in 1 2; do want=$((want + $("$sensor" replay "$work/cap$i.pcap" | grep -c '"type":"rst"'))); done
got=$(q s2r2 "SELECT count() FROM rst_events")
[ "$got" = "$want" ] || fail "rst_events: $got rows, replay prints $want RSTs"
echo "   rst_events equals replay's $want RSTs; shard 1 holds $(q s1r2 "SELECT count() FROM rst_events_local"), shard 2 $(q s2r2 "SELECT count() FROM rst_events_local")"
# The cookbook's parameters bound as literals (18.16 has no query parameters): the
# last day up to an hour ahead, every sensor and port.
qfrom=$(( $(date +%s) - 86400 )); qto=$(( $(date +%s) + 3600 ))
# Rollup parts the killed replica set aside at its restart (reported, not failed: the
# collector restores what they held; README "The rollups after a replica crash").
rollup_set_aside=""
for d in "$work"/s2r1/data/data/rstwatch/{rst_minute,rst_minute_cause,rst_hour}_local/detached/*; do
    [ -e "$d" ] && rollup_set_aside+=" $(basename "$(dirname "$(dirname "$d")")")/$(basename "$d")"
done
# A replica killed mid-insert can leave a batch's raw part written and some of its
# rollup parts not; the resent batch finds its raw rows, and the collector restores the
# rollups' shortfall (collector/src/ch/repair.rs). Shown, then each rollup must sum to
# rst_events exactly, on both sides.
restored=$(cat "$work"/collector*.log | grep -c "failed part-way; restored" || true)
completed=$(cat "$work"/collector*.log | grep -c "from an INSERT cut short" || true)
waited=$(cat "$work"/collector*.log | grep -c "batches still running" || true)
echo "   rollups restored by the collectors: $restored times; batches an INSERT cut short left in part: $completed; waits for a write still running: $waited; rollup parts set aside:${rollup_set_aside:- none}"
cat "$work"/collector*.log | grep -h "failed part-way; restored\|from an INSERT cut short" | sed 's/^/     /' || true
raw_c=$(q s2r2 "SELECT count() FROM rst_events"); raw_s=$(q single "SELECT count() FROM rst_events")
for r in rst_minute rst_minute_cause rst_hour; do
    s=$(q single "SELECT sum(rsts) FROM $r")
    [ "$s" = "$raw_s" ] || fail "single server: $r sums $s RSTs, rst_events holds $raw_s"
    c=$(q s2r2 "SELECT sum(rsts) FROM $r")
    [ "$c" = "$raw_c" ] || fail "cluster: $r sums $c RSTs, rst_events holds $raw_c (restored $restored times)"
done
echo "   each rollup sums to rst_events' $raw_c RSTs"
for f in schema/queries/*.sql; do
    name=$(basename "$f" .sql)
    bound=$("$collector" print-schema --server-version 18.16 --queries --query "$name" --from "$qfrom" --to "$qto")
    # Not compared: sensor_health's times (when each side received its batches) and
    # suspected_injections' flow_uid (a per-process hash of the flow).
    cols=1-
    [ "$name" = sensor_health ] && cols=1,3-11,14
    [ "$name" = suspected_injections ] && cols=1-16
    a=$(ch s1r2 --database rstwatch --multiquery <<< "$bound" | cut -f "$cols" | sort)
    b=$(ch single --database rstwatch --multiquery <<< "$bound" | cut -f "$cols" | sort)
    [ "$a" = "$b" ] || { diff <(echo "$b") <(echo "$a") | head -n 10 >&2; fail "query $name differs from the single server"; }
    rows=$(echo "$a" | grep -c . || true)
    [ "$rows" -gt 0 ] || fail "query $name answers nothing: the comparison would prove nothing"
    echo "   query $name: same answer as the single server ($rows rows)"
done
echo "   ingest wall time: cluster $cluster_ms ms (with the failures), single $single_ms ms"

step "a first migrate --cluster killed midway, then run again (database resume)"
# Where the kill lands varies (between the CREATEs, or before the ledger rows); the
# second run must complete the schema whatever was left.
"$collector" migrate --clickhouse-url "http://127.0.0.1:${http[s1r1]}" --cluster rw --database resume \
    > /dev/null 2>&1 & m=$!
sleep 1.3; kill -KILL "$m"; wait "$m" 2>/dev/null || true
echo "   killed with $(ch s1r1 -q "SELECT count() FROM system.tables WHERE database = 'resume'") tables made"
"$collector" migrate --clickhouse-url "http://127.0.0.1:${http[s1r1]}" --cluster rw --database resume \
    | sed 's/^/   /'
for n in s1r1 s2r2; do
    columns "$n" resume > "$work/resume.$n"
    diff "$work/columns.single" "$work/resume.$n" >&2 || fail "$n: database resume's columns differ from the single server's"
done
echo "   database resume: every table's columns as on the single server"

step "migrate --cluster with ZooKeeper stopped: refused before any DDL"
kill -KILL "${pid[zk]}"; wait "${pid[zk]}" 2>/dev/null || true; unset "pid[zk]"
if out=$("$collector" migrate --clickhouse-url "http://127.0.0.1:${http[s1r1]}" --cluster rw 2>&1); then
    fail "migrate --cluster succeeded without ZooKeeper: $out"
fi
grep -q "cannot reach ZooKeeper" <<< "$out" || fail "migrate --cluster without ZooKeeper: $out"
ch s1r1 -q "SELECT 1" > /dev/null || fail "s1r1 stopped answering after migrate without ZooKeeper"
echo "   $(head -n 1 <<< "$out" | cut -c1-150)"
step "done"
