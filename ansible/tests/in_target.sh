#!/usr/bin/env bash
# Runs a command with the chroot target $root usable: /proc, /sys (of the current
# network namespace), /dev, and the apt caches kept in $cache between test runs.
# Meant to run under `unshare -m --propagation private`, so the mounts vanish with it.
set -euo pipefail
: "${root:?}" "${cache:?}"
for d in proc sys dev var/cache/apt/archives var/lib/apt/lists; do mkdir -p "$root/$d"; done
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists"
cp /etc/resolv.conf "$root/etc/resolv.conf"
exec "$@"
