#!/usr/bin/env python3
"""Writes schema/grafana/dashboards/tcp-resets.json, the "TCP resets" dashboard.

Run after changing a cookbook query (schema/queries/): the table panels embed the
cookbook files (comments dropped, parameters replaced as schema/README.md "Grafana"
says), and collector/tests/cookbook.rs fails when the JSON and the files differ.
Usage: scripts/grafana_dashboard.py
"""
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
Q = os.path.join(ROOT, "schema", "queries") + "/"
DS = {"type": "grafana-clickhouse-datasource", "uid": "rstwatch-clickhouse"}
SUBST = [
    ("{from:DateTime}", "$__fromTime"),
    ("{to:DateTime}", "$__toTime"),
    ("{sensor:String}", "if('${sensor}' = '*', '', '${sensor}')"),
    ("{service_port:UInt16}", "toUInt16(${service})"),
]
def cookbook(name):
    text = open(Q + name + ".sql").read()
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("--")]
    s = "\n".join(lines).strip()
    for a, b in SUBST:
        s = s.replace(a, b)
    return s

SF = "('${sensor}' = '*' OR sensor_id = '${sensor}')"
PF = "(${service} = 0 OR server_port = ${service})"
CF = "('${cause}' = '*' OR toString(cause) = '${cause}')"

panels = []
pid = [0]
def target(sql, fmt):
    return {"refId": "A", "datasource": DS, "editorType": "sql",
            "queryType": "timeSeries" if fmt == 0 else "table",
            "format": fmt, "rawSql": sql}
