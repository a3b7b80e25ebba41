#!/usr/bin/env bash
# Puts a capture into the page cache as a file freshly read from disk sits there, before
# a timed run: its cached pages dropped (`dd iflag=nocache count=0`), then read back
# whole. With --keep, only read (pages already cached stay as they are).
#
#   benches/page_cache.sh [--keep] FILE
#
# Why: how the file's pages sit in the page cache moves a mapped replay's time. A file
# read from disk is cached in large folios (2 MiB here), and mapping it costs a page
# fault per folio: ~2,300 minor faults for the 1.36 GB benchmark capture. This VM's
# DAMON daemon pages out parts of files left untouched for ~6 s, and reading the file
# back fills those holes with 4 KiB pages: then a mapped replay takes ~22,000 faults
# and ~0.09 s more system time, a quarter of a 0.35 s replay (benches/RESULTS.md,
# "The page cache's folios"). Reading only (--keep) measures whatever state the host
# left; dropping first measures the same state every time.
set -euo pipefail
keep=0
[ "${1:-}" = --keep ] && { keep=1; shift; }
[ $# -eq 1 ] || { echo "usage: $0 [--keep] FILE" >&2; exit 2; }
[ "$keep" = 1 ] || dd if="$1" iflag=nocache count=0 status=none
cat "$1" >/dev/null
