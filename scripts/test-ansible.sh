#!/usr/bin/env bash
# The deployment test (part of scripts/test.sh, so CI runs it). Needs root.
#   1. ansible-lint (production profile) and ansible-playbook --syntax-check
#   2. a throwaway target: a Debian bookworm chroot (debootstrap minbase + python3 +
#      systemd; the tarball is cached in $RSTWATCH_DEPLOY_CACHE), inside a network
#      namespace with a veth pair (the capture port, no address) and its own loopback
#   3. site.yml applied for real to it through Ansible's chroot connection (sensor,
#      collector and ClickHouse roles on one all-in-one host, lab TLS), then applied
#      again: the second run must report changed=0
#   4. every unit passes `systemd-analyze verify`; `systemd-analyze security` scores are
#      printed and checked (every unit below 3.0, "OK")
#   5. the deployed chain is started from the deployed units (run_unit.py: the units'
#      users, capabilities, environment files and commands) — ClickHouse, the collector
#      (migrating first), the sensor as an unprivileged user with only its four
#      capabilities (and CAP_PERFMON, see the unit) — a generated capture is replayed into the veth, and every RST the
#      sensor reports offline lands in ClickHouse, read back with the read-only user.
# Everything it starts is stopped and its mounts, namespace and temp dir removed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ "$(id -u)" -ne 0 ]; then
    echo "test-ansible: needs root (chroot, network namespace, XDP)" >&2
    exit 1
fi
t0=$(date +%s)
step() { echo "== test-ansible [$(( $(date +%s) - t0 )) s] $*"; }

step "lint"
(cd ansible && ansible-lint --offline --profile production --nocolor -q)
(cd ansible && ansible-playbook -i inventory/example.yml site.yml --syntax-check >/dev/null)
ansible-playbook --version | sed -n 1p
ansible-lint --nocolor --version 2>/dev/null | sed -n 1p

step "build"
cargo build -q -p rstwatch-sensor -p rstwatch-collector
sensor_bin=$repo/target/debug/rstwatch-sensor
collector_bin=$repo/target/debug/rstwatch-collector

cache=${RSTWATCH_DEPLOY_CACHE:-/var/cache/rstwatch-deploy-test}
base=$cache/bookworm-base.tar
mkdir -p "$cache/apt-archives/partial" "$cache/apt-lists/partial"
if [ ! -s "$base" ]; then
    step "debootstrap (once; cached in $base)"
    tmp=$(mktemp -d -p "$cache" base.XXXXXX)
    debootstrap --variant=minbase --include=python3,systemd,ca-certificates bookworm "$tmp" \
        "${RSTWATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
    # A chroot has no init: packages must not try to start services while installing.
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
    chmod +x "$tmp/usr/sbin/policy-rc.d"
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    tar -C "$tmp" -cf "$base.tmp" . && mv "$base.tmp" "$base"
    rm -rf "$tmp"
fi

