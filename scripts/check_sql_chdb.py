#!/usr/bin/env python3
"""Modern-dialect check: apply the rstwatch DDL and run every shipped query on current
ClickHouse, in process, through PyPI's chdb-core.

Usage: check_sql_chdb.py PATH/TO/rstwatch-collector [SERVER_VERSION]

The collector renders the DDL for the version chdb reports (IPv6, LowCardinality,
codecs, TTL, insert-dedup settings). This script applies migration 1 alone, inserts
version-1 rows (IPv4-mapped and IPv6 addresses), applies the later migrations and the
cause_remedies refill, checks that the old rows survived with cause 'unknown' (or ''
for a flow no RST closed), inserts version-2 rows with causes, checks both rollups,
runs each cookbook query from schema/queries (native query parameters: the last
day) and checks the numbers of
resets_by_cause. Exits non-zero on the first failure.
"""
import re
import subprocess
import sys
import tempfile
import time

try:
    import chdb  # noqa: F401
    from chdb import session as chs
except ImportError:
    print("check_sql_chdb: chdb is not installed (pip install chdb-core)", file=sys.stderr)
    sys.exit(2)


class Failed(Exception):
    pass


def statements(text):
    out = []
    for chunk in text.split(";\n"):
        lines = [l for l in chunk.splitlines() if l.strip() and not l.strip().startswith("--")]
        if lines:
            out.append("\n".join(lines))
    return out


