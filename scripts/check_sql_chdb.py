#!/usr/bin/env python3
"""Modern-dialect check: apply the rstwatch DDL and run every shipped query on current
ClickHouse, in process, through PyPI's chdb-core.

Usage: check_sql_chdb.py PATH/TO/rstwatch-collector [SERVER_VERSION]

The collector renders the DDL for the version chdb reports (IPv6, LowCardinality,
codecs, TTL, insert-dedup settings), then this script inserts a few rows (IPv4-mapped and
IPv6 addresses), checks that the materialized view fills `rst_minute`, and runs each
canonical query from schema/queries. Exits non-zero on the first failure.
"""
import subprocess
import sys
import tempfile

try:
    import chdb
    from chdb import session as chs
except ImportError:
    print("check_sql_chdb: chdb is not installed (pip install chdb-core)", file=sys.stderr)
    sys.exit(2)


def statements(text):
    out = []
    for chunk in text.split(";\n"):
        lines = [l for l in chunk.splitlines() if l.strip() and not l.strip().startswith("--")]
        if lines:
            out.append("\n".join(lines))
    return out


def main():
    collector = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        s = chs.Session(d)
        version = s.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
        target = sys.argv[2] if len(sys.argv) > 2 else version
        print(f"chdb ClickHouse {version}; rendering for {target}")
        ddl = subprocess.run(
            [collector, "print-schema", "--server-version", target, "--retention-days", "30"],
            check=True, capture_output=True, text=True).stdout
        queries = subprocess.run(
            [collector, "print-schema", "--server-version", target, "--queries"],
            check=True, capture_output=True, text=True).stdout
        s.query("CREATE DATABASE IF NOT EXISTS rstwatch")
        n = 0
        for st in statements(ddl):
            s.query(st)
            n += 1
        print(f"DDL: {n} statements applied")
        s.query("""INSERT INTO rstwatch.rst_events
            (ts, ts_us, sensor_id, boot_id, batch_seq, src, sport, dst, dport, vlan, inner_vlan,
             dir, class, flags, suspect, seq, ack, ack_flag, ttl, ip_id, payload_len, flow_uid)
            VALUES
            (now(), toUnixTimestamp(now()) * 1000000 + 123456, 's1', 1, 0, toIPv6('::ffff:192.0.2.1'), 443,
             toIPv6('::ffff:198.51.100.7'), 51000, 0, 0, 'resp', 'abort', 512, 1, 1, 2, 1, 64, 7, 0, 9),
            (now(), toUnixTimestamp(now()) * 1000000, 's1', 1, 0, toIPv6('2001:db8::1'), 80,
             toIPv6('2001:db8::2'), 40000, 0, 0, 'orig', 'reject', 0, 0, 1, 2, 1, 64, 7, 0, 10)""")
        s.query("""INSERT INTO rstwatch.flows
            (ts_start, ts_start_us, ts_end, ts_end_us, sensor_id, boot_id, batch_seq, orig_h, orig_p,
             resp_h, resp_p, vlan, inner_vlan, conn_state, history, orig_pkts, resp_pkts, orig_bytes,
             resp_bytes, rst_count, close, flow_uid)
            VALUES (now(), 1, now(), 2, 's1', 1, 0, toIPv6('::ffff:198.51.100.7'), 51000,
             toIPv6('::ffff:192.0.2.1'), 443, 0, 0, 'RSTR', 'ShADr', 3, 3, 10, 20, 1, 'rst', 9)""")
        s.query("INSERT INTO rstwatch.sensor_stats VALUES (now(), 1, 's1', 1, 0, 'parse.truncated', 3)")
        s.query("INSERT INTO rstwatch.batches VALUES (now(), 's1', 1, 0, 1, 2, 1, 0, 1, 100)")
        s.query("INSERT INTO rstwatch.anomalies VALUES (now(), 1, 's1', 1, 0, 'scan', '203.0.113.9', 30, 25, 'x')")
        rows = s.query("SELECT sum(rsts) FROM rstwatch.rst_minute", "CSV").bytes().decode().strip()
        if rows != "2":
            print(f"FAIL: rst_minute has {rows} RSTs, expected 2 (materialized view)")
            return 1
        s.query("USE rstwatch")
        q = 0
        for chunk in queries.split("-- query: ")[1:]:
            name, body = chunk.split("\n", 1)
            for st in statements(body):
                out = s.query(st, "TSV").bytes().decode()
                q += 1
                print(f"query ok: {name.strip()} ({len(out.splitlines())} rows)")
        top = s.query("SELECT replaceRegexpOne(IPv6NumToString(server), '^::ffff:', '') AS a "
                      "FROM rstwatch.rst_minute ORDER BY a", "TSV").bytes().decode().split()
        if "192.0.2.1" not in top or "2001:db8::2" not in top:
            print(f"FAIL: addresses print as {top}")
            return 1
        print(f"chdb check: {n} DDL statements, {q} queries: 2 passed, 0 failed")
        return 0


if __name__ == "__main__":
    sys.exit(main())