work=$(mktemp -d -t rstwatch-deploy.XXXXXX)
root=$work/root
ns=rstw-deploy-$$
cap=rwdc$$
cleanup() {
    # Keep the logs of the last run (playbook output, the chain's daemons) for a look.
    mkdir -p "$cache/last-run" && cp "$work"/*.log "$cache/last-run/" 2>/dev/null || true
    cp "$root"/var/log/clickhouse-server/*.log "$cache/last-run/" 2>/dev/null || true
    if [ -n "${RSTWATCH_DEPLOY_KEEP:-}" ]; then
        echo "test-ansible: kept $work and namespace $ns (RSTWATCH_DEPLOY_KEEP)" >&2
        return
    fi
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip link del "$cap" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$root"
step "target: fresh chroot $root"
tar -C "$root" -xf "$base"
chmod 0755 "$root"   # a root directory made by mktemp is 0700: users could not reach /usr
# What an installer writes and debootstrap does not: ClickHouse resolves "localhost".
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo rstwatch-target > "$root/etc/hostname"
# Grafana's own package (Grafana's repository, not Debian's) creates the `grafana` group
# the grafana role gives its files to; Grafana cannot be installed here, so the group
# stands in for it and the role is applied for real (files, modes, idempotence; the
# chain check reads what it provisioned).
chroot "$root" groupadd --system grafana

# The capture port: one end of a veth pair, created down and with no address in this
# namespace (like a NIC fresh from the switch); the sensor role must bring it up,
# promiscuous, offloads off. Its peer sits in the test's own namespace.
ip netns add "$ns"
ip -n "$ns" link set lo up
ip link add "$cap" type veth peer name rwinj0 netns "$ns"
ip -n "$ns" link set rwinj0 up

"$sensor_bin" gen --scenario mixed --flows 300 --out "$work/mixed.pcap" >/dev/null
expect_rst=$("$sensor_bin" replay "$work/mixed.pcap" | grep -c '"type":"rst"')

cat > "$work/inventory.yml" <<YML
all:
  vars:
    ansible_connection: community.general.chroot
    ansible_host: $root
    rstwatch_manage_services: false
    rstwatch_tls_mode: lab
    rstwatch_lab_pki_dir: $work/pki
    rstwatch_sensor_binary_src: $sensor_bin
    rstwatch_collector_binary_src: $collector_bin
    rstwatch_clickhouse_writer_password: writer-secret-$$
    rstwatch_clickhouse_reader_password: reader-secret-$$
  children:
    clickhouse: {hosts: {target: {}}}
    collectors:
      hosts:
        target:
          rstwatch_collector_listen: 127.0.0.1
          rstwatch_collector_advertise: 127.0.0.1
          rstwatch_collector_tls_name: collector.rstwatch.test
          rstwatch_collector_clickhouse_url: http://127.0.0.1:8123
          rstwatch_collector_http: 127.0.0.1:8088
          rstwatch_collector_http_token: view-secret-$$
          rstwatch_collector_alerts:
            poll_secs: 1
            observer: deploy-test-collector
            retry: {attempts: 2}
            rule:
              - name: deploy_rst_rows
                every_secs: 2
                above: 0
                sql: !unsafe "SELECT sensor_id AS subject, count() AS value FROM {{DB}}.rst_events GROUP BY sensor_id"
    sensors:
      hosts:
        target:
          rstwatch_sensor_iface: $cap
          rstwatch_sensor_mode: generic
          rstwatch_sensor_stats_interval_s: 0
          rstwatch_sensor_id: deploy-test
          rstwatch_sensor_token: sensor-secret-$$
    grafana: {hosts: {target: {rstwatch_grafana_clickhouse_host: 127.0.0.1}}}
YML

export root work repo cache ns cap expect_rst
t=$(date +%s)
for run in 1 2; do
    step "ansible-playbook site.yml, run $run"
    # A private mount namespace: the chroot's /proc, /sys, /dev and apt caches are
    # mounted there and vanish with it.
    unshare -m --propagation private bash "$repo/ansible/tests/in_target.sh" \
        ansible-playbook -i "$work/inventory.yml" "$repo/ansible/site.yml" \
        > "$work/apply-$run.log" 2>&1 || { tail -n 40 "$work/apply-$run.log" >&2; exit 1; }
    recap=$(grep -A1 "PLAY RECAP" "$work/apply-$run.log" | tail -n 1)
    echo "   $recap"
    case "$recap" in *"failed=0"*) ;; *) echo "test-ansible: run $run failed" >&2; exit 1 ;; esac
done
case "$recap" in
    *" changed=0 "*) echo "   second run changed nothing" ;;
    *) grep -B2 -E "^changed:" "$work/apply-2.log" >&2 || true
       echo "test-ansible: the second run changed something" >&2; exit 1 ;;
esac
echo "   two applies took $(( $(date +%s) - t )) s"

bash ansible/tests/unit_checks.sh "$root"

step "the deployed chain in namespace $ns"
# The capture port moves into the test namespace (which takes its settings away, as a
# reboot would): the NIC unit prepares it again before the sensor starts.
ip link set "$cap" netns "$ns"
ip netns exec "$ns" unshare -m --propagation private bash "$repo/ansible/tests/in_target.sh" \
    bash "$repo/ansible/tests/chain_check.sh"
step "done in $(( $(date +%s) - t0 )) s"
