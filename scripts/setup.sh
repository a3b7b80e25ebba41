#!/usr/bin/env bash
# Installs what building and testing rstwatch needs on a fresh Debian machine.
# Idempotent: installs only what is missing. Package lists live beside this script:
#   ci-packages-*.txt  Debian packages, one per line ('#' comments allowed)
#   ci-pip-*.txt       PyPI packages (for checks that run modern ClickHouse in-process)
# With --bench it also installs what the benchmarks compare against (not needed by the
# tests): Suricata 7 from Debian bookworm-backports (benches/replay_vs_suricata.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bench=0
[ "${1:-}" = "--bench" ] && bench=1

want_apt=()
for f in "$here"/ci-packages-*.txt; do
    [ -e "$f" ] || continue
    while read -r p _; do
        [ -n "$p" ] && [ "${p#\#}" = "$p" ] && want_apt+=("$p")
    done < "$f"
done
missing=()
for p in "${want_apt[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install Debian packages (run as root or install them: ${missing[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for f in "$here"/ci-pip-*.txt; do
    [ -e "$f" ] || continue
    while read -r p _; do
        [ -n "$p" ] && [ "${p#\#}" = "$p" ] || continue
        name="${p%%[=<>]*}"
        python3 -m pip show -q "$name" >/dev/null 2>&1 || python3 -m pip install -q "$p"
    done < "$f"
done

if [ "$bench" = 1 ] && ! command -v suricata >/dev/null; then
    # Suricata 7 is in bookworm-backports only (bookworm main has none).
    list=/etc/apt/sources.list.d/bookworm-backports.sources
    if [ ! -e "$list" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$list"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports suricata >/dev/null
fi
