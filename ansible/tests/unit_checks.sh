#!/usr/bin/env bash
# Hardening checks on the units deployed into a target root:
# `systemd-analyze verify` must pass, and `systemd-analyze security` exposure must stay
# under each unit's limit (the sensor needs four capabilities and AF_XDP/netlink, so
# its limit is higher). Prints each score (README "Deploying with Ansible").
set -euo pipefail
root=${1:?usage: unit_checks.sh ROOT}
declare -A limit=(
    [rstwatch-collector.service]=3.0
    [clickhouse-server.service]=3.0
    [rstwatch-sensor.service]=3.0
    [rstwatch-sensor-nic.service]=3.0
)
fail=0
for unit in rstwatch-collector.service clickhouse-server.service rstwatch-sensor.service rstwatch-sensor-nic.service; do
    if ! out=$(systemd-analyze verify --root="$root" "$unit" 2>&1); then
        echo "unit_checks: $unit: systemd-analyze verify failed:" >&2
        echo "$out" >&2
        fail=1
    elif [ -n "$out" ]; then
        echo "unit_checks: $unit: systemd-analyze verify warned:" >&2
        echo "$out" >&2
        fail=1
    fi
    score=$(systemd-analyze security --offline=yes --root="$root" "$unit" 2>/dev/null \
        | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) \(.*\)/\1 \2/p' | awk '{print $1, $2}')
    echo "   $unit: verify ok, security exposure $score (limit ${limit[$unit]})"
    awk -v s="${score%% *}" -v l="${limit[$unit]}" 'BEGIN{exit !(s != "" && s < l)}' \
        || { echo "unit_checks: $unit exposure ${score:-unknown} is not below ${limit[$unit]}" >&2; fail=1; }
done
exit $fail
