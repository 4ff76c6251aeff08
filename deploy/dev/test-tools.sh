#!/usr/bin/env bash
# Installs what the identity, FHIR client and browser tests need beyond Postgres and
# NATS, when it is missing: the Node packages of tests/identity and
# services/console/browser (from their lockfiles, `npm ci`), the Python FHIR client of
# tests/fhir-client (a venv from its pinned requirements) and Debian's Chromium. Run by .ci/run, and by the tests
# themselves on a machine that lacks them (one at a time, under a lock).
set -euo pipefail
cd "$(dirname "$0")/../.."

exec 9>"${TMPDIR:-/tmp}/careloop-test-tools.lock"
flock 9

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

for dir in tests/identity services/console/browser; do
  [ -f "$dir/package-lock.json" ] || continue
  if [ ! -d "$dir/node_modules" ]; then
    echo "installing the Node packages of $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done

# The independent FHIR client (Python): a virtual environment from pinned requirements.
if [ -f tests/fhir-client/requirements.txt ] && [ ! -x tests/fhir-client/.venv/bin/python ]; then
  echo "installing the FHIR client of tests/fhir-client"
  python3 -m venv tests/fhir-client/.venv
  tests/fhir-client/.venv/bin/pip install -q --disable-pip-version-check \
    -r tests/fhir-client/requirements.txt
fi

if [ -f services/console/browser/package.json ] && [ ! -x /usr/bin/chromium ]; then
  echo "installing Chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
echo "test tools are installed"
