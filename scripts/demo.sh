#!/usr/bin/env bash
# The main job (README): the whole appliance end to end on a local simulated mirror
# port. Set-up and build, then:
#   ClickHouse (Debian's server, from a generated config in a temp dir, loopback only)
#   → rstwatch-collector migrate + serve (loopback, token auth)
#   → a network namespace with a veth pair: the capture side has no IP address
#   → rstwatch-sensor run (AF_XDP) on the capture side, shipping to the collector
#   → the `mixed` scenario (documentation addresses only) replayed into the peer side
#   → stop the sensor (it flushes and waits for every acknowledgement)
#   → the canonical queries in schema/queries/ against what landed in ClickHouse,
#     the SOC view (serve --http) checked over HTTP, the alerts it raised (ECS lines),
#     and a report written to --report-out (kept).
# Needs root (namespaces, XDP). Everything it starts is stopped and removed at exit;
# --hold keeps the collector and its view up until Ctrl-C, to look at it in a browser.
#
#   scripts/demo.sh [--flows N] [--pps N] [--report-out FILE] [--hold]
set -euo pipefail
cd "$(dirname "$0")/.."
flows=2000
pps=20000
report_out=/tmp/rstwatch-demo-report.html
hold=0
while [ $# -gt 0 ]; do
    case "$1" in
        --flows) flows="$2"; shift 2 ;;
        --pps) pps="$2"; shift 2 ;;
        --report-out) report_out="$2"; shift 2 ;;
        --hold) hold=1; shift ;;
        *) echo "usage: scripts/demo.sh [--flows N] [--pps N] [--report-out FILE] [--hold]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root (network namespace, XDP); scripts/scenarios.sh is the offline tour" >&2
    exit 1
fi
scripts/setup.sh
cargo build --release -q -p rstwatch-sensor -p rstwatch-collector
sensor=$PWD/target/release/rstwatch-sensor
collector=$PWD/target/release/rstwatch-collector

work=$(mktemp -d -t rstwatch-demo.XXXXXX)
ns=rstw-demo-$$
cap=rwdc$$
inj=rwdi$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip link del "$cap" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== ClickHouse (temp dir $work/ch)"
# Distinct loopback ports below the ephemeral range (scripts/free_ports.py).
read -r http tcp <<<"$(scripts/free_ports.py 2)"
mkdir -p "$work/ch"
cat > "$work/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$work/ch/server.log</log><errorlog>$work/ch/err.log</errorlog><console>0</console></logger>
  <http_port>$http</http_port><tcp_port>$tcp</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>$work/ch/data/</path><tmp_path>$work/ch/tmp/</tmp_path>
  <user_files_path>$work/ch/user_files/</user_files_path><format_schema_path>$work/ch/fs/</format_schema_path>
  <users_config>users.xml</users_config><default_profile>default</default_profile>
  <default_database>default</default_database><timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size><mlock_executable>false</mlock_executable>
</yandex>
XML
cat > "$work/ch/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
  <profiles><default/></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default/></quotas>
</yandex>
XML
(cd "$work/ch" && exec clickhouse-server --config-file="$work/ch/config.xml" >"$work/ch/stdout.log" 2>&1) &
pids+=($!)
ch() { clickhouse-client --port "$tcp" --database rstwatch "$@"; }
for _ in $(seq 100); do clickhouse-client --port "$tcp" -q 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
clickhouse-client --port "$tcp" -q 'SELECT version()' | sed 's/^/   server version /'

