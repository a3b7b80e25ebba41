#!/usr/bin/env python3
"""The alerter's SQL on current ClickHouse (in process, PyPI chdb-core).

Usage: alerts_chdb.py COLLECTOR POLL_SQL RULE_SQL
Applies the schema rendered for chdb's version, inserts ledger and anomaly rows, runs
the anomaly poll (cursor in place) and a rule query (the shipped example, wrapped as
the alerter wraps it), and checks their rows. Exits non-zero on the first difference.
"""
import os
import subprocess
import sys

# One SQL splitter for every chdb check: scripts/check_sql_chdb.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from check_sql_chdb import statements  # noqa: E402

import chdb
from chdb import session as chs


def main():
    collector, poll, rule = sys.argv[1:4]
    version = ".".join(chdb.__version__.split(".")[:2])
    ddl = subprocess.run([collector, "print-schema", "--server-version", version],
                         check=True, capture_output=True, text=True).stdout
    s = chs.Session()
    q = lambda sql: s.query(sql, "TSV").data().strip()
    q("CREATE DATABASE IF NOT EXISTS rstwatch")
    for st in statements(ddl):
        q(st)
    q("USE rstwatch")  # the alerter's client has the database as its default
    cursor = int(q("SELECT toUnixTimestamp(now()) - 600"))
    # Batch 5: two anomalies, its ledger row written twice (must not double them).
    # Batch 6: an anomaly but an old ledger row (before the cursor). Batch 7: no ledger
    # row yet (not committed): must not show.
    q("INSERT INTO rstwatch.batches VALUES (now(), 'e1', 1, 5, 1, 0, 0, 2, 0, 10)")
    q("INSERT INTO rstwatch.batches VALUES (now(), 'e1', 1, 5, 1, 0, 0, 2, 0, 10)")
    q("INSERT INTO rstwatch.batches VALUES (now() - 3600, 'e1', 1, 6, 1, 0, 0, 1, 0, 10)")
    q("""INSERT INTO rstwatch.anomalies VALUES
        (now(), 2, 'e1', 1, 5, 'injection', '192.0.2.10:443', 3, 3, 'i'),
        (now(), 1, 'e1', 1, 5, 'scan', '203.0.113.9', 30, 25, 's'),
        (now(), 1, 'e1', 1, 6, 'scan', '203.0.113.6', 30, 25, 'old'),
        (now(), 1, 'e1', 1, 7, 'scan', '203.0.113.7', 30, 25, 'uncommitted')""")
    got = q(poll.replace("4294967295", str(cursor)))
    rows = [l.split("\t") for l in got.splitlines()]
    kinds = [(r[1], r[2], r[3], r[5], r[6]) for r in rows]
    want = [("e1", "1", "5", "scan", "203.0.113.9"), ("e1", "1", "5", "injection", "192.0.2.10:443")]
    if kinds != want:
        raise SystemExit(f"poll: got {kinds!r}, expected {want!r}")
    print("poll ok:", kinds)
    # The example rule: RSTs of the last complete minute per server port.
    q("""INSERT INTO rstwatch.rst_events (ts, ts_us, sensor_id, src, sport, dst, dport, dir, class, flow_uid)
        SELECT toStartOfMinute(now() - 60) + 5, 0, 'e1', toIPv6('::ffff:192.0.2.10'), 443,
               toIPv6('::ffff:198.51.100.7'), 40000 + number, 'resp', 'abort', number
        FROM numbers(7)""")
    got = q(rule)
    if got != "443\t7":
        raise SystemExit(f"rule: got {got!r}, expected '443\\t7'")
    print("rule ok:", got)


if __name__ == "__main__":
    main()
