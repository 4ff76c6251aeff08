#!/usr/bin/env bash
# Checks the monitoring configuration: Prometheus config and rules (promtool check),
# the rules' unit tests (promtool test rules), and that the Grafana dashboard is valid
# JSON whose queries use only metrics careloop exports or the recording rules define.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
fi

promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules/recording.yml prometheus/rules/alerts.yml
(cd prometheus/rules && promtool test rules tests.yml)

python3 - <<'PY'
import json, re
d = json.load(open("grafana/dashboards/careloop-continuity.json"))
known = {
    "careloop_referrals_received_total", "careloop_referrals", "careloop_continuity_discharges",
    "careloop_continuity_followed_up", "careloop_readmission_discharges", "careloop_readmissions_30d",
    "careloop_first_contact_seconds_bucket", "careloop_followups_overdue", "careloop_waitlist_size",
    "careloop_peer_caseload_used_ratio", "careloop_outbox_pending", "careloop_projection_lag_seconds",
    "careloop_dead_letters", "careloop_stream_resets_total", "careloop_ready",
}
rules = open("prometheus/rules/recording.yml").read()
known |= set(re.findall(r"record: (\S+)", rules))
for p in d["panels"]:
    for t in p.get("targets", []):
        for name in re.findall(r"careloop[:_][a-z0-9_:]+", t["expr"]):
            assert name in known, f"panel {p['title']!r} uses unknown metric {name}"
print(f"grafana dashboard: {len(d['panels'])} panels, every query uses a known metric")
PY

# Kubernetes manifests (deploy/kubernetes): rendered with kubectl's kustomize,
# validated against the Kubernetes 1.32 schemas (kubernetes-validate, strict), linted
# (yamllint), and checked for what schemas cannot say (kubernetes/check.py).
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_missing=()
command -v kubectl >/dev/null || apt_missing+=(kubernetes-client)
command -v yamllint >/dev/null || apt_missing+=(yamllint)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "installing ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate (PyPI)"
  python3 -m pip install -q kubernetes-validate==1.37.0
fi
yamllint -c kubernetes/.yamllint kubernetes
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
kubectl kustomize kubernetes/base > "$rendered/base.yaml"
kubectl kustomize kubernetes/overlays/dev > "$rendered/dev.yaml"
kubectl kustomize kubernetes/overlays/production > "$rendered/production.yaml"
for f in base dev production; do
  # CloudNativePG's kinds have no schema here (a warning); kubernetes/check.py checks them.
  kubernetes-validate --strict --quiet -k 1.32.0 "$rendered/$f.yaml" 2>&1 | grep -v "Couldn't find schema for kind \(Cluster\|ScheduledBackup\) with api version postgresql.cnpg.io" || true
  kubernetes-validate --strict --quiet --no-warn -k 1.32.0 "$rendered/$f.yaml"
done
python3 kubernetes/check.py "$rendered"