echo "== collector"
"$collector" migrate --clickhouse-url "http://127.0.0.1:$http"
read -r cport vport <<<"$(scripts/free_ports.py 2)"
# Alerts: every anomaly becomes an ECS JSON line (webhook, Slack and syslog sinks are
# configured the same way: collector/config/alerts.example.toml).
cat >"$work/collector.toml" <<EOF
[alerts]
state_dir = "$work/alerts"
log = "$work/alerts.ecs.jsonl"
poll_secs = 1
observer = "demo-collector"
external_url = "http://127.0.0.1:$vport"
EOF
"$collector" serve --listen "127.0.0.1:$cport" --clickhouse-url "http://127.0.0.1:$http" \
    --plaintext --token demo-token --config "$work/collector.toml" \
    --http "127.0.0.1:$vport" --http-token demo-view >"$work/collector.log" 2>&1 &
pids+=($!)
sleep 1

echo "== simulated mirror port: namespace $ns, capture side $cap (no IP address), peer $inj"
ip netns add "$ns"
ip link add "$cap" type veth peer name "$inj" netns "$ns"
ip link set "$cap" up
ip -n "$ns" link set "$inj" up

echo "== scenario: mixed, $flows background flows"
"$sensor" gen --scenario mixed --flows "$flows" --out "$work/mixed.pcap"

echo "== sensor: run --iface $cap --ship 127.0.0.1:$cport"
"$sensor" run --iface "$cap" --ship "127.0.0.1:$cport" --plaintext --token demo-token \
    --sensor-id demo-sensor --spool-dir "$work/spool" --stats-interval 5 2>"$work/sensor.log" &
spid=$!
pids+=($spid)
for _ in $(seq 150); do grep -q "capturing on" "$work/sensor.log" && break; sleep 0.2; done
sed 's/^/   /' "$work/sensor.log"

echo "== replaying the capture into the mirror port at $pps packets/s"
ip netns exec "$ns" tcpreplay -q -i "$inj" --pps "$pps" "$work/mixed.pcap" 2>&1 | sed 's/^/   /' | tail -n 3
sleep 1
kill -TERM "$spid"
wait "$spid"
tail -n 4 "$work/sensor.log" | sed 's/^/   /'

echo "== what landed in ClickHouse"
for t in rst_events flows anomalies sensor_stats batches; do
    printf '   %-13s %s rows\n' "$t" "$(ch -q "SELECT count() FROM $t")"
done
# The cookbook with its parameters bound for 18.16: the last day, every sensor and port.
qfrom=$(( $(date +%s) - 86400 )); qto=$(( $(date +%s) + 3600 ))
for q in reset_rate_by_class resets_by_cause top_services suspected_injections anomalies sensor_health; do
    echo "-- schema/queries/$q.sql"
    "$collector" print-schema --server-version 18.16 --queries --query "$q" --from "$qfrom" --to "$qto" \
        | ch --format PrettyCompactMonoBlock --multiquery | head -n 20
done

echo "== the SOC view: http://127.0.0.1:$vport/ (token demo-view)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$vport/")
echo "   without the token: HTTP $code"
curl -sf -H 'Authorization: Bearer demo-view' "http://127.0.0.1:$vport/?range=24h" -o "$work/view.html"
echo "   with the token: $(wc -c <"$work/view.html") bytes, $(grep -o '<svg' "$work/view.html" | wc -l) charts"

echo "== alerts raised (ECS JSON lines)"
for _ in $(seq 50); do [ -s "$work/alerts.ecs.jsonl" ] && break; sleep 0.2; done
sleep 2
python3 - "$work/alerts.ecs.jsonl" <<'PY'
import collections, json, sys
try:
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except FileNotFoundError:
    lines = []
print(f"   {len(lines)} alert lines")
for rule, n in sorted(collections.Counter(l["rule"]["name"] for l in lines).items()):
    print(f"   {n:4d}  {rule}")
PY

echo "== report: $report_out"
"$collector" report --clickhouse-url "http://127.0.0.1:$http" --since 24h --out "$report_out"
ls -l "$report_out" | sed 's/^/   /'

if [ "$hold" = 1 ]; then
    echo "== holding: the view is at http://127.0.0.1:$vport/ (token demo-view); Ctrl-C ends"
    wait
fi
