#!/usr/bin/env python3
"""Runs a command and writes "<wall s> <user+sys s> <peak RSS KiB>" into a file.

    benches/timed.py OUT command [args...]

The benchmark scripts time runs of 0.1-0.3 s, where `/usr/bin/time`'s hundredths of a
second are 3-10 % of the figure; this keeps microseconds (from `wait4`'s resource
usage and a monotonic clock). The command's standard streams are the caller's; the
exit status is the command's."""
import os
import sys
import time

if len(sys.argv) < 3:
    sys.exit(__doc__)
out, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"timed.py: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    f.write(f"{wall:.4f} {usage.ru_utime + usage.ru_stime:.4f} {usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
