#!/usr/bin/env python3
"""Prints N distinct loopback TCP ports that are free now, for test servers.

Chosen below the kernel's ephemeral range, so no outgoing connection takes one before
its server binds it, and all held bound until all are chosen, so no two are the same.
(One `bind(0)` at a time can return a port twice: on 2026-12-03 the test cluster's last
ClickHouse server found its port taken and never came up.)

    scripts/free_ports.py N
"""
import random
import socket
import sys


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    low = 10000
    if ephemeral_low - low < 10 * n:
        sys.exit(f"free_ports.py: only {ephemeral_low - low} ports below the ephemeral range")
    held, ports = [], []
    for _ in range(100 * n):
        if len(ports) == n:
            break
        p = random.randrange(low, ephemeral_low)
        if p in ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        held.append(s)
        ports.append(p)
    if len(ports) < n:
        sys.exit(f"free_ports.py: found {len(ports)} free ports of {n} in {100 * n} tries")
    print(*ports)


if __name__ == "__main__":
    main()
