# Shared by scripts/test-cluster.sh and benches/ingest_cluster.sh (sourced, not run):
# a loopback ClickHouse cluster `rw` (Debian's 18.16, 2 shards x 2 replicas, ZooKeeper)
# plus one stand-alone server, the rstwatch schema on both, and helpers to start
# collectors. Needs: repo sensor collector step fail t0 (set by the caller). Everything it
# starts is killed and its temp dir removed when the caller exits.
work=$(mktemp -d -t rstwatch-cluster.XXXXXX)
declare -A pid=()
cleanup() {
    for k in "${!pid[@]}"; do kill -KILL "${pid[$k]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${RSTWATCH_CLUSTER_KEEP:-}" ]; then echo "kept $work" >&2; return; fi
    rm -rf "$work"
}
trap cleanup EXIT
# Loopback ports: distinct, and below the ephemeral range (scripts/free_ports.py).
free_ports() { "$repo/scripts/free_ports.py" "$1"; }
wait_for() { # what seconds command...
    local what=$1 secs=$2; shift 2
    for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    fail "$what did not happen within $secs s"
}

step "ZooKeeper"
# ZooKeeper's port and each node's three, chosen together so that no two are the same.
read -r -a ports <<<"$(free_ports 16)"
[ "${#ports[@]}" = 16 ] || fail "no free loopback ports"
zk_port=${ports[15]}
mkdir -p "$work/zk/data"
printf 'tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n' \
    "$work/zk/data" "$zk_port" > "$work/zk/zoo.cfg"
java -Xmx256m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$work/zk/zoo.cfg" > "$work/zk/zk.log" 2>&1 &
pid[zk]=$!
# Serving, not just listening: `ruok` answers "imok" ~0.5 s before ZooKeeper takes
# sessions (it closes them meanwhile), and ClickHouse 18.16 started in that window fails
# its DDL worker's first connection, then crashed (SIGSEGV) on the first ON CLUSTER
# query. `srvr` says "not currently serving requests" until sessions work.
zk_serving() {
    python3 - "$zk_port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"srvr")
reply = b""
while chunk := s.recv(4096):
    reply += chunk
sys.exit(0 if reply.startswith(b"Zookeeper version") else 1)
PY
}
wait_for "ZooKeeper serving" 30 zk_serving

# Nodes: name shard; "single" is the stand-alone comparison server.
nodes=(s1r1 s1r2 s2r1 s2r2 single)
declare -A shard=([s1r1]=1 [s1r2]=1 [s2r1]=2 [s2r2]=2) http=() tcp=() isp=()
i=0
for n in "${nodes[@]}"; do
    http[$n]=${ports[i]} tcp[$n]=${ports[i + 1]} isp[$n]=${ports[i + 2]}
    i=$((i + 3))
