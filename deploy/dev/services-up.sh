#!/usr/bin/env bash
# Makes sure Postgres (127.0.0.1:5432, trust auth) and NATS with JetStream
# (127.0.0.1:4222) are up on a Debian machine, installing and starting them if needed.
# Used by .ci/run; handy on a laptop too.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  echo "$what did not come up on port $port" >&2
  exit 1
}

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 Postgres
fi
if command -v pg_isready >/dev/null; then
  for _ in $(seq 1 150); do
    pg_isready -h 127.0.0.1 -p 5432 -q && break
    sleep 0.2
  done
fi

if ! port_open 4222; then
  if [ ! -x /usr/sbin/nats-server ]; then
    echo "installing nats-server"
    apt_install nats-server
  fi
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 NATS
fi
echo "Postgres and NATS are up"
