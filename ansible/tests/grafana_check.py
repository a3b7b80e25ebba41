#!/usr/bin/env python3
"""What the grafana role provisioned into the target root, checked the way Grafana
would use it (Grafana itself cannot be installed here): the data source's credentials
open the deployed ClickHouse over HTTP as the read-only user and run a dashboard-shaped
query, and the dashboard folder holds exactly the repository's dashboards, valid JSON,
readable by the grafana group and by nobody else.

usage: grafana_check.py ROOT DASHBOARDS_SRC   (run in the chain's network namespace)
"""
import json
import os
import stat
import sys
import urllib.parse
import urllib.request

import yaml


def fail(msg):
    print(f"grafana_check: {msg}", file=sys.stderr)
    sys.exit(1)


def group_id(root, name):
    with open(os.path.join(root, "etc/group")) as f:
        for line in f:
            parts = line.split(":")
            if parts[0] == name:
                return int(parts[2])
    fail(f"no group {name} in {root}/etc/group")


def main():
    root, src = sys.argv[1], sys.argv[2]
    gid = group_id(root, "grafana")
    prov = os.path.join(root, "etc/grafana/provisioning")
    ds_path = os.path.join(prov, "datasources/rstwatch.yml")
    with open(ds_path) as f:
        ds = yaml.safe_load(f)["datasources"][0]
    for path in (ds_path, os.path.join(prov, "dashboards/rstwatch.yml")):
        st = os.stat(path)
        if st.st_gid != gid or stat.S_IMODE(st.st_mode) != 0o640:
            fail(f"{path}: group {st.st_gid} mode {stat.S_IMODE(st.st_mode):o}, want grafana 640")
    if ds["type"] != "grafana-clickhouse-datasource":
        fail(f"data source type {ds['type']}")
    j = ds["jsonData"]
    query = "SELECT count() FROM rst_events WHERE sensor_id = 'deploy-test' FORMAT TabSeparated"
    params = urllib.parse.urlencode({
        "user": j["username"],
        "password": ds["secureJsonData"]["password"],
        "database": j["defaultDatabase"],
        "query": query,
    })
    url = f"{j['protocol']}://{j['host']}:{j['port']}/?{params}"
    try:
        rows = urllib.request.urlopen(url, timeout=10).read().decode().strip()
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        fail(f"the provisioned data source cannot query ClickHouse: {e}")
    print(f"   grafana data source ({j['username']} over {j['protocol']}:{j['port']}): "
          f"{rows} rst_events rows")

    with open(os.path.join(prov, "dashboards/rstwatch.yml")) as f:
        folder = yaml.safe_load(f)["providers"][0]["options"]["path"]
    deployed = os.path.join(root, folder.lstrip("/"))
    want = sorted(os.listdir(src))
    got = sorted(os.listdir(deployed))
    if got != want:
        fail(f"dashboards deployed {got}, repository has {want}")
    for name in got:
        path = os.path.join(deployed, name)
        with open(path) as f:
            dash = json.load(f)
        with open(os.path.join(src, name)) as f:
            if json.load(f) != dash:
                fail(f"{name} differs from the repository's")
        st = os.stat(path)
        if st.st_gid != gid or stat.S_IMODE(st.st_mode) & 0o007:
            fail(f"{path}: group {st.st_gid} mode {stat.S_IMODE(st.st_mode):o}")
        print(f"   grafana dashboard {name}: {len(dash.get('panels', []))} panels, "
              f"provisioned from {folder}")


if __name__ == "__main__":
    main()
