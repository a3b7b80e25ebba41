#!/usr/bin/env python3
"""Starts a deployed systemd unit's commands inside a chroot target the way systemd
would for what the deploy test checks: User=, Group=, AmbientCapabilities=,
CapabilityBoundingSet=, NoNewPrivileges=, EnvironmentFile=, ExecStartPre= (each must
succeed) and ExecStart=.

The throwaway target is a chroot, which has no systemd as PID 1 to start services; the
rest of each unit's sandbox (ProtectSystem=, SystemCallFilter=, ...) is checked by
`systemd-analyze verify` and `security` instead. Capabilities and the user are applied
with setpriv(1), so the process really runs unprivileged with only those capabilities.

    run_unit.py ROOT UNIT [--pre-retries N]   prints the main process id, then exits
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time


def unit_lines(root, unit):
    """The unit file plus its drop-ins, as (key, value) pairs of the [Service] section."""
    paths = []
    for d in ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"):
        p = os.path.join(root, d, unit)
        if os.path.exists(p):
            paths.append(p)
            break
    if not paths:
        sys.exit(f"run_unit: no unit {unit} under {root}")
    dropins = os.path.join(root, "etc/systemd/system", unit + ".d")
    if os.path.isdir(dropins):
        paths += [os.path.join(dropins, f) for f in sorted(os.listdir(dropins)) if f.endswith(".conf")]
    out = []
    for p in paths:
        text = open(p).read().replace("\\\n", " ")
        section = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                out.append((k.strip(), v.strip()))
    return out


def env_file(root, spec):
    optional = spec.startswith("-")
    path = os.path.join(root, spec.lstrip("-").lstrip("/"))
    env = {}
    if not os.path.exists(path):
        if optional:
            return env
        sys.exit(f"run_unit: EnvironmentFile {spec} missing")
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


def expand(cmd, env):
    """systemd's ${VAR} (one word) expansion."""
    return [re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w) for w in shlex.split(cmd)]


def caps(value):
    return ",".join("+" + c.lower().removeprefix("cap_") for c in value.split())


def setpriv(props):
    user = props.get("User")
    if not user:
        return []
    args = ["setpriv", f"--reuid={user}", f"--regid={props.get('Group', user)}", "--init-groups"]
    amb = props.get("AmbientCapabilities", "")
    bound = props.get("CapabilityBoundingSet")
    if amb:
        args += [f"--inh-caps=-all,{caps(amb)}", f"--ambient-caps=-all,{caps(amb)}"]
    if bound is not None:
        args.append("--bounding-set=-all" + ("," + caps(bound) if bound else ""))
    if props.get("NoNewPrivileges") == "yes":
        args.append("--no-new-privs")
    return args + ["--"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("unit")
    ap.add_argument("--pre-retries", type=int, default=30)
    ap.add_argument("--log", default="/dev/null")
    a = ap.parse_args()
    lines = unit_lines(a.root, a.unit)
    props = {}
    for k, v in lines:
        props[k] = v  # the last assignment wins, as in systemd (enough for these keys)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for k, v in lines:
        if k == "EnvironmentFile":
            env.update(env_file(a.root, v))
    prefix = ["chroot", a.root] + setpriv(props)
    log = open(a.log, "ab")
    for k, v in lines:
        if k != "ExecStartPre":
            continue
        for attempt in range(a.pre_retries):
            r = subprocess.run(prefix + expand(v, env), env=env, stdout=log, stderr=log)
            if r.returncode == 0:
                break
            time.sleep(1)  # Restart=on-failure, in short
        else:
            sys.exit(f"run_unit: {a.unit}: ExecStartPre failed: {v}")
    main_cmd = props.get("ExecStart")
    if not main_cmd:
        sys.exit(f"run_unit: {a.unit} has no ExecStart")
    p = subprocess.Popen(prefix + expand(main_cmd, env), env=env, stdout=log, stderr=log,
                         start_new_session=True)
    if props.get("Type") == "oneshot":
        sys.exit(f"run_unit: {a.unit} failed" if p.wait() != 0 else 0)
    print(p.pid)


if __name__ == "__main__":
    main()