def sections(ddl):
    """print-schema output split at its `-- migration N` / `-- cause_remedies` lines."""
    parts = re.split(r"^-- (migration \d+|cause_remedies).*$", ddl, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def expect(what, got, want):
    if got != want:
        raise Failed(f"{what}: got {got!r}, expected {want!r}")


V1_RSTS = """INSERT INTO rstwatch.rst_events
    (ts, ts_us, sensor_id, boot_id, batch_seq, src, sport, dst, dport, vlan, inner_vlan,
     dir, class, flags, suspect, seq, ack, ack_flag, ttl, ip_id, payload_len, flow_uid)
    VALUES
    (now(), toUnixTimestamp(now()) * 1000000 + 123456, 's1', 1, 0, toIPv6('::ffff:192.0.2.1'), 443,
     toIPv6('::ffff:198.51.100.7'), 51000, 0, 0, 'resp', 'abort', 512, 1, 1, 2, 1, 64, 7, 0, 9),
    (now(), toUnixTimestamp(now()) * 1000000, 's1', 1, 0, toIPv6('2001:db8::1'), 80,
     toIPv6('2001:db8::2'), 40000, 0, 0, 'orig', 'reject', 0, 0, 1, 2, 1, 64, 7, 0, 10)"""

V1_FLOWS = """INSERT INTO rstwatch.flows
    (ts_start, ts_start_us, ts_end, ts_end_us, sensor_id, boot_id, batch_seq, orig_h, orig_p,
     resp_h, resp_p, vlan, inner_vlan, conn_state, history, orig_pkts, resp_pkts, orig_bytes,
     resp_bytes, rst_count, close, flow_uid)
    VALUES (now(), 1, now(), 2, 's1', 1, 0, toIPv6('::ffff:198.51.100.7'), 51000,
     toIPv6('::ffff:192.0.2.1'), 443, 0, 0, 'RSTR', 'ShADr', 3, 3, 10, 20, 1, 'rst', 9),
     (now(), 1, now(), 2, 's1', 1, 0, toIPv6('::ffff:198.51.100.7'), 51001,
     toIPv6('::ffff:192.0.2.1'), 443, 0, 0, 'SF', 'ShADadFf', 4, 4, 10, 20, 0, 'fin', 11)"""

# Version 2: three idle timeouts of 192.0.2.5:443 (first detail 'silent 301 s'), one
# refusal from 192.0.2.6:22; with the two version-1 RSTs, six in the hour.
V2_RSTS = """INSERT INTO rstwatch.rst_events
    (ts, ts_us, sensor_id, src, sport, dst, dport, dir, class, flow_uid, cause, cause_detail, silence_ms)
    VALUES
    (now(), toUnixTimestamp(now()) * 1000000 + 3, 's1', toIPv6('::ffff:192.0.2.5'), 443,
     toIPv6('::ffff:198.51.100.8'), 50001, 'resp', 'abort', 21, 'idle_timeout', 'silent 303 s', 303000),
    (now(), toUnixTimestamp(now()) * 1000000 + 1, 's1', toIPv6('::ffff:192.0.2.5'), 443,
     toIPv6('::ffff:198.51.100.8'), 50002, 'resp', 'abort', 22, 'idle_timeout', 'silent 301 s', 301000),
    (now(), toUnixTimestamp(now()) * 1000000 + 2, 's1', toIPv6('::ffff:192.0.2.5'), 443,
     toIPv6('::ffff:198.51.100.8'), 50003, 'resp', 'abort', 23, 'idle_timeout', 'silent 302 s', 302000),
    (now(), toUnixTimestamp(now()) * 1000000, 's1', toIPv6('::ffff:192.0.2.6'), 22,
     toIPv6('::ffff:198.51.100.8'), 50004, 'resp', 'reject', 24, 'refused', 'no listener', 0)"""


def upgrade_from_version_1(q, sec):
    """Migration 1, version-1 rows, then the rest: nothing lost, old rows labelled."""
    n = 0
    for st in statements(sec.pop("migration 1")):
        q(st)
        n += 1
    q(V1_RSTS)
    q(V1_FLOWS)
    q("INSERT INTO rstwatch.sensor_stats VALUES (now(), 1, 's1', 1, 0, 'parse.truncated', 3)")
    q("INSERT INTO rstwatch.batches VALUES (now(), 's1', 1, 0, 1, 2, 1, 0, 1, 100)")
    q("INSERT INTO rstwatch.anomalies VALUES (now(), 1, 's1', 1, 0, 'scan', '203.0.113.9', 30, 25, 'x')")
    expect("rst_minute (materialized view)", q("SELECT sum(rsts) FROM rstwatch.rst_minute"), "2")
    for name in sorted(k for k in sec if k.startswith("migration")) + ["cause_remedies"]:
        for st in statements(sec[name]):
            q(st)
            n += 1
    print(f"DDL: {n} statements applied")
    expect("rst_events after the upgrade",
           q("SELECT count(), groupUniqArray(toString(cause)), max(silence_ms) FROM rstwatch.rst_events"),
           "2\t['unknown']\t0")
    expect("flows after the upgrade",
           q("SELECT groupArray(toString(cause)) FROM (SELECT cause FROM rstwatch.flows ORDER BY flow_uid)"),
           "['unknown','']")
    expect("rst_minute_cause backfill", q("SELECT cause, sum(rsts) FROM rstwatch.rst_minute_cause GROUP BY cause"),
           "unknown\t2")
    expect("cause_remedies rows", q("SELECT count(), min(precedence), max(precedence) FROM rstwatch.cause_remedies"),
           "14\t0\t13")
    return n


def resets_by_cause(q, body, remedies):
    want = [
        ["idle_timeout", "192.0.2.5", "443", "3", "0.5", "silent 301 s", remedies["idle_timeout"]],
        ["refused", "192.0.2.6", "22", "1", "0.1667", "no listener", remedies["refused"]],
        ["unknown", "192.0.2.1", "443", "1", "0.1667", "", remedies["unknown"]],
        ["unknown", "2001:db8::2", "40000", "1", "0.1667", "", remedies["unknown"]],
    ]
    got = [line.split("\t") for line in q(body).splitlines()]
    expect("resets_by_cause", got, want)


def main():
    collector = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        s = chs.Session(d)

        def q(sql, params=None):
            return s.query(sql, "TSV", params=params or {}).bytes().decode().rstrip("\n")

        version = q("SELECT version()").strip('"')
        target = sys.argv[2] if len(sys.argv) > 2 else version
        print(f"chdb ClickHouse {version}; rendering for {target}")
        ddl = subprocess.run(
            [collector, "print-schema", "--server-version", target, "--retention-days", "30"],
            check=True, capture_output=True, text=True).stdout
        queries = subprocess.run(
            [collector, "print-schema", "--server-version", target, "--queries"],
            check=True, capture_output=True, text=True).stdout
        q("CREATE DATABASE IF NOT EXISTS rstwatch")
        try:
            n = upgrade_from_version_1(q, sections(ddl))
            q(V2_RSTS)
            q("INSERT INTO rstwatch.anomalies (ts, sensor_id, kind, subject) VALUES (now(), 's1', 'failover', '192.0.2.5')")
            expect("rst_minute", q("SELECT sum(rsts) FROM rstwatch.rst_minute"), "6")
            expect("rst_minute_cause",
                   q("SELECT cause, sum(rsts) FROM rstwatch.rst_minute_cause GROUP BY cause ORDER BY cause"),
                   "refused\t1\nidle_timeout\t3\nunknown\t2")
            remedies = dict(line.split("\t") for line in
                            q("SELECT toString(cause), remedy FROM rstwatch.cause_remedies").splitlines())
            q("USE rstwatch")
            # The cookbook's parameters, bound by the server (schema/README.md): the
            # last day, every sensor and port, minute buckets.
            now = int(time.time())
            params = {"from": str(now - 86400), "to": str(now + 60), "sensor": "",
                      "service_port": "0", "step": "60"}
            nq = 0
            for chunk in queries.split("-- query: ")[1:]:
                name, body = chunk.split("\n", 1)
                name = name.strip()
                for st in statements(body):
                    out = q(st, params)
                    nq += 1
                    print(f"query ok: {name} ({len(out.splitlines())} rows)")
                    if name == "resets_by_cause":
                        resets_by_cause(lambda sql: q(sql, params), st, remedies)
            top = q("SELECT replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS a "
                    "FROM rstwatch.rst_minute ORDER BY a").split()
            if "192.0.2.1" not in top or "2001:db8::2" not in top:
                raise Failed(f"addresses print as {top}")
        except Failed as e:
            print(f"FAIL: {e}")
            return 1
        print(f"chdb check: {n} DDL statements, {nq} queries; version-1 upgrade, both rollups and "
              "resets_by_cause as expected")
        return 0


if __name__ == "__main__":
    sys.exit(main())
