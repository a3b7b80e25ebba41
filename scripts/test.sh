#!/usr/bin/env bash
# The test command (README): set-up, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
# Deployment: ansible-lint, a real apply of site.yml to a throwaway chroot twice (the
# second changing nothing), unit hardening scores, the deployed chain capturing.
scripts/test-ansible.sh
# ClickHouse cluster (2 shards x 2 replicas + ZooKeeper on loopback): exactly once through
# a collector and a replica failure, canonical queries equal to a single server.
scripts/test-cluster.sh
