#!/usr/bin/env bash
# The deployed sensor -> collector -> ClickHouse chain, started from the deployed units
# (run_unit.py) inside the test's network namespace; called by scripts/test-ansible.sh
# through in_target.sh. Needs: root work repo cap expect_rst.
set -euo pipefail
: "${root:?}" "${work:?}" "${repo:?}" "${cap:?}" "${expect_rst:?}"
run_unit() { python3 "$repo/ansible/tests/run_unit.py" "$root" "$@"; }
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
}
trap stop_all EXIT
wait_for() { # what, seconds, command...
    local what=$1 secs=$2; shift 2
    for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "chain: $what did not happen within $secs s" >&2
    return 1
}
reader() {
    chroot "$root" clickhouse-client --user rstwatch_reader --password "$(reader_password)" \
        --database rstwatch "$@"
}
reader_password() { sed -n 's/.*rstwatch_clickhouse_reader_password: //p' "$work/inventory.yml"; }

echo "   clickhouse-server.service"
pids+=("$(run_unit clickhouse-server.service --log "$work/clickhouse.log")")
wait_for "ClickHouse answering" 60 chroot "$root" clickhouse-client -q "SELECT 1"

echo "   rstwatch-sensor-nic.service (oneshot, root)"
run_unit rstwatch-sensor-nic.service --log "$work/nic.log"
link=$(ip -o link show dev "$cap")
case "$link" in *PROMISC*UP*|*UP*PROMISC*) ;; *) echo "chain: $cap not up and promiscuous: $link" >&2; exit 1 ;; esac
[ -z "$(ip -o addr show dev "$cap")" ] || { echo "chain: $cap has an address" >&2; exit 1; }
ethtool -k "$cap" | grep -q "^generic-receive-offload: off" || { echo "chain: GRO still on" >&2; exit 1; }

echo "   rstwatch-collector.service (migrates first)"
pids+=("$(run_unit rstwatch-collector.service --log "$work/collector.log")")
wait_for "collector listening" 60 grep -q "listening on" "$work/collector.log"
view_token() { sed -n 's/.*rstwatch_collector_http_token: //p' "$work/inventory.yml"; }
wait_for "SOC view listening" 30 grep -q "SOC view on" "$work/collector.log"
code() { curl -s -o /dev/null -w '%{http_code}' "$@" http://127.0.0.1:8088/; }
[ "$(code)" = 401 ] || { echo "chain: the SOC view answered without a token" >&2; exit 1; }
[ "$(code -H "Authorization: Bearer $(view_token)")" = 200 ] \
    || { echo "chain: the SOC view refused its token" >&2; tail -n 5 "$work/collector.log" >&2; exit 1; }
echo "   SOC view: 401 without the token, 200 with it"
grep -q "alerts: sinks" "$work/collector.log" || { echo "chain: the alerter did not start" >&2; exit 1; }

echo "   rstwatch-sensor.service"
spid=$(run_unit rstwatch-sensor.service --log "$work/sensor.log")
pids+=("$spid")
wait_for "sensor capturing" 60 grep -q "capturing on" "$work/sensor.log" \
    || { tail -n 20 "$work/sensor.log" >&2; exit 1; }
uid=$(awk '/^Uid:/{print $2}' "/proc/$spid/status")
capeff=$(awk '/^CapEff:/{print $2}' "/proc/$spid/status")
# CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_IPC_LOCK 14, CAP_PERFMON 38, CAP_BPF 39
want=$(printf '%016x' $(( (1 << 12) | (1 << 13) | (1 << 14) | (1 << 38) | (1 << 39) )))
echo "   sensor pid $spid: uid $uid ($(chroot "$root" id -nu "$uid")), CapEff $capeff"
[ "$uid" != 0 ] || { echo "chain: the sensor runs as root" >&2; exit 1; }
[ "$capeff" = "$want" ] || { echo "chain: sensor capabilities $capeff, want $want" >&2; exit 1; }

echo "   replaying the capture into the mirror port"
tcpreplay -q -i rwinj0 --pps 6000 "$work/mixed.pcap" >/dev/null 2>&1
sleep 1
kill -TERM "$spid"
wait_for "sensor exit (flush, acks)" 90 sh -c "! kill -0 $spid"
tail -n 2 "$work/sensor.log" | sed 's/^/      /'

got=$(reader -q "SELECT count() FROM rst_events WHERE sensor_id = 'deploy-test'")
echo "   rst_events: $got rows in ClickHouse (read-only user), replay of the same capture: $expect_rst"
[ "$got" = "$expect_rst" ] || { echo "chain: rows differ" >&2; exit 1; }
if reader -q "INSERT INTO batches (sensor_id) VALUES ('x')" >/dev/null 2>&1; then
    echo "chain: the read-only user could write" >&2; exit 1
fi
echo "   the read-only user cannot write"
# Debian's python: PyYAML comes with its ansible.
/usr/bin/python3 "$repo/ansible/tests/grafana_check.py" "$root" "$repo/schema/grafana/dashboards"
wait_for "threshold alert in the ECS log" 30 grep -q "deploy_rst_rows" "$work/collector.log"
echo "   alerts: threshold rule deploy_rst_rows fired ($(grep -c deploy_rst_rows "$work/collector.log") log lines)"
