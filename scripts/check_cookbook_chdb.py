#!/usr/bin/env python3
"""The SQL cookbook and the Grafana dashboard on current ClickHouse, in process (chdb).

Usage: check_cookbook_chdb.py COLLECTOR DATA_DIR JOBS_JSON GRAFANA_DIR T0

Driven by collector/tests/cookbook.rs, which loads `gen` scenarios into ClickHouse
18.16 and exports the collector's tables to DATA_DIR (TabSeparatedWithNames, addresses
as text). This script
  1. creates the schema the collector renders for chdb's version (`print-schema`) and
     loads those rows (the materialized views rebuild the rollups);
  2. runs every job of JOBS_JSON ([{"id", "name", "params"}]) — a cookbook query with
     native query parameters ({from:DateTime} ... bound by the server, not by text) —
     and prints {"id": TabSeparatedWithNames answer} as JSON on stdout, which the Rust
     test compares with 18.16's answers;
  3. checks the Grafana provisioning in GRAFANA_DIR (data source, dashboard provider,
     dashboards/*.json) against the structure Grafana expects, expands every panel and
     variable query as Grafana and the ClickHouse plugin would (see `expand` and
     `MACROS`), runs each on the scenario data (T0 - 8 days to T0 + 1 day) and
     requires non-empty, correctly typed answers. Prints "grafana ok: ..." on stderr.
Exits non-zero with a message on the first failure.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

# Timestamps in the exported rows are UTC text; parse them as UTC.
os.environ["TZ"] = "UTC"

import yaml  # noqa: E402

# One SQL splitter for every chdb check (this script's folder is on sys.path).
from check_sql_chdb import statements  # noqa: E402

try:
    from chdb import session as chs  # noqa: E402
except ImportError:
    print("check_cookbook_chdb: chdb is not installed (pip install chdb-core)", file=sys.stderr)
    sys.exit(2)

TABLES = ["rst_events", "flows", "anomalies", "sensor_stats", "batches"]
PLUGIN = "grafana-clickhouse-datasource"
DAY = 86400


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def log(msg):
    print(msg, file=sys.stderr)


class Server:
    def __init__(self, d):
        self.s = chs.Session(d)

    def tsv(self, sql, params=None):
        return self.s.query(sql, "TSVWithNames", params=params or {}).bytes().decode()

    def json(self, sql):
        return json.loads(self.s.query(sql, "JSONCompact").bytes().decode())


def load(ch, collector, data_dir):
    version = ch.tsv("SELECT version()").splitlines()[1]
    ddl = subprocess.run([collector, "print-schema", "--server-version", version,
                          "--retention-days", "0"], check=True, capture_output=True, text=True).stdout
    ch.tsv("CREATE DATABASE IF NOT EXISTS rstwatch")
    for st in statements(ddl):
        ch.tsv(st)
    for table in TABLES:
        path = os.path.join(data_dir, table + ".tsv")
        with open(path) as f:
            cols = f.readline().rstrip("\n").split("\t")
        types = dict(line.split("\t") for line in ch.tsv(
            f"SELECT name, type FROM system.columns WHERE database = 'rstwatch' AND table = '{table}'"
        ).splitlines()[1:])
        # Addresses arrive as text; everything else in the table's own type.
        structure = ", ".join(f"`{c}` {'String' if types[c] == 'IPv6' else types[c]}" for c in cols)
        names = ", ".join(f"`{c}`" for c in cols)
        ch.tsv(f"INSERT INTO rstwatch.{table} ({names}) SELECT {names} "
               f"FROM file('{path}', 'TSVWithNames', '{structure}')")
    ch.tsv("USE rstwatch")
    n = ch.tsv("SELECT count() FROM rst_events").splitlines()[1]
    log(f"chdb ClickHouse {version}: loaded {n} rst_events")
    return version


def run_jobs(ch, collector, version, jobs):
    text = subprocess.run([collector, "print-schema", "--server-version", version, "--queries"],
                          check=True, capture_output=True, text=True).stdout
    queries = {}
    for chunk in text.split("-- query: ")[1:]:
        name, body = chunk.split("\n", 1)
        queries[name.strip()] = body.strip().rstrip(";")
    out = {}
    for job in jobs:
        out[job["id"]] = ch.tsv(queries[job["name"]], job["params"])
    return out


# --- Grafana -------------------------------------------------------------------------

# The plugin's macros, expanded exactly as grafana/clickhouse-datasource
# pkg/macros/macros.go does (`from`/`to` are the dashboard range in Unix seconds,
# `interval` Grafana's interval in seconds, at least 1):
#   $__fromTime           -> toDateTime(FROM)
#   $__toTime             -> toDateTime(TO)
#   $__timeFilter(col)    -> col >= toDateTime(FROM) AND col <= toDateTime(TO)
#   $__dateFilter(col)    -> col >= toDate('YYYY-MM-DD') AND col <= toDate('YYYY-MM-DD')
#   $__timeInterval(col)  -> toStartOfInterval(toDateTime(col), INTERVAL N second)
#   $__interval_s         -> N
# (The _ms variants, $__dateTimeFilter/$__dt, are not used by the dashboard and are
# refused here so that a new use is written down first.)
def utc_date(ts):
    import datetime
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")


MACROS = {
    "fromTime": lambda a, r: f"toDateTime({r['from']})",
    "toTime": lambda a, r: f"toDateTime({r['to']})",
    "timeFilter": lambda a, r: f"{a[0]} >= toDateTime({r['from']}) AND {a[0]} <= toDateTime({r['to']})",
    "dateFilter": lambda a, r: f"{a[0]} >= toDate('{utc_date(r['from'])}') AND {a[0]} <= toDate('{utc_date(r['to'])}')",
    "timeInterval": lambda a, r: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {max(r['interval'], 1)} second)",
    "interval_s": lambda a, r: str(max(r["interval"], 1)),
}
ARGS = {"fromTime": 0, "toTime": 0, "interval_s": 0, "timeFilter": 1, "dateFilter": 1, "timeInterval": 1}
MACRO_RE = re.compile(r"\$__(\w+)(?:\(([^)]*)\))?")


def expand_macros(sql, rng):
    def one(m):
        name, args = m.group(1), m.group(2)
        check(name in MACROS, f"macro $__{name} is not one the test knows")
        args = [a.strip() for a in args.split(",")] if args is not None else []
        check(len(args) == ARGS[name], f"$__{name}: expected {ARGS[name]} argument(s), got {args}")
        return MACROS[name](args, rng)
    return MACRO_RE.sub(one, sql)


VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand_vars(sql, values):
    """Grafana's template variables, as its templateSrv substitutes a single value
    (no format given: the raw value; the All option: the variable's custom allValue,
    used verbatim). `$__name` macros are left for the plugin."""
    def one(m):
        name = m.group(1) or m.group(3)
        if name.startswith("__"):
            return m.group(0)
        check(m.group(2) is None, f"${{{name}:{m.group(2)}}}: formats are not used by the dashboard")
        check(name in values, f"variable ${name} is not defined")
        return values[name]
    return VAR_RE.sub(one, sql)


def cookbook_panel_sql(text):
    """A cookbook file as the dashboard embeds it: comments dropped, parameters
    replaced by macros and variables (schema/README.md, "Grafana")."""
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("--")]
    s = "\n".join(lines).strip().rstrip(";")
    for a, b in [("{from:DateTime}", "$__fromTime"), ("{to:DateTime}", "$__toTime"),
                 ("{sensor:String}", "if('${sensor}' = '*', '', '${sensor}')"),
                 ("{service_port:UInt16}", "toUInt16(${service})")]:
        s = s.replace(a, b)
    return s


def check_datasource(gdir):
    ds = yaml.safe_load(open(os.path.join(gdir, "datasource.yaml")))
    check(ds.get("apiVersion") == 1, "datasource.yaml: apiVersion 1")
    (d,) = ds["datasources"]
    check(d["type"] == PLUGIN, f"data source type {d['type']}")
    jd = d["jsonData"]
    for k in ["host", "port", "protocol", "username", "defaultDatabase"]:
        check(k in jd, f"jsonData.{k} missing")
    check(jd["protocol"] == "http" and isinstance(jd["port"], int), "protocol http, numeric port")
    check("password" in d.get("secureJsonData", {}), "password in secureJsonData")
    check("password" not in jd, "no password in jsonData")
    prov = yaml.safe_load(open(os.path.join(gdir, "dashboards.yaml")))
    check(prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file", "dashboard provider")
    return d["uid"], jd["username"]


def check_readonly_user(ch, gdir, username):
    """The read-only user the data source names: the users.d snippet (readonly = 1,
    max_execution_time changeable, the rstwatch database only) and the SQL form, which
    current ClickHouse must parse (formatQuery; chdb cannot create users)."""
    import xml.etree.ElementTree as ET
    root = ET.parse(os.path.join(gdir, "clickhouse-readonly-user.xml")).getroot()
    user = root.find(f"users/{username}")
    check(user is not None, f"users.xml snippet: no user {username}")
    profile = root.find(f"profiles/{user.findtext('profile')}")
    check(profile is not None and profile.findtext("readonly") == "1", "profile with readonly = 1")
    check(profile.find("constraints/max_execution_time/changeable_in_readonly") is not None,
          "max_execution_time changeable in readonly mode (the plugin sends it)")
    check([d.text for d in user.findall("allow_databases/database")] == ["rstwatch"], "rstwatch only")
    text = open(os.path.join(gdir, "readonly-user.sql")).read()
    sts = statements(text)
    check(len(sts) == 3 and any("readonly = 1" in st for st in sts), "readonly-user.sql: profile, user, grant")
    for st in sts:
        literal = st.replace("\\", "\\\\").replace("'", "\\'").replace("\n", " ")
        ch.tsv(f"SELECT formatQuery('{literal}')")
        check(username in st, f"readonly-user.sql names {username}: {st[:60]}")


PANEL_TYPES = {"timeseries", "table", "stat", "bargauge", "barchart"}


def check_structure(dash, uid):
    for k in ["uid", "title", "schemaVersion", "panels", "templating", "time"]:
        check(k in dash, f"dashboard lacks {k}")
    check(dash["title"] == "TCP resets", "dashboard title")
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), "panel ids unique")
    for p in dash["panels"]:
        check(p["type"] in PANEL_TYPES, f"panel type {p['type']}")
        g = p["gridPos"]
        check(all(isinstance(g[k], int) for k in "xywh") and g["x"] + g["w"] <= 24, f"gridPos {g}")
        check(p["datasource"] == {"type": PLUGIN, "uid": uid}, f"{p['title']}: datasource")
        check(p["targets"], f"{p['title']}: no target")
        for t in p["targets"]:
            check(t["datasource"] == {"type": PLUGIN, "uid": uid}, f"{p['title']}: target datasource")
            check(t["editorType"] == "sql" and t["rawSql"].strip(), f"{p['title']}: raw SQL target")
            want = (0, "timeSeries") if p["type"] == "timeseries" else (1, "table")
            check((t["format"], t["queryType"]) == want, f"{p['title']}: format {t['format']}")
    names = {v["name"]: v for v in dash["templating"]["list"]}
    for n in ["sensor", "service", "cause"]:
        v = names.get(n)
        check(v and v["type"] == "query" and v["datasource"]["uid"] == uid and v["query"], f"variable {n}")
        check(v["includeAll"] and v.get("allValue"), f"variable {n}: an All option with a custom value")
    check(names.get("addr", {}).get("type") == "textbox", "variable addr (textbox)")
    return names


def check_links(dash, results):
    """Drill-down links: to this dashboard, to an existing table panel, with fields the
    row has."""
    by_id = {p["id"]: p for p in dash["panels"]}
    n = 0
    for p in dash["panels"]:
        for o in p["fieldConfig"].get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] != "links":
                    continue
                for link in prop["value"]:
                    url = link["url"]
                    check(url.startswith(f"/d/{dash['uid']}/"), f"{p['title']}: link {url}")
                    target = int(re.search(r"viewPanel=(\d+)", url).group(1))
                    check(by_id.get(target, {}).get("type") == "table", f"{p['title']}: link to panel {target}")
                    cols = [c["name"] for c in results[p["id"]]["meta"]]
                    for f in re.findall(r"\$\{__data\.fields\.(\w+)\}", url) + [o["matcher"]["options"]]:
                        check(f in cols, f"{p['title']}: link field {f} not in {cols}")
                    n += 1
    check(n >= 2, "drill-down links from services and anomalies")
    return n


NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+)")
COUNTS = {"rsts", "suspect_rsts", "flows", "refusals", "resets", "reports", "batches", "services"}


def check_types(title, meta, rows, timeseries):
    types = {c["name"]: c["type"] for c in meta}
    if timeseries:
        check(meta[0]["name"] == "time" and meta[0]["type"].startswith("DateTime"), f"{title}: time column {meta[0]}")
        check(any(NUMERIC.match(c["type"]) for c in meta[1:]), f"{title}: a numeric series")
    for name, ty in types.items():
        if name.endswith("_utc") and name != "time_utc":
            check(re.match(r"^(Nullable\()?DateTime", ty), f"{title}: {name} is {ty}")
        if name in COUNTS:
            check(NUMERIC.match(ty), f"{title}: {name} is {ty}")
    if "time_utc" in types:
        check(all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", r[list(types).index("time_utc")])
                  for r in rows), f"{title}: time_utc format")


def grafana(ch, gdir, t0):
    uid, username = check_datasource(gdir)
    check_readonly_user(ch, gdir, username)
    dash = json.load(open(os.path.join(gdir, "dashboards", "tcp-resets.json")))
    variables = check_structure(dash, uid)
    cookbook = {}
    for f in sorted(os.listdir(os.path.join(gdir, "..", "queries"))):
        cookbook[cookbook_panel_sql(open(os.path.join(gdir, "..", "queries", f)).read())] = f
    embedded = {cookbook[t["rawSql"]] for p in dash["panels"] for t in p["targets"] if t["rawSql"] in cookbook}
    for f in ["top_services.sql", "anomalies.sql", "suspected_injections.sql", "idle_timeouts.sql",
              "refused_hotspots.sql", "week_over_week.sql", "sensor_health.sql"]:
        check(f in embedded, f"the dashboard's {f} panel differs from the cookbook file")
    # Grafana's interval for 9 days over a ~1000-pixel panel: roundInterval gives 10m.
    rng = {"from": t0 - 8 * DAY, "to": t0 + DAY, "interval": 600}
    all_values = {n: v.get("allValue", "") for n, v in variables.items()}
    all_values["addr"] = ""
    # Variable queries first: each lists values (and the chosen ones must be there).
    options = {}
    for n in ["sensor", "service", "cause"]:
        r = ch.json(expand_macros(expand_vars(variables[n]["query"], all_values), rng))
        check(r["data"], f"variable {n}: no values")
        options[n] = [str(row[0]) for row in r["data"]]
    results = {}
    for p in dash["panels"]:
        for t in p["targets"]:
            r = ch.json(expand_macros(expand_vars(t["rawSql"], all_values), rng))
            check(r["data"], f"panel {p['title']}: no rows")
            check_types(p["title"], r["meta"], r["data"], p["type"] == "timeseries")
            results[p["id"]] = r
    links = check_links(dash, results)
    # One value of each variable, as a click on a drill-down link sets them: the RSTs
    # panel shows the rows behind the storm's service.
    chosen = {"sensor": "edge-a", "service": "443", "cause": "abort", "addr": "203.0.113.10:443"}
    for n in ["sensor", "service", "cause"]:
        check(chosen[n] in options[n], f"variable {n}: {chosen[n]} not among {options[n]}")
    drill = [p for p in dash["panels"] if p["title"] == "RSTs"][0]
    r = ch.json(expand_macros(expand_vars(drill["targets"][0]["rawSql"], chosen), rng))
    cols = [c["name"] for c in r["meta"]]
    check(r["data"] and all(row[cols.index("dport")] == 443 or row[cols.index("sport")] == 443 for row in r["data"]),
          "drill-down to 203.0.113.10:443")
    log(f"grafana ok: {len(dash['panels'])} panels, {len(options)} query variables, {links} drill-down links, "
        f"{len(embedded)} cookbook panels; drill-down rows: {len(r['data'])}")


def main():
    collector, data_dir, jobs_file, gdir, t0 = sys.argv[1:6]
    jobs = json.load(open(jobs_file))
    with tempfile.TemporaryDirectory() as d:
        ch = Server(d)
        try:
            version = load(ch, collector, data_dir)
            out = run_jobs(ch, collector, version, jobs)
            grafana(ch, gdir, int(t0))
        except Failed as e:
            log(f"FAIL: {e}")
            return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