done
remote_servers() {
    echo "<remote_servers><rw>"
    for s in 1 2; do
        echo "<shard><internal_replication>true</internal_replication>"
        for n in s${s}r1 s${s}r2; do echo "<replica><host>127.0.0.1</host><port>${tcp[$n]}</port></replica>"; done
        echo "</shard>"
    done
    echo "</rw></remote_servers>"
}
ch_config() { # node
    local n=$1 d=$work/$1
    mkdir -p "$d"
    cat > "$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/server.log</log><errorlog>$d/err.log</errorlog><console>0</console></logger>
  <http_port>${http[$n]}</http_port><tcp_port>${tcp[$n]}</tcp_port>
  <interserver_http_port>${isp[$n]}</interserver_http_port><interserver_http_host>127.0.0.1</interserver_http_host>
  <listen_host>127.0.0.1</listen_host>
  <path>$d/data/</path><tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path><format_schema_path>$d/fs/</format_schema_path>
  <users_config>users.xml</users_config><default_profile>default</default_profile>
  <default_database>default</default_database><timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size><mlock_executable>false</mlock_executable>
  $( [ "$n" = single ] || remote_servers )
  $( [ "$n" = single ] || echo "<zookeeper><node><host>127.0.0.1</host><port>$zk_port</port></node><session_timeout_ms>6000</session_timeout_ms></zookeeper>" )
  $( [ "$n" = single ] || echo "<macros><shard>${shard[$n]}</shard><replica>$n</replica></macros>" )
  $( [ "$n" = single ] || echo "<merge_tree><replicated_max_ratio_of_wrong_parts>1</replicated_max_ratio_of_wrong_parts></merge_tree>" )
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
XML
    # merge_tree: as the clickhouse role sets it in cluster mode (see its template: a
    # replica killed mid-insert keeps a part ZooKeeper never heard of, and on a small
    # table that alone made it refuse to start).
    # The writer's settings the clickhouse role gives in cluster mode (collector/src/cluster.rs).
    cat > "$d/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
  <profiles><default><insert_distributed_sync>1</insert_distributed_sync><load_balancing>in_order</load_balancing><insert_quorum>2</insert_quorum><select_sequential_consistency>1</select_sequential_consistency></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default/></quotas>
</yandex>
XML
}
ch_start() {
    (cd "$work/$1" && exec clickhouse-server --config-file="$work/$1/config.xml" >>"$work/$1/stdout.log" 2>&1) &
    pid[$1]=$!
}
ch() { local n=$1; shift; clickhouse-client --port "${tcp[$n]}" "$@"; }
step "ClickHouse: 2 shards x 2 replicas + a single server"
for n in "${nodes[@]}"; do ch_config "$n"; ch_start "$n"; done
for n in "${nodes[@]}"; do wait_for "ClickHouse $n" 60 ch "$n" -q "SELECT 1"; done
# Each replica has a ZooKeeper session before any DDL goes on the cluster.
for n in s1r1 s1r2 s2r1 s2r2; do
    wait_for "ClickHouse $n reaching ZooKeeper" 30 ch "$n" -q "SELECT count() FROM system.zookeeper WHERE path = '/'"
done
ch s1r1 -q "SELECT version()" | sed 's/^/   server version /'

step "migrate --cluster rw (on s1r1), migrate (single)"
"$collector" migrate --clickhouse-url "http://127.0.0.1:${http[s1r1]}" --cluster rw
"$collector" migrate --clickhouse-url "http://127.0.0.1:${http[single]}"
for n in s1r1 s1r2 s2r1 s2r2; do
    engines=$(ch "$n" -q "SELECT groupArray(engine) FROM (SELECT engine FROM system.tables WHERE database='rstwatch' AND name IN ('rst_events','rst_events_local') ORDER BY name)")
    [ "$engines" = "['Distributed','ReplicatedMergeTree']" ] || fail "$n: rst_events engines $engines"
done
# The new cluster got every migration at once, its ALTERs folded into the CREATEs
# (schema/src/cluster/fold.rs); the single server ran them one by one. Each table (T_local
# on the cluster, T on the single server) must have the same columns in the same order,
# with the same types and defaults. A stable sort by table keeps each one's column order.
columns() { # node [database]
    local db=${2:-rstwatch}
    ch "$1" -q "SELECT replaceRegexpOne(table, '_local\$', ''), name, type, default_kind, default_expression
        FROM system.columns WHERE database = '$db' AND table IN
        (SELECT name FROM system.tables WHERE database = '$db' AND engine != 'Distributed')
        FORMAT TSV" | sort -s -t "$(printf '\t')" -k1,1
}
alters=$(ch s1r1 -q "SELECT countIf(value LIKE '%ALTER TABLE%') FROM system.zookeeper WHERE path = '/clickhouse/task_queue/ddl'")
[ "$alters" = 0 ] || fail "a new cluster was sent $alters ALTER TABLE statements"
columns single > "$work/columns.single"
[ "$(wc -l < "$work/columns.single")" -gt 50 ] || fail "single: too few columns listed"
for n in s1r1 s1r2 s2r1 s2r2; do
    columns "$n" > "$work/columns.$n"
    diff "$work/columns.single" "$work/columns.$n" >&2 || fail "$n: columns differ from the single server's"
done

col_port=()
col_start() { # index node
    local i=$1 n=$2
    [ -n "${col_port[$i]:-}" ] || col_port[$i]=$(free_ports 1)
    "$collector" serve --listen "127.0.0.1:${col_port[$i]}" --metrics-listen "127.0.0.1:0" \
        --clickhouse-url "http://127.0.0.1:${http[$n]}" --plaintext --token cluster-test \
        >>"$work/collector$i.log" 2>&1 &
    pid[col$i]=$!
    wait_for "collector $i listening" 30 grep -q "listening on" "$work/collector$i.log"
}
