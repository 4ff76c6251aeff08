#!/usr/bin/env python3
"""careloop's loopback cluster test: the distributed deployment on one machine, with
faults injected under load, and the invariants checked at the end.

Starts a private Postgres, three clustered nats-servers with JetStream (the event
stream at R3 through CARELOOP_STREAM_REPLICAS=3), N instances of each service binary
(careloop-<service>, N=2 by default) and nginx in front with the configuration
`careloop frontdoor nginx` generates. It first checks that nginx routes every
declared route to an instance of the owning service, registers facilities and a
roster through the front door, then sends a steady load of referrals while it

  * kills -9 one intake and one peer-assignment instance (and starts them again),
  * kills -9 the NATS node leading the stream (and starts it again),
  * restarts Postgres,

waits for quiescence and checks: every referral that got a 2xx is accepted or
waitlisted exactly once; no peer is over capacity; every accepted referral has
exactly one follow-up plan; no dead letters; outbox pending, projection lag and
JetStream consumer backlog back to zero. It prints what it injected and what it
counted, and exits 1 if an invariant does not hold.

Run it through deploy/cluster/run.sh (which builds the binaries). Everything listens
on 127.0.0.1 only, on free ports; everything it starts is stopped at the end.

Environment: CLUSTER_DURATION (seconds of load, default 90), CLUSTER_RATE (referrals
per second, default 5), CLUSTER_INSTANCES (per service, default 2), CLUSTER_FAULTS
(1 or 0), CLUSTER_QUIESCE (seconds to wait for quiescence, default 120),
CLUSTER_MEASURE=1 (throughput mode: no faults, as fast as CLUSTER_CONCURRENCY
clients go, every referral accepted), CLUSTER_BIN (the binaries' folder),
CLUSTER_KEEP=1 (keep the work folder).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CLUSTER_BIN", os.path.join(ROOT, "target", "debug"))
DURATION = float(os.environ.get("CLUSTER_DURATION", "90"))
RATE = float(os.environ.get("CLUSTER_RATE", "5"))
INSTANCES = int(os.environ.get("CLUSTER_INSTANCES", "2"))
FAULTS = os.environ.get("CLUSTER_FAULTS", "1") == "1"
QUIESCE = float(os.environ.get("CLUSTER_QUIESCE", "90"))
MEASURE = os.environ.get("CLUSTER_MEASURE", "0") == "1"
CONCURRENCY = int(os.environ.get("CLUSTER_CONCURRENCY", "8"))
KEEP = os.environ.get("CLUSTER_KEEP", "0") == "1"
SERVICES = ["intake", "referral", "peer-assignment", "follow-up"]
SECRET = "cluster-test-secret-0123456789abcdef"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout}s")


def find(binary, extra=()):
    for d in list(extra) + os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/usr/lib/postgresql/15/bin"]:
        p = os.path.join(d, binary)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    pg = "/usr/lib/postgresql"
    if os.path.isdir(pg):
        for v in sorted(os.listdir(pg), reverse=True):
            p = os.path.join(pg, v, "bin", binary)
            if os.path.isfile(p):
                return p
    raise SystemExit(f"{binary} is not installed (see deploy/cluster/run.sh)")


class Http:
    """A small JSON client (one connection per call: instances come and go)."""

    def __init__(self, port):
        self.port = port

    def call(self, method, path, token=None, body=None, headers=None, timeout=15):
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
            r = c.getresponse()
            data = r.read()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = data.decode(errors="replace")
            return r.status, parsed, dict(r.getheaders())
        finally:
            c.close()


class Cluster:
    def __init__(self, work):
        self.work = work
        self.procs = {}  # name -> Popen
        self.specs = {}  # name -> (argv, env, logfile)
        self.faults = []
        self.pg_port = free_port()
        self.pg_dir = os.path.join(work, "pg")
        self.nats = []  # (name, client port, cluster port, monitor port)
        self.instances = {}  # service -> [(name, http port, mllp port)]
        self.front = free_port()
        self.mllp = free_port()
        self.as_postgres = os.geteuid() == 0

    # -- processes --------------------------------------------------------------

    def spawn(self, name, argv, env=None, logfile=None):
        logfile = logfile or os.path.join(self.work, f"{name}.log")
        self.specs[name] = (argv, env, logfile)
        out = open(logfile, "ab")
        self.procs[name] = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()

    def respawn(self, name):
        argv, env, logfile = self.specs[name]
        self.spawn(name, argv, env, logfile)

    def kill9(self, name):
        p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self):
        """SIGTERM to everything, careloop's instances first; reports how long each
        took to drain (the pods' termination grace period must cover it)."""
        drained = {}
        services = [n for n in self.procs if any(n.startswith(s + "-") for s in SERVICES)]
        others = [n for n in reversed(list(self.procs)) if n not in services]
        for group in (services, others):
            started = time.monotonic()
            for name in group:
                if self.procs[name].poll() is None:
                    self.procs[name].send_signal(signal.SIGTERM)
            for name in group:
                p = self.procs[name]
                try:
                    p.wait(timeout=max(0.1, started + 30 - time.monotonic()))
                    if group is services:
                        drained[name] = time.monotonic() - started
                except subprocess.TimeoutExpired:
                    p.kill()
                    drained[name] = None
        self.pg_ctl("stop", "-m", "immediate", check=False)
        if drained:
            print("drain after SIGTERM: " + ", ".join(
                f"{n} {'killed after 30s' if t is None else f'{t:.1f}s'}" for n, t in drained.items()))

    # -- Postgres -----------------------------------------------------------------

    def pg(self, *args, check=True):
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pg_ctl(self, *args, check=True):
        return self.pg(find("pg_ctl"), "-D", self.pg_dir, "-l", os.path.join(self.work, "postgres.log"), *args, check=check)

    def start_postgres(self):
        os.makedirs(self.pg_dir)
        if self.as_postgres:
            shutil.chown(self.work, "postgres")
            shutil.chown(self.pg_dir, "postgres")
        self.pg(find("initdb"), "-D", self.pg_dir, "-A", "trust", "-U", "postgres", "--no-sync")
        opts = (f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1 "
                # 24 connections per instance (see docs/operations.md), and some spare.
                f"-c max_connections={10 * 4 * INSTANCES + 40} -c shared_buffers=256MB")
        self.pg_opts = opts
        self.pg_ctl("-o", opts, "-w", "start")
        log(f"postgres on 127.0.0.1:{self.pg_port}")

    def sql(self, query):
        r = subprocess.run(
            [find("psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", "careloop",
             "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    # -- NATS -----------------------------------------------------------------------

    def start_nats(self):
        for i in range(3):
            self.nats.append((f"nats-{i}", free_port(), free_port(), free_port()))
        routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, _, c, _ in self.nats)
        for name, port, cport, mport in self.nats:
            conf = os.path.join(self.work, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(f"""server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{mport}
jetstream {{
  store_dir: "{os.path.join(self.work, name)}"
  max_memory_store: 256MB
  max_file_store: 4GB
}}
cluster {{
  name: careloop
  listen: 127.0.0.1:{cport}
  routes: [{routes}]
}}
""")
            self.spawn(name, [find("nats-server"), "-c", conf])
        for name, port, _, _ in self.nats:
            wait_port(port, name)
        log("nats cluster: " + ", ".join(f"{n} :{p}" for n, p, _, _ in self.nats))

    def nats_url(self):
        return ",".join(f"nats://127.0.0.1:{p}" for _, p, _, _ in self.nats)

    def jsz(self, name=None):
        """JetStream state from a live node's monitoring endpoint."""
        for n, _, _, mport in self.nats:
            if name and n != name:
                continue
            if self.procs[n].poll() is not None:
                continue
            try:
                c = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
                c.request("GET", "/jsz?streams=true&consumers=true&config=true")
                data = json.loads(c.getresponse().read())
                c.close()
                return n, data
            except (OSError, ValueError):
                continue
        return None, None

    def stream_info(self):
        """(replicas, leader, [(consumer, pending, ack pending)]): the stream as its
        leader reports it, each consumer as its own leader reports it (a follower's view
        of a consumer can lag behind)."""
        replicas, leader, consumers = None, None, {}
        for n, _, _, _ in self.nats:
            _, data = self.jsz(n)
            if not data:
                continue
            for acc in data.get("account_details", []):
                for s in acc.get("stream_detail", []):
                    if s.get("name") != "CARELOOP_EVENTS":
                        continue
                    cl = s.get("cluster", {})
                    if replicas is None or cl.get("leader") == n:
                        replicas, leader = s["config"].get("num_replicas"), cl.get("leader")
                    for c in s.get("consumer_detail", []) or []:
                        if c["name"] not in consumers or c.get("cluster", {}).get("leader") == n:
                            consumers[c["name"]] = (c["name"], c.get("num_pending", 0),
                                                    c.get("num_ack_pending", 0), c.get("cluster", {}).get("leader"), n)
        return replicas, leader, [v[:3] for v in consumers.values()]

    def consumers_by_node(self):
        """Each node's view of each consumer, for a report."""
        out = []
        for n, _, _, _ in self.nats:
            _, data = self.jsz(n)
            for acc in (data or {}).get("account_details", []):
                for s in acc.get("stream_detail", []):
                    for c in s.get("consumer_detail", []) or []:
                        out.append((n, c["name"], c.get("num_pending"), c.get("num_ack_pending"),
                                    c.get("delivered", {}).get("stream_seq"), c.get("ack_floor", {}).get("stream_seq"),
                                    c.get("cluster", {}).get("leader")))
        return out

    # -- careloop -------------------------------------------------------------------

    def env(self, extra=None):
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/careloop",
            "NATS_URL": self.nats_url(),
            "CARELOOP_STREAM_REPLICAS": "3",
            "CARELOOP_AUTH": "dev",
            "CARELOOP_JWT_SECRET": SECRET,
            "CARELOOP_PUBLIC_URL": f"http://127.0.0.1:{self.front}",
            "RUST_LOG": "info,sqlx=warn,async_nats=warn",
        }
        e.update(extra or {})
        return e

    def careloop(self, *args):
        return subprocess.run([os.path.join(BIN, "careloop"), *args], env=self.env(), check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout

    def token(self, role, facility=None):
        args = ["token", "--role", role]
        if facility:
            args += ["--facility", facility]
        return self.careloop(*args).strip()

    def migrate(self):
        # The JetStream cluster elects its leaders first: retry until the R3 stream exists.
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([os.path.join(BIN, "careloop"), "migrate"], env=self.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode == 0:
                log("careloop migrate: migrations applied, stream created")
                return
            if time.monotonic() > deadline:
                raise SystemExit("careloop migrate failed:\n" + r.stdout[-3000:])
            time.sleep(1)

    def start_services(self):
        for s in SERVICES:
            self.instances[s] = []
            for i in range(INSTANCES):
                name = f"{s}-{i + 1}"
                port, mllp = free_port(), free_port()
                self.instances[s].append((name, port, mllp))
                self.spawn(name, [os.path.join(BIN, f"careloop-{s}")],
                           self.env({"CARELOOP_HTTP_ADDR": f"127.0.0.1:{port}",
                                     "CARELOOP_MLLP_ADDR": f"127.0.0.1:{mllp}"}))
        for s in SERVICES:
            for name, port, _ in self.instances[s]:
                self.wait_ready(name, port)
        log("services ready: " + ", ".join(f"{n} :{p}" for s in SERVICES for n, p, _ in self.instances[s]))

    def wait_ready(self, name, port, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise SystemExit(f"{name} exited; see {self.specs[name][2]}")
            try:
                if Http(port).call("GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{name} not ready within {timeout}s; see {self.specs[name][2]}")

    def start_frontdoor(self):
        args = ["frontdoor", "nginx", "--listen", f"127.0.0.1:{self.front}",
                "--mllp-listen", f"127.0.0.1:{self.mllp}", "--runtime-dir", self.work,
                "--log-dir", self.work, "--no-trusted-proxies", "--expose-upstream",
                "--mllp-upstream", ",".join(f"127.0.0.1:{m}" for _, _, m in self.instances["intake"])]
        for s in SERVICES:
            args += ["--upstream", f"{s}=" + ",".join(f"127.0.0.1:{p}" for _, p, _ in self.instances[s])]
        module = "/usr/lib/nginx/modules/ngx_stream_module.so"
        if os.path.exists(module):
            args += ["--stream-module", module]
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.careloop(*args))
        os.chmod(self.work, 0o777)
        nginx = find("nginx")
        subprocess.run([nginx, "-t", "-q", "-c", conf], check=True)
        self.spawn("nginx", [nginx, "-c", conf, "-g", "daemon off;"])
        wait_port(self.front, "nginx")
        wait_port(self.mllp, "nginx (MLLP)")
        log(f"front door: http://127.0.0.1:{self.front}, MLLP 127.0.0.1:{self.mllp}")


# -- the routing check -------------------------------------------------------------


def sample(path):
    out = []
    for seg in path.split("/"):
        if seg.startswith("{*"):
            out.append("sample/file.js")
        elif seg.startswith("{"):
            out.append("sample-1")
        else:
            out.append(seg)
    return "/".join(out)


def check_mllp(cl):
    """An HL7 v2 message through the front door's MLLP listener gets intake's ACK."""
    control = f"CL{uuid.uuid4().hex[:10]}"
    msg = "\r".join([
        f"MSH|^~\\&|EHR|ST-MARYS|CARELOOP|CARELOOP|20260101120000||ADT^A08|{control}|P|2.5.1",
        "EVN|A08|20260101120000",
        "PID|1||MRN-MLLP-1^^^ST-MARYS^MR||Doe^Jane||19900412|F",
    ]) + "\r"
    with socket.create_connection(("127.0.0.1", cl.mllp), timeout=15) as sock:
        sock.sendall(b"\x0b" + msg.encode() + b"\x1c\r")
        data = b""
        while b"\x1c" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    ack = data.decode(errors="replace")
    if "MSA|" not in ack or control not in ack:
        raise SystemExit(f"no ACK through the MLLP front door: {ack!r}")
    log("MLLP through the front door: ACK " + ack.split("MSA|")[1].split("|")[0] + f" for {control}")


def check_routing(cl):
    """Every declared route, sent through nginx, answers from an owning instance."""
    table = cl.careloop("routes").splitlines()[1:]
    routes = [line.split()[:3] for line in table if line.strip()]
    per_process = {(m, p) for s, m, p in routes
                   if all([x, m, p] in routes for x in SERVICES)}
    front = Http(cl.front)
    wrong, checked = [], 0
    ports = {s: {str(p) for _, p, _ in cl.instances[s]} for s in SERVICES}
    for service, method, path in routes:
        if (method, path) in per_process:
            continue
        if path == "/session/stream":
            continue  # checked below: it must not be buffered
        status, _, headers = front.call(method, sample(path), body={} if method != "GET" else None)
        upstream = headers.get("X-Careloop-Upstream", "")
        last = upstream.split(",")[-1].strip().rsplit(":", 1)[-1]
        checked += 1
        if last not in ports[service]:
            wrong.append(f"{method} {path} -> {upstream or status} (want {service})")
    for s in SERVICES:
        status, body, headers = front.call("GET", f"/v1/operations/backbone/{s}")
        last = headers.get("X-Careloop-Upstream", "").rsplit(":", 1)[-1]
        checked += 1
        if last not in ports[s]:
            wrong.append(f"GET /v1/operations/backbone/{s} -> {headers.get('X-Careloop-Upstream')}")
    # The console's event stream answers through the front door (401 without a session).
    status, _, headers = front.call("GET", "/session/stream")
    if headers.get("X-Careloop-Upstream", "").rsplit(":", 1)[-1] not in ports["intake"]:
        wrong.append("GET /session/stream not sent to intake")
    checked += 1
    if wrong:
        raise SystemExit("front door routes wrongly:\n  " + "\n  ".join(wrong))
    log(f"front door routing: {checked} routes reach an instance of their service")


# -- the load ------------------------------------------------------------------------


class Load:
    def __init__(self, cl, hospital):
        self.cl = cl
        self.front = Http(cl.front)
        self.hospital = hospital
        self.lock = threading.Lock()
        self.acked = {}  # key -> referral id
        self.failed = []  # keys never answered 2xx
        self.attempts = 0
        self.retried = 0
        self.errors = {}
        self.latencies = []
        self.discharged = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)

    def body(self, n):
        return {
            "facility": "st-marys",
            "person": {
                "identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": f"MRN-CL-{n}"}],
                "name": {"given": "Alex", "family": f"Rivera{n}"},
                "birth_date": "1990-04-12", "phone": "+1-402-555-0134", "language": "en",
                "gender": "female", "postcode": "68102",
                "preferences": {"peer_gender": "female", "lived_experience": ["bipolar"],
                                "contact_modes": ["phone"]},
            },
            "discharge": {"discharged_at": self.discharged.isoformat().replace("+00:00", "Z"),
                          "unit": "inpatient-psychiatry", "risk_level": ["high", "moderate", "low"][n % 3]},
            "consent": {"granted_at": "2026-01-01T00:00:00Z", "scope": "peer-support-referral",
                        "recorded_by": "discharge planner"},
            "needs": ["emotional"],
        }

    def send(self, n):
        """One referral, retried with the same Idempotency-Key until a 2xx (as a
        hospital's interface engine would), for at most 60 s."""
        key = f"cluster-{n}-{uuid.uuid4().hex[:8]}"
        body = self.body(n)
        deadline = time.monotonic() + 60
        first = True
        while time.monotonic() < deadline:
            t = time.monotonic()
            with self.lock:
                self.attempts += 1
                if not first:
                    self.retried += 1
            first = False
            try:
                status, r, _ = self.front.call("POST", "/v1/referrals", self.hospital, body,
                                               {"Idempotency-Key": key}, timeout=30)
            except OSError as e:
                status, r = type(e).__name__, None
            if isinstance(status, int) and 200 <= status < 300:
                with self.lock:
                    self.acked[key] = r["referral_id"]
                    self.latencies.append(time.monotonic() - t)
                return
            with self.lock:
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1
            time.sleep(0.5)
        with self.lock:
            self.failed.append(key)

    def run(self, duration, rate, concurrency=None):
        """Steady `rate` per second for `duration` (or, with `concurrency`, as fast as
        that many clients go)."""
        threads = []
        start = time.monotonic()
        n = 0
        if concurrency:
            stop = start + duration

            def worker(w):
                i = 0
                while time.monotonic() < stop:
                    self.send(w * 1_000_000 + i)
                    i += 1

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
            for t in threads:
                t.start()
        else:
            while time.monotonic() - start < duration:
                due = start + n / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                t = threading.Thread(target=self.send, args=(n,))
                t.start()
                threads.append(t)
                n += 1
        return threads


# -- faults ----------------------------------------------------------------------------


def inject_faults(cl, duration):
    """At 20 %, 45 % and 70 % of the load."""

    def at(frac):
        time.sleep(max(0.0, T_LOAD + frac * duration - time.monotonic()))

    def record(what):
        cl.faults.append((round(time.monotonic() - T0, 1), what))
        log("FAULT " + what)

    at(0.20)
    victims = [cl.instances["intake"][0][0], cl.instances["peer-assignment"][-1][0]]
    for v in victims:
        cl.kill9(v)
        record(f"kill -9 {v}")
    time.sleep(5)
    for v in victims:
        cl.respawn(v)
        record(f"started {v} again")

    at(0.45)
    _, leader, _ = cl.stream_info()
    node = leader if leader in cl.procs else cl.nats[1][0]
    cl.kill9(node)
    record(f"kill -9 {node} (NATS node{' leading the stream' if node == leader else ''})")
    time.sleep(10)
    cl.respawn(node)
    record(f"started {node} again")

    at(0.70)
    t = time.monotonic()
    # Immediate: Postgres crashes without flushing its write-ahead log, so the commits
    # that did not wait for the disk (architecture, guarantee 1) are lost as a power cut
    # would lose them, and the invariants below show that what they did is redone.
    cl.pg_ctl("-o", cl.pg_opts, "-m", "immediate", "-w", "restart")
    record(f"postgres crashed and restarted (pg_ctl restart -m immediate, {time.monotonic() - t:.1f}s)")


# -- checks ------------------------------------------------------------------------------


def backbone_health(cl, admin):
    out = {}
    for s in SERVICES:
        status, body, _ = Http(cl.front).call("GET", f"/v1/operations/backbone/{s}", admin)
        out[s] = body if status == 200 else None
    return out


def settled(cl, admin, ids):
    """Whether every acknowledged referral is decided and the backbone is idle."""
    rows = cl.sql("SELECT referral_id, status, waitlisted FROM referral.referrals")
    state = {r[0]: (r[1], r[2] == "t") for r in rows}
    undecided = [i for i in ids if not (state.get(i, ("", False))[0] == "accepted" or state.get(i, ("", False))[1])]
    health = backbone_health(cl, admin)
    busy = []
    for s, h in health.items():
        if h is None:
            busy.append(f"{s}: no answer")
            continue
        if h["outbox"]["pending"]:
            busy.append(f"{s} outbox {h['outbox']['pending']}")
        for p in h["projections"]:
            if p["pending"]:
                busy.append(f"{s}/{p['name']} {p['pending']}")
    _, _, consumers = cl.stream_info()
    for name, pending, ack_pending in consumers:
        if pending or ack_pending:
            busy.append(f"consumer {name} {pending}+{ack_pending}")
    return undecided, busy, health


def check(cl, load, admin):
    ids = sorted(set(load.acked.values()))
    results = []

    def verdict(name, ok, detail):
        results.append((name, ok, detail))

    deadline = time.monotonic() + QUIESCE
    while True:
        undecided, busy, health = settled(cl, admin, ids)
        if not undecided and not busy:
            log("quiescent: every acknowledged referral decided, backbone idle")
            break
        if time.monotonic() > deadline:
            log(f"NOT quiescent after {QUIESCE:.0f}s: {len(undecided)} undecided, busy: {busy[:8]}")
            break
        time.sleep(2)

    in_list = "'" + "','".join(ids) + "'" if ids else "''"
    state = {r[0]: r[1:] for r in cl.sql(
        f"SELECT referral_id, status, waitlisted FROM referral.referrals WHERE referral_id IN ({in_list})")}
    counts = lambda schema, event: {r[0]: int(r[1]) for r in cl.sql(
        f"SELECT aggregate_id, count(*) FROM {schema}.events WHERE event_type = '{event}' GROUP BY aggregate_id")}
    received = counts("referral", "ReferralReceived")
    accepted_ev = counts("referral", "ReferralAccepted")
    assigned_ev = counts("peer_assignment", "PeerAssigned")
    waitlisted_ev = counts("peer_assignment", "AssignmentWaitlisted")
    plans_ev = counts("follow_up", "PlanStarted")
    plan_rows = {r[0] for r in cl.sql("SELECT referral_id FROM follow_up.followups")}

    accepted = [i for i in ids if state.get(i, ["", ""])[0] == "accepted"]
    waitlisted = [i for i in ids if state.get(i, ["", ""])[0] != "accepted" and state.get(i, ["", "f"])[1] == "t"]
    bad = []
    for i in ids:
        if i not in state:
            bad.append(f"{i}: no referral")
        elif received.get(i, 0) != 1:
            bad.append(f"{i}: received {received.get(i, 0)} times")
        elif i in accepted and (accepted_ev.get(i, 0) != 1 or assigned_ev.get(i, 0) != 1):
            bad.append(f"{i}: accepted {accepted_ev.get(i, 0)}x, assigned {assigned_ev.get(i, 0)}x")
        elif i in waitlisted and (accepted_ev.get(i, 0) or assigned_ev.get(i, 0) or waitlisted_ev.get(i, 0) < 1):
            bad.append(f"{i}: waitlisted but accepted {accepted_ev.get(i, 0)}x, assigned {assigned_ev.get(i, 0)}x")
        elif i not in accepted and i not in waitlisted:
            bad.append(f"{i}: {state[i][0]}, neither accepted nor waitlisted")
    verdict("every 2xx referral accepted or waitlisted exactly once", not bad and bool(ids),
            f"{len(ids)} acknowledged: {len(accepted)} accepted, {len(waitlisted)} waitlisted"
            + (f"; {len(bad)} wrong, e.g. {bad[:5]}" if bad else ""))

    total_referrals = int(cl.sql("SELECT count(*) FROM referral.referrals")[0][0])
    unacked = total_referrals - len(ids)
    verdict("no referral twice (retries with the same Idempotency-Key)", unacked <= len(load.failed),
            f"{total_referrals} referrals stored for {len(ids)} acknowledged and {len(load.failed)} never acknowledged requests")

    held = cl.sql("""
        SELECT e.aggregate_id,
               sum(CASE e.event_type WHEN 'SlotReserved' THEN 1 ELSE -1 END) AS held,
               p.max_caseload
        FROM peer_assignment.events e JOIN peer_assignment.peers p ON p.peer_id = e.aggregate_id
        WHERE e.aggregate_type = 'Peer' AND e.event_type IN ('SlotReserved', 'SlotReleased')
        GROUP BY e.aggregate_id, p.max_caseload""")
    over = [(p, h, m) for p, h, m in held if int(h) > int(m)]
    rm_over = cl.sql("SELECT peer_id, active_count, max_caseload FROM peer_assignment.peers WHERE active_count > max_caseload")
    slots = sum(int(h) for _, h, _ in held)
    verdict("no peer over capacity", not over and not rm_over,
            f"{len(held)} peers hold {slots} slots (event store); over: {over + rm_over}")

    plan_bad = [i for i in accepted if plans_ev.get(i, 0) != 1 or i not in plan_rows]
    stray = [i for i in waitlisted if plans_ev.get(i, 0)]
    verdict("every accepted referral has exactly one follow-up plan", not plan_bad and not stray,
            f"{sum(1 for i in accepted if plans_ev.get(i, 0) == 1)} of {len(accepted)} accepted have one plan"
            + (f"; wrong: {[(i, plans_ev.get(i, 0)) for i in plan_bad[:5]]}" if plan_bad else "")
            + (f"; waitlisted with a plan: {stray[:5]}" if stray else ""))

    dead = {s: int(cl.sql(f"SELECT count(*) FROM {s}.dead_letters")[0][0])
            for s in ["intake", "referral", "peer_assignment", "follow_up"]}
    verdict("no dead letters", not any(dead.values()), f"{dead}")

    health = backbone_health(cl, admin)
    pending = {s: (h["outbox"]["pending"] if h else "?") for s, h in health.items()}
    lag = {f"{s}/{p['name']}": p["pending"] for s, h in health.items() if h for p in h["projections"] if p["pending"]}
    verdict("outbox pending back to zero", all(v == 0 for v in pending.values()), f"{pending}")
    verdict("projection lag back to zero", not lag and all(health.values()),
            f"pending per projection: {lag or 'all 0'}")
    replicas, leader, consumers = cl.stream_info()
    backlog = {n: (p, a) for n, p, a in consumers if p or a}
    verdict("JetStream consumers caught up", not backlog and bool(consumers),
            f"{len(consumers)} consumers; backlog: {backlog or 'none'}")
    if backlog:
        last = cl.sql("SELECT 1")  # noqa: the database answers
        for row in cl.consumers_by_node():
            if row[1] in backlog:
                print(f"    node {row[0]}: {row[1]} pending={row[2]} ack_pending={row[3]} "
                      f"delivered={row[4]} ack_floor={row[5]} leader={row[6]}")
    verdict("stream is R3", replicas == 3, f"CARELOOP_EVENTS replicas={replicas}, leader={leader}")
    return results


def main():
    work = tempfile.mkdtemp(prefix="careloop-cluster-")
    cl = Cluster(work)
    global T_LOAD
    ok = False
    try:
        log(f"work folder {work}; {INSTANCES} instance(s) per service; "
            + (f"measure: {CONCURRENCY} clients for {DURATION:.0f}s" if MEASURE
               else f"load {RATE}/s for {DURATION:.0f}s, faults {'on' if FAULTS else 'off'}"))
        cl.start_postgres()
        cl.start_nats()
        cl.migrate()
        cl.start_services()
        cl.start_frontdoor()
        check_routing(cl)

        front = Http(cl.front)
        admin = cl.token("admin")
        coordinator = cl.token("coordinator")
        hospital = cl.token("hospital", "st-marys")
        for fid, name in [("st-marys", "St. Mary's Hospital"), ("mercy", "Mercy Medical Center")]:
            s, r, _ = front.call("POST", "/v1/facilities", admin,
                                 {"id": fid, "name": name, "hl7_senders": [{"facility": fid.upper()}]})
            assert s in (200, 201), (s, r)
        expected = DURATION * RATE
        # Enough room for about two thirds of the load (the rest waits), or all of it
        # when measuring.
        peers = 20
        caseload = 200 if MEASURE else max(2, int(expected * 0.66 / peers) + 1)
        for i in range(peers):
            s, r, _ = front.call("POST", "/v1/peers", coordinator,
                                 {"name": f"Peer {i}", "languages": ["en"], "gender": "female",
                                  "max_caseload": caseload})
            assert s == 201, (s, r)
        log(f"registered 2 facilities and {peers} peers with {caseload} slots each through the front door")
        # The registrations reach the read models every instance reads.
        deadline = time.monotonic() + 30
        while int(cl.sql("SELECT count(*) FROM peer_assignment.peers")[0][0]) < peers or \
                int(cl.sql("SELECT count(*) FROM intake.facilities")[0][0]) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("roster or facilities not in the read models")
            time.sleep(0.2)
        check_mllp(cl)

        load = Load(cl, hospital)
        T_LOAD = time.monotonic()
        fault_thread = None
        if FAULTS and not MEASURE:
            fault_thread = threading.Thread(target=inject_faults, args=(cl, DURATION))
            fault_thread.start()
        threads = load.run(DURATION, RATE, CONCURRENCY if MEASURE else None)
        for t in threads:
            t.join()
        sent_for = time.monotonic() - T_LOAD
        if fault_thread:
            fault_thread.join()
        log(f"load done: {len(load.acked)} referrals acknowledged (2xx), {len(load.failed)} never, "
            f"{load.attempts} attempts ({load.retried} retries; non-2xx: {load.errors or 'none'})")

        if MEASURE:
            ids = sorted(set(load.acked.values()))
            deadline = time.monotonic() + QUIESCE
            while True:
                n = int(cl.sql("SELECT count(*) FROM referral.referrals WHERE status = 'accepted'")[0][0])
                if n >= len(ids) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            took = time.monotonic() - T_LOAD
            lat = sorted(load.latencies)
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
            print(f"\nTHROUGHPUT instances={INSTANCES} clients={CONCURRENCY}: {len(ids)} referrals "
                  f"submitted in {sent_for:.1f}s ({len(ids) / sent_for:.1f}/s acknowledged), "
                  f"{n} accepted end to end {took:.1f}s after the first ({n / took:.1f}/s); "
                  f"POST latency p50 {p(0.5) * 1000:.0f} ms, p95 {p(0.95) * 1000:.0f} ms")
            ok = n >= len(ids)
            return
        results = check(cl, load, admin)
        print("\n=== injected ===")
        for t, what in cl.faults or [(0, "nothing (CLUSTER_FAULTS=0)")]:
            print(f"  t={t:>6}s  {what}")
        print("=== counted ===")
        print(f"  referrals sent: {len(load.acked) + len(load.failed)}, acknowledged 2xx: {len(load.acked)}, "
              f"never acknowledged: {len(load.failed)}, HTTP attempts: {load.attempts}, retries: {load.retried}, "
              f"non-2xx answers: {load.errors or 'none'}")
        print("=== invariants ===")
        for name, good, detail in results:
            print(f"  {'PASS' if good else 'FAIL'}  {name}: {detail}")
        ok = all(good for _, good, _ in results)
        print(f"\n{sum(1 for r in results if r[1])} passed, {sum(1 for r in results if not r[1])} failed")
    finally:
        cl.stop_all()
        if KEEP or not ok:
            print(f"logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


T_LOAD = time.monotonic()

if __name__ == "__main__":
    main()
