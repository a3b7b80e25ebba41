#!/usr/bin/env python3
"""Runs a command and writes "<wall s> <user+sys s> <peak RSS KiB>" into a file.

    benches/timed.py [--threads THREADS_OUT] OUT command [args...]

The benchmark scripts time runs of 0.1-0.3 s, where `/usr/bin/time`'s hundredths of a
second are 3-10 % of the figure; this keeps microseconds (from `wait4`'s resource
usage and a monotonic clock). The command's standard streams are the caller's; the
exit status is the command's.

--threads also writes the CPU seconds of each of the command's threads, one
"<tid> <name> <CPU s>" line each, the main thread first. The threads' run times are
read from /proc/PID/task/TID/schedstat every 2 ms while the command runs; a thread
that ends loses its last 2 ms at most, and the main thread's figure is the process's
total less the others', so what the others lost is counted in it (an upper bound
for the main thread). The command must be the process itself (exec'd, as `taskset`
does), not a shell that starts it."""
import os
import sys
import time

args = sys.argv[1:]
threads_out = None
if args[:1] == ["--threads"]:
    if len(args) < 2:
        sys.exit(__doc__)
    threads_out, args = args[1], args[2:]
if len(args) < 2:
    sys.exit(__doc__)
out, cmd = args[0], args[1:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"timed.py: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
    finally:
        os._exit(127)


def poll_threads(pid, seen):
    """Records each live thread's (name, CPU ns) into `seen`; gone threads keep theirs."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except (OSError, ValueError, IndexError):
            continue
        seen[int(tid)] = (name.replace(" ", "_"), ns)


seen = {}
if threads_out is None:
    _, status, usage = os.wait4(pid, 0)
else:
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        poll_threads(pid, seen)
        time.sleep(0.002)
wall = time.perf_counter() - start
cpu = usage.ru_utime + usage.ru_stime
with open(out, "w") as f:
    f.write(f"{wall:.4f} {cpu:.4f} {usage.ru_maxrss}\n")
if threads_out is not None:
    others = {t: v for t, v in seen.items() if t != pid}
    main_name = seen.get(pid, (os.path.basename(cmd[0]), 0))[0]
    main_cpu = max(cpu - sum(ns for _, ns in others.values()) / 1e9, 0.0)
    with open(threads_out, "w") as f:
        f.write(f"{pid} {main_name} {main_cpu:.4f}\n")
        for t in sorted(others):
            name, ns = others[t]
            f.write(f"{t} {name} {ns / 1e9:.4f}\n")
sys.exit(os.waitstatus_to_exitcode(status))
