#!/usr/bin/env bash
# Fleet server benchmark (issue 15): check-ins per second on SQLite and PostgreSQL with a
# simulated fleet of 100,000 devices, the dashboard's page time at that size, and the
# server's memory (VmHWM, VmRSS). Bounded and on loopback only: the fleet is loaded
# through the store API, then the real server (a child process) gets a fixed number of
# signed check-ins and page loads, and is stopped. PostgreSQL is a server of its own in a
# temporary directory (Debian's postgresql, .ci/install-deps).
#
# Usage: benches/fleet.sh        knobs: DEVICES (100000), UNCHANGED (5000), CHANGED (100),
#                                PAGES (10), CLIENTS (4), ENGINES (sqlite,postgres)
# Output: a markdown table on stdout (crates/limpet-fleet/benches/fleet.rs says what each
# column is), progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" kernel=$(uname -r) mem=$(awk '/MemTotal/ {printf "%.0fGiB", $2/1048576}' /proc/meminfo) commit=$(git rev-parse --short HEAD)"
echo "# started $(date -u '+%Y-%m-%d %H:%M:%S UTC') loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
export DEVICES="${DEVICES:-100000}" UNCHANGED="${UNCHANGED:-5000}" CHANGED="${CHANGED:-100}"
cargo bench -p limpet-fleet --bench fleet --locked
echo "# ended $(date -u '+%Y-%m-%d %H:%M:%S UTC') loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
