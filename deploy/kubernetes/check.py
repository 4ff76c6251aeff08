#!/usr/bin/env python3
"""Offline checks of the rendered manifests (deploy/check.sh runs this after
`kubectl kustomize` and kubernetes-validate): what the schemas cannot say.

Usage: check.py RENDERED_DIR   (base.yaml, dev.yaml, production.yaml in it)
"""
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = ["intake", "referral", "peer-assignment", "follow-up"]
failures = []


def need(cond, msg):
    if not cond:
        failures.append(msg)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# CloudNativePG 1.30 (postgresql.cnpg.io/v1): the fields these manifests use, as its
# Cluster and ScheduledBackup CRDs define them (kubernetes-validate has no CRD schemas).
CNPG_CLUSTER_SPEC = {"instances", "imageName", "primaryUpdateStrategy", "bootstrap", "postgresql", "storage",
                     "walStorage", "resources", "affinity", "backup"}
CNPG_SYNC = {"method", "number", "dataDurability"}


def check_cnpg(docs, name, production):
    clusters = [d for d in docs if d["kind"] == "Cluster"]
    need(len(clusters) == 1, f"{name}: one CloudNativePG Cluster")
    for c in clusters:
        need(c["apiVersion"] == "postgresql.cnpg.io/v1", f"{name}: Cluster apiVersion")
        spec = c["spec"]
        need(set(spec) <= CNPG_CLUSTER_SPEC, f"{name}: Cluster fields {set(spec) - CNPG_CLUSTER_SPEC}")
        need(spec["bootstrap"]["initdb"]["database"] == "careloop", f"{name}: database careloop")
        need(c["metadata"]["name"] == "careloop-db", f"{name}: the Cluster is careloop-db (secret careloop-db-app)")
        if production:
            need(spec["instances"] == 3, f"{name}: three Postgres instances")
            sync = spec["postgresql"].get("synchronous", {})
            need(set(sync) <= CNPG_SYNC and sync.get("method") in ("any", "first") and sync.get("number", 0) >= 1
                 and sync.get("dataDurability") == "required", f"{name}: synchronous replication {sync}")
            need("barmanObjectStore" in spec.get("backup", {}), f"{name}: backups to object storage")
            sched = [d for d in docs if d["kind"] == "ScheduledBackup"]
            need(len(sched) == 1 and sched[0]["spec"]["cluster"]["name"] == "careloop-db"
                 and len(sched[0]["spec"]["schedule"].split()) == 6, f"{name}: a daily ScheduledBackup")
            conns = int(spec["postgresql"]["parameters"]["max_connections"])
            deps = by(docs, "Deployment")
            instances = sum(deps[s]["spec"]["replicas"] + 1 for s in SERVICES)  # + a rolling surge
            settings = [c["data"] for c in by(docs, "ConfigMap").values() if "CARELOOP_NAMESPACE" in c.get("data", {})]
            pool = int(settings[0].get("CARELOOP_DB_POOL_MAX", "8"))
            # Each process: its pool, its LISTEN connection and one to spare; plus the
            # migrations Job, and 10 for operators (psql, careloop replay/redrive).
            need_conns = (pool + 2) * (instances + 1) + 10
            need(conns >= need_conns, f"{name}: max_connections {conns} < {need_conns}")


def check(name, docs, production):
    deps = by(docs, "Deployment")
    pdbs = by(docs, "PodDisruptionBudget")
    cms = by(docs, "ConfigMap")
    config = next(v for k, v in cms.items() if k.startswith("careloop-config"))["data"]
    for s in SERVICES + ["frontdoor"]:
        need(s in deps, f"{name}: Deployment {s}")
        if s not in deps:
            continue
        pod = deps[s]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        for probe in ["readinessProbe", "livenessProbe"]:
            need(probe in c, f"{name}: {s} has a {probe}")
        if s in SERVICES:
            need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: {s} readiness on /readyz")
            need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: {s} liveness on /healthz")
            need(c["command"] == [f"/usr/local/bin/careloop-{s}"], f"{name}: {s} runs careloop-{s}")
            env = {e["name"]: e for e in c.get("env", [])}
            need("secretKeyRef" in env.get("DATABASE_URL", {}).get("valueFrom", {}),
                 f"{name}: {s} DATABASE_URL from a secret")
        need("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}),
             f"{name}: {s} resource requests and limits")
        sc = c.get("securityContext", {})
        need(pod["securityContext"].get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
             and sc.get("allowPrivilegeEscalation") is False, f"{name}: {s} non-root, read-only root fs")
        need(any(p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == s
                 for p in pdbs.values()), f"{name}: a PodDisruptionBudget for {s}")
        if production:
            need(deps[s]["spec"]["replicas"] >= 2, f"{name}: {s} runs 2+ replicas")
    job = [d for d in docs if d["kind"] == "Job"]
    need(len(job) == 1 and job[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "migrate",
         f"{name}: the migrations Job runs `careloop migrate`")
    # Secrets by reference: the only Secrets rendered are dev ones.
    secrets = [d for d in docs if d["kind"] == "Secret"]
    need(production is False or not secrets, f"{name}: production renders no Secret")
    for d in docs:
        need(str(d).count("password") == 0 or d["kind"] == "Cluster", f"{name}: no password in {d['kind']}")
    # The front door's configuration is the generated one.
    nginx = next(v for k, v in cms.items() if k.startswith("frontdoor-nginx"))["data"]["nginx.conf"]
    with open(os.path.join(HERE, "..", "frontdoor", "nginx.conf")) as f:
        need(nginx == f.read(), f"{name}: the front door ConfigMap is deploy/frontdoor/nginx.conf")
    kinds = {d["kind"] for d in docs}
    need({"Namespace", "NetworkPolicy", "Ingress", "Service", "ServiceAccount"} <= kinds, f"{name}: kinds {kinds}")
    if name != "base":
        check_cnpg(docs, name, production)
        replicas = config["CARELOOP_STREAM_REPLICAS"]
        need(replicas == ("3" if production else "1"), f"{name}: CARELOOP_STREAM_REPLICAS={replicas}")
        if production:
            need(len(config["NATS_URL"].split(",")) == 3, f"{name}: NATS_URL lists the three servers")
            need(config["CARELOOP_AUTH"] == "standard" and "CARELOOP_OIDC_ISSUER" in config,
                 f"{name}: staff sign in through OpenID Connect")


def check_nats_values():
    with open(os.path.join(HERE, "overlays", "production", "nats-values.yaml")) as f:
        v = yaml.safe_load(f)
    need(v["config"]["cluster"]["enabled"] and v["config"]["cluster"]["replicas"] == 3, "NATS: three servers")
    js = v["config"]["jetstream"]
    need(js["enabled"] and js["fileStore"]["enabled"], "NATS: JetStream on file storage")
    need(js["merge"].get("sync_interval") == "always", "NATS: sync_interval always")


rendered = sys.argv[1]
for name in ["base", "dev", "production"]:
    check(name, load(os.path.join(rendered, f"{name}.yaml")), name == "production")
check_nats_values()
if failures:
    print("manifest checks failed:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("manifests: base, dev and production have what careloop needs")
