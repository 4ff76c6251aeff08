#!/usr/bin/env bash
# The loopback cluster test (see run.py): builds the service binaries (debug; set
# CLUSTER_PROFILE=release for a release build), installs nginx with its stream module
# if missing, and runs it.
#
#   bash deploy/cluster/run.sh                         # full run: 90 s of load, faults
#   CLUSTER_DURATION=40 CLUSTER_RATE=4 bash deploy/cluster/run.sh    # the bounded run
#   CLUSTER_MEASURE=1 CLUSTER_INSTANCES=1 bash deploy/cluster/run.sh # throughput
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# .ci/run installs the tools up front (CLUSTER_INSTALL_ONLY=1), outside the test's time.
[ "${CLUSTER_INSTALL_ONLY:-0}" = 1 ] && exit 0

profile="${CLUSTER_PROFILE:-debug}"
flags=(); [ "$profile" = release ] && flags=(--release)
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q "${flags[@]}" -p careloop-app -p careloop-intake -p careloop-referral \
  -p careloop-peer-assignment -p careloop-follow-up --bins
export CLUSTER_BIN="${CLUSTER_BIN:-$target/$profile}"
exec python3 deploy/cluster/run.py