def panel(title, typ, sql, x, y, w, h, desc, fmt=1, field_links=None):
    pid[0] += 1
    p = {"id": pid[0], "type": typ, "title": title, "description": desc,
         "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [target(sql, fmt)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if field_links:
        for field, links in field_links.items():
            p["fieldConfig"]["overrides"].append({
                "matcher": {"id": "byName", "options": field},
                "properties": [{"id": "links", "value": links}]})
    if typ == "timeseries":
        p["fieldConfig"]["defaults"] = {"unit": "short", "custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}}
    panels.append(p)
    return pid[0]

DRILL = 11  # the id the RST table gets (asserted by the test)
def drill(var):
    return [{"title": "RSTs behind this row",
             "url": "/d/rstwatch-resets/tcp-resets?${__url_time_range}&var-sensor=${sensor}&" + var + "&viewPanel=" + str(DRILL)}]

panel("RSTs by class", "timeseries", f"""SELECT
    $__timeInterval(minute) AS time,
    toString(class) AS class,
    sum(rsts) AS rsts
FROM rst_minute
WHERE $__timeFilter(minute) AND {SF} AND {PF}
GROUP BY time, class
ORDER BY time, class""", 0, 0, 12, 8, "RSTs per interval by class, from the per-minute rollup (reset_rate_by_class.sql).", fmt=0)
panel("RSTs by cause", "timeseries", f"""SELECT
    $__timeInterval(minute) AS time,
    toString(cause) AS cause,
    sum(rsts) AS rsts
FROM rst_minute_cause
WHERE $__timeFilter(minute) AND {SF} AND {PF} AND {CF}
GROUP BY time, cause
ORDER BY time, cause""", 12, 0, 12, 8, "RSTs per interval by cause, from the per-minute rollup (reset_rate_by_cause.sql).", fmt=0)
panel("RSTs and suspect RSTs", "stat", f"""SELECT
    sum(rsts) AS rsts,
    sum(suspect_rsts) AS suspect_rsts
FROM rst_minute_cause
WHERE $__timeFilter(minute) AND {SF} AND {PF} AND {CF}""", 0, 8, 6, 6, "Totals in the time range.")
panel("Top services", "table", cookbook("top_services"), 6, 8, 18, 6,
      "top_services.sql: resets, flows, resets per flow and the main cause per service. Click a port for its RSTs.",
      field_links={"server_port": drill("var-service=${__data.fields.server_port}&var-addr=${__data.fields.server_addr}")})
panel("Anomalies", "table", cookbook("anomalies"), 0, 14, 24, 7,
      "anomalies.sql: storms, scans, backscatter, injection clusters and failovers with start, peak and affected services. Click a subject for its RSTs.",
      field_links={"subject": drill("var-addr=${__data.fields.subject}")})
panel("Suspected injections", "table", cookbook("suspected_injections"), 0, 21, 24, 7,
      "suspected_injections.sql: forged-looking RSTs with their evidence flags and TTL delta.")
panel("Idle timeouts", "table", cookbook("idle_timeouts"), 0, 28, 12, 7,
      "idle_timeouts.sql: firewall/NAT idle-timeout resets per service and the estimated timeout.")
panel("Refused hotspots", "table", cookbook("refused_hotspots"), 12, 28, 12, 7,
      "refused_hotspots.sql: services refusing most connections.",
      field_links={"server_port": drill("var-service=${__data.fields.server_port}&var-addr=${__data.fields.server_addr}")})
panel("Week over week", "table", cookbook("week_over_week"), 0, 35, 12, 7,
      "week_over_week.sql: RSTs per cause against the same range a week earlier.")
panel("Sensor health", "table", cookbook("sensor_health"), 12, 35, 12, 7,
      "sensor_health.sql: capture drops, flow-table evictions, spool backlog and delivery per sensor.")
panel("RSTs", "table", f"""SELECT
    concat(toString(toDateTime(intDiv(ts_us, 1000000), 'UTC')), '.', substring(toString(1000000 + ts_us % 1000000), 2)) AS time_utc,
    sensor_id,
    src_addr,
    sport,
    dst_addr,
    dport,
    toString(dir) AS dir,
    toString(class) AS class,
    toString(cause) AS cause,
    cause_detail,
    suspect,
    ttl,
    silence_ms
FROM
(
    SELECT
        *,
        replaceRegexpOne(IPv6NumToString(src), '^::ffff:', '') AS src_addr,
        replaceRegexpOne(IPv6NumToString(dst), '^::ffff:', '') AS dst_addr,
        if(dir = 'resp', sport, dport) AS server_port,
        if(dir = 'resp', src_addr, dst_addr) AS server_addr,
        if(position(server_addr, ':') > 0, concat('[', server_addr, ']:', toString(server_port)), concat(server_addr, ':', toString(server_port))) AS service
    FROM rst_events
    WHERE $__timeFilter(ts) AND {SF} AND {CF}
)
WHERE {PF}
    AND ('${{addr}}' = '' OR src_addr = '${{addr}}' OR dst_addr = '${{addr}}' OR service = '${{addr}}')
ORDER BY ts_us DESC
LIMIT 1000""", 0, 42, 24, 10,
      "The RSTs behind the other panels (drill-down target), filtered by sensor, service port, cause and address (an IP, or a service as addr:port).")
assert pid[0] == DRILL

def qvar(name, label, sql, allv):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": sql, "definition": sql, "refresh": 2, "includeAll": True,
            "allValue": allv, "multi": False, "sort": 0,
            "current": {"selected": True, "text": "All", "value": "$__all"}, "options": []}
templ = [
    qvar("sensor", "Sensor", "SELECT DISTINCT sensor_id FROM sensor_stats WHERE $__timeFilter(ts) ORDER BY sensor_id", "*"),
    qvar("service", "Service port", "SELECT DISTINCT server_port FROM rst_minute_cause WHERE $__timeFilter(minute) ORDER BY server_port", "0"),
    qvar("cause", "Cause", "SELECT toString(cause) FROM cause_remedies ORDER BY precedence", "*"),
    {"name": "addr", "label": "Address or service", "type": "textbox", "query": "",
     "current": {"text": "", "value": ""}, "options": [{"selected": True, "text": "", "value": ""}], "hide": 0},
]
dash = {
    "uid": "rstwatch-resets", "title": "TCP resets", "tags": ["rstwatch"],
    "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
    "refresh": "1m", "time": {"from": "now-24h", "to": "now"},
    "graphTooltip": 1,
    "description": "rstwatch: TCP resets by class and cause, top services, anomalies, suspected injections, idle timeouts and sensor health. Built on the SQL cookbook (schema/queries, schema/README.md).",
    "templating": {"list": templ},
    "annotations": {"list": []},
    "links": [],
    "panels": panels,
}
with open(os.path.join(ROOT, "schema", "grafana", "dashboards", "tcp-resets.json"), "w") as f:
    json.dump(dash, f, indent=2)
    f.write("\n")
print(f"tcp-resets.json: {len(panels)} panels")
