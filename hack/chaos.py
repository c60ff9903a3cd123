#!/usr/bin/env python3
"""Fault tests of the operator on the local cluster (`make chaos`; a short seeded run is a stage
of `make test`). Python 3 standard library only; each run is seeded and prints its seed first:
the same seed gives the same models, operations and fault instants.

Scenarios (--scenario, repeatable; default all):
  kills       one operator, N model lifecycles (create, URL update, replicas change, serve plugin
              switched by annotation, delete; echo models and models whose download or server
              fails), the operator killed at random instants (SIGKILL, sometimes SIGTERM) and
              started again as a Deployment would
  kills-ha    the same with two replicas and leader election, the leader killed most often
  apiserver   kube-apiserver restarted mid-flow
  etcd        etcd paused (SIGSTOP) for 10-30 s mid-flow
  partition   two replicas; the leader's connections to the API server cut (a proxy between
              them drops every connection) for longer than the lease: it must step down, the
              standby take over, and nothing be written by the old leader once it lost the lease
  relist      the operator cut off while models change and the apiserver restarts (its watch
              cache forgets), so its watches resume from a resourceVersion that is gone (410):
              it must list again and converge
  nodes       on the two real nodes, models of two replicas (one per node) serving requests
              through their Services while the second node is drained, loses its kubelet, or has
              its container runtime restarted, at seeded instants (hack/chaos_nodes.py)
  real-node   on the real node: the download container killed mid-transfer (the next attempt
              resumes: the file server counts the bytes it sent), the kubelet restarted while
              a model serves, and a volume that fills (DiskFull, nothing served)

After the last fault each scenario waits until every live model shows the status its spec
implies (phase and reason, observedGeneration = generation, replicas, the serve plugin, the
revision of the URL asked for), then counts: duplicates (more than one Job, PVC, Deployment or
Service of a model revision, or a second `Downloaded` Event for one revision), orphans (objects
whose owning model is gone, or with our labels and no owner), objects left of deleted models or
of old revisions. It prints a table; the exit status is 1 when a model did not converge or
anything was duplicated, orphaned or left.

    hack/chaos.py                      # everything, a random seed
    hack/chaos.py --seed 42 --short    # what `make test` runs (fewer models and faults)
    hack/chaos.py --scenario partition --seed 7
"""

import argparse
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scale as bs  # noqa: E402  (the cluster client, identities, the audit log)

ROOT = bs.ROOT
GROUP = "mlmodel-chaos"
OPERATOR_BIN = bs.OPERATOR_BIN
MODELS = "/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/mlmodel-operator"
OWNED = {
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
}
LABEL_MODEL, LABEL_STEP, LABEL_REVISION = "mlmodel.dev/model", "mlmodel.dev/step", "mlmodel.dev/revision"
FAIL, MESSAGE = "kwok.mlmodel.dev/fail", "kwok.mlmodel.dev/message"
SERVE_PLUGIN = "mlmodel.dev/serve-plugin"
WRITES = {"create", "patch", "update", "delete", "deletecollection"}
LEASE_SECONDS = 6


def log(msg):
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


class Retry(Exception):
    pass


class Api:
    """The admin's JSON client; a call retries through an apiserver that is restarting or an
    etcd that is paused (for `patience` seconds)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.local = threading.local()

    def call(self, method, path, body=None, ctype="application/json", patience=120):
        deadline = time.time() + patience
        while True:
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self.cluster.host, self.cluster.port,
                                                   context=self.cluster.ctx, timeout=30)
                self.local.conn = conn
            try:
                headers = {"Accept": "application/json"}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = ctype
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.status >= 500 or resp.status == 429:
                    raise Retry(f"{method} {path}: {resp.status} {raw[:200]!r}")
                return resp.status, (json.loads(raw) if raw else None)
            except (OSError, http.client.HTTPException, Retry, ValueError) as e:
                conn.close()
                self.local.conn = None
                if time.time() > deadline:
                    raise RuntimeError(f"{method} {path}: {e}") from e
                time.sleep(0.5)

    def get(self, path):
        status, obj = self.call("GET", path)
        return obj if status == 200 else None

    def items(self, path, selector=None):
        if selector:
            path += "?labelSelector=" + selector
        status, obj = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {obj}")
        return obj["items"]

    def create(self, path, body):
        status, obj = self.call("POST", path, body)
        # A create retried after a lost answer finds what it made.
        if status not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: {status} {obj}")

    def merge(self, path, body):
        status, obj = self.call("PATCH", path, body, "application/merge-patch+json")
        if status not in (200, 404):
            raise RuntimeError(f"PATCH {path}: {status} {obj}")

    def delete(self, path):
        status, obj = self.call("DELETE", path)
        if status not in (200, 202, 404):
            raise RuntimeError(f"DELETE {path}: {status} {obj}")


# ---------------------------------------------------------------------------------------------
# The operator under test: replicas started, killed and started again as a Deployment would


class Replica:
    def __init__(self, name, kubeconfig, ns, work, leader_elect, extra_env=None):
        self.name, self.ns = name, ns
        self.argv = [OPERATOR_BIN, "run", "--namespace", ns, "--metrics-bind-address", "127.0.0.1:0"]
        if leader_elect:
            self.argv += ["--leader-elect", "--leader-election-namespace", ns,
                          "--lease-duration-seconds", str(LEASE_SECONDS)]
        self.env = dict(os.environ, KUBECONFIG=kubeconfig, MLMODEL_LOG="info", **(extra_env or {}))
        self.logpath = os.path.join(work, f"operator-{name}.log")
        self.proc = None
        self.pids = []
        self.exits = []          # (time, returncode, killed by us)
        self.killing = False
        self.held = False        # not restarted while held

    def start(self):
        log_file = open(self.logpath, "a")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log_file.close()
        self.pids.append(self.proc.pid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig):
        if self.alive():
            self.killing = True
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def reap(self):
        """Records an exit; True when the process has exited since the last call."""
        if self.proc is None or self.proc.poll() is None or self.proc.pid in [e[3] for e in self.exits]:
            return False
        self.exits.append((time.time(), self.proc.returncode, self.killing, self.proc.pid))
        self.killing = False
        return True

    def stop(self):
        self.held = True
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reap()


class Supervisor(threading.Thread):
    """Starts again, after a short pause, every replica that exited (killed, or stopped by
    itself, as a leader that lost its lease does)."""

    def __init__(self, replicas, rng):
        super().__init__(daemon=True)
        self.replicas, self.rng = replicas, rng
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.due = {}

    def run(self):
        while not self.stopped.wait(0.1):
            with self.lock:
                now = time.time()
                for r in self.replicas:
                    if r.reap():
                        self.due[r.name] = now + self.rng.uniform(0.2, 1.5)
                    if not r.held and not r.alive() and self.due.get(r.name, 0) <= now:
                        r.start()
                        self.due.pop(r.name, None)

    def stop(self):
        self.stopped.set()
        self.join()
        for r in self.replicas:
            r.stop()


class LeaseWatch(threading.Thread):
    """The Lease's holder over time (polled every 100 ms)."""

    def __init__(self, api, ns):
        super().__init__(daemon=True)
        self.api, self.path = api, LEASE.format(ns=ns)
        self.history = []        # (time, holder)
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(0.1):
            try:
                status, lease = self.api.call("GET", self.path, patience=1)
            except RuntimeError:
                continue
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity") if status == 200 else None
            if not self.history or self.history[-1][1] != holder:
                self.history.append((time.time(), holder))

    def holder(self):
        return self.history[-1][1] if self.history else None


def pid_of_holder(holder):
    try:
        return int((holder or "").rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


class Proxy(threading.Thread):
    """A TCP proxy in front of the API server that can cut every connection: while cut, it
    closes what is open and every new connection at once (a network that drops, not one that
    delays: nothing sent during the cut arrives later)."""

    def __init__(self, target_port):
        super().__init__(daemon=True)
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.cut_now = False
        self.lock = threading.Lock()
        self.open = set()
        self.dropped = 0

    def run(self):
        while True:
            client, _ = self.sock.accept()
            with self.lock:
                if self.cut_now:
                    client.close()
                    self.dropped += 1
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self.lock:
                self.open.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        a, b = pair
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1)
                if self.cut_now:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open.discard(pair)
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self):
        with self.lock:
            self.cut_now = True
            self.dropped += len(self.open)
            for pair in list(self.open):
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def heal(self):
        with self.lock:
            self.cut_now = False


# ---------------------------------------------------------------------------------------------
# Models: a seeded plan of lifecycles, and the status each one's final spec implies


class Model:
    def __init__(self, name, kind, rng):
        self.name, self.kind = name, kind
        self.url_version = 1
        self.replicas = rng.randint(1, 2)
        self.serve_plugin = "echo-server"
        self.deleted = False
        self.created = False
        # One operation at a time per model: a create slowed by a paused etcd finishes before
        # the same model's update is sent.
        self.lock = threading.Lock()

    def url(self):
        return f"https://models.example/{self.name}/v{self.url_version}/model.bin"

    def body(self):
        config = {}
        if self.kind == "dlfail":
            report = json.dumps({"reason": "NotFound", "message": f"HTTP 404 Not Found for {self.url()}"})
            config["download"] = {"podLabels": {FAIL: "job"}, "podAnnotations": {MESSAGE: report},
                                  "backoffLimit": 0}
        elif self.kind == "crash":
            config["serve"] = {"podLabels": {FAIL: "crashloop"},
                               "podAnnotations": {MESSAGE: "simulated crash"}}
        spec = {"modelURL": self.url(), "storageSize": "100Mi", "framework": "echo",
                "replicas": self.replicas, "expose": True, "plugins": {"config": config}}
        if self.kind == "dlfail":
            # kwok fails the download Job's pod by its label: a Job, whatever the replicas (per-pod
            # storage would download in the serving pods, which kwok starts as it finds them).
            spec["storageMode"] = "Shared"
        return {
            "apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
            "metadata": {"name": self.name, "annotations": {SERVE_PLUGIN: self.serve_plugin}},
            "spec": spec,
        }

    def expected(self):
        return {"ok": ("Ready", None), "dlfail": ("Failed", "DownloadFailed"),
                "crash": ("Failed", "CrashLoopBackOff")}[self.kind]


def plan_models(rng, n, window, prefix="m"):
    """n models and a timeline of operations on them within `window` seconds."""
    models, ops = [], []
    for i in range(n):
        kind = rng.choices(["ok", "dlfail", "crash"], weights=[70, 15, 15])[0]
        m = Model(f"{prefix}{i:03d}", kind, rng)
        models.append(m)
        t = rng.uniform(0, window * 0.3)
        ops.append((t, "create", m))
        choices = ["url", "replicas"] + (["plugin"] if kind == "ok" else [])
        for op in rng.sample(choices, rng.randint(0, len(choices))):
            t = min(window, t + rng.uniform(1, window / 3))
            ops.append((t, op, m))
        if rng.random() < 0.25:
            ops.append((min(window, t + rng.uniform(1, window / 3)), "delete", m))
    ops.sort(key=lambda o: o[0])
    return models, ops


def apply_op(api, ns, op, m, rng):
    with m.lock:
        _apply_op(api, ns, op, m)


def _apply_op(api, ns, op, m):
    path = MODELS.format(ns=ns) + "/" + m.name
    if op == "create":
        api.create(MODELS.format(ns=ns), m.body())
        m.created = True
    elif op == "url":
        m.url_version += 1
        api.merge(path, {"spec": {"modelURL": m.url()}})
    elif op == "replicas":
        m.replicas = 3 - m.replicas if m.replicas in (1, 2) else 1
        api.merge(path, {"spec": {"replicas": m.replicas}})
    elif op == "plugin":
        m.serve_plugin = "file-server" if m.serve_plugin == "echo-server" else "echo-server"
        api.merge(path, {"metadata": {"annotations": {SERVE_PLUGIN: m.serve_plugin}}})
    elif op == "delete":
        m.deleted = True
        api.delete(path)


def run_timeline(api, ns, ops, faults, rng, t0):
    """Runs model operations (4 at a time) and faults (each on a thread of its own, so a fault
    that lasts does not hold up the operations) at their instants from t0. Returns the instant
    the last fault or operation ended: convergence is counted from there."""
    events = [(t, "op", (op, m)) for t, op, m in ops] + [(t, "fault", f) for t, f in faults]
    events.sort(key=lambda e: e[0])
    threads = []
    sem = threading.Semaphore(4)
    ended = [t0]

    def do(op, m):
        try:
            apply_op(api, ns, op, m, rng)
        finally:
            ended.append(time.time())
            sem.release()

    def fault(fn):
        fn()
        ended.append(time.time())

    for t, what, payload in events:
        delay = t0 + t - time.time()
        if delay > 0:
            time.sleep(delay)
        if what == "op":
            sem.acquire()
            th = threading.Thread(target=do, args=payload, daemon=True)
        else:
            th = threading.Thread(target=fault, args=(payload,), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    return max(ended)


# ---------------------------------------------------------------------------------------------
# Checks


def owned_objects(api, ns):
    out = []
    for kind, path in OWNED.items():
        for o in api.items(path.format(ns=ns)):
            labels = o["metadata"].get("labels") or {}
            if LABEL_MODEL in labels or any(r.get("kind") == "MLModel" for r in o["metadata"].get("ownerReferences") or []):
                out.append((kind, o))
    return out


def container_args(obj):
    spec = obj["spec"]["template"]["spec"]
    containers = spec.get("initContainers", []) + spec.get("containers", [])
    return [a for c in containers for a in (c.get("args") or []) + (c.get("command") or [])]


def check(api, ns, models):
    """What is wrong now: problems (not converged yet, or never will), and counts."""
    problems = []
    live = {o["metadata"]["name"]: o for o in api.items(MODELS.format(ns=ns))}
    uids = {o["metadata"]["uid"]: name for name, o in live.items()}
    objects = owned_objects(api, ns)
    by_model = {}
    counts = {"duplicates": 0, "orphans": 0, "deleted_left": 0, "stale": 0}
    seen = {}
    for kind, o in objects:
        meta = o["metadata"]
        labels = meta.get("labels") or {}
        owners = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == "MLModel"]
        if not owners or not any(r["uid"] in uids for r in owners):
            if meta.get("deletionTimestamp") is None:
                counts["orphans"] += 1
                problems.append(f"orphan {kind} {meta['name']} (owner {[r.get('name') for r in owners]})")
            continue
        model = uids[owners[0]["uid"]]
        key = (kind, model, labels.get(LABEL_REVISION, ""))
        seen[key] = seen.get(key, 0) + 1
        by_model.setdefault(model, []).append((kind, o))
    for key, n in seen.items():
        if n > 1:
            counts["duplicates"] += n - 1
            problems.append(f"{n} {key[0]}s of model {key[1]} revision {key[2]}")
    for m in models:
        if not m.created:
            continue
        obj = live.get(m.name)
        if m.deleted:
            if obj is not None and obj["metadata"].get("deletionTimestamp") is None:
                problems.append(f"{m.name}: deleted but still there")
            left = [o for k, o in objects if (o["metadata"].get("labels") or {}).get(LABEL_MODEL) == m.name
                    and o["metadata"].get("deletionTimestamp") is None]
            if left and obj is None:
                counts["deleted_left"] += len(left)
                problems.append(f"{m.name}: deleted, {len(left)} objects left")
            continue
        if obj is None:
            problems.append(f"{m.name}: missing")
            continue
        st = obj.get("status") or {}
        phase, reason = m.expected()
        if st.get("observedGeneration") != obj["metadata"]["generation"]:
            problems.append(f"{m.name}: observedGeneration {st.get('observedGeneration')} != generation {obj['metadata']['generation']}")
            continue
        if st.get("phase") != phase or (reason and st.get("reason") != reason):
            problems.append(f"{m.name} ({m.kind}): {st.get('phase')}/{st.get('reason')}, want {phase}/{reason or '-'}")
            continue
        mine = by_model.get(m.name, [])
        revision = st.get("revision") or (st.get("download") or {}).get("revision")
        # Per-pod storage downloads in the serving pods' init containers, not in a Job.
        per_pod = (st.get("storage") or {}).get("mode") == "PerPod"
        downloads = [o for k, o in mine if k == ("Deployment" if per_pod else "Job")]
        if not any(m.url() in container_args(j) for j in downloads):
            problems.append(f"{m.name}: no download ({'serving pods' if per_pod else 'Job'}) for {m.url()}")
        if m.kind == "ok":
            if st.get("replicas") != m.replicas or st.get("readyReplicas") != m.replicas:
                problems.append(f"{m.name}: replicas {st.get('readyReplicas')}/{st.get('replicas')}, want {m.replicas}")
            if not (st.get("plugins") or {}).get("serve", "").startswith(m.serve_plugin + "@"):
                problems.append(f"{m.name}: serve plugin {st.get('plugins')}, want {m.serve_plugin}")
            deployments = [o for k, o in mine if k == "Deployment"]
            if len(deployments) != 1 or deployments[0]["spec"].get("replicas") != m.replicas:
                problems.append(f"{m.name}: {len(deployments)} Deployments, want 1 with {m.replicas} replicas")
            stale = [(k, o["metadata"]["name"]) for k, o in mine
                     if (o["metadata"].get("labels") or {}).get(LABEL_REVISION) not in (None, revision)
                     and o["metadata"].get("deletionTimestamp") is None]
            if stale:
                counts["stale"] += len(stale)
                problems.append(f"{m.name}: objects of an old revision left: {stale}")
    return problems, counts


def downloaded_events(api, ns):
    """Announcements that a revision was downloaded (the `Downloaded` Event, or a `Ready` one
    that says it), per model and revision, series counted: more than one is a write made twice."""
    seen = {}
    for e in api.items(f"/apis/events.k8s.io/v1/namespaces/{ns}/events"):
        found = re.search(r"revision (\S+) downloaded", e.get("note") or "")
        if not found or e.get("reason") not in ("Downloaded", "Ready"):
            continue
        key = ((e.get("regarding") or {}).get("name"), found.group(1))
        seen[key] = seen.get(key, 0) + ((e.get("series") or {}).get("count") or 1)
    return [(key, n) for key, n in seen.items() if n > 1]


def converge(api, ns, models, since, timeout):
    """Polls until nothing is wrong; returns (seconds after `since`, problems, counts)."""
    deadline = time.time() + timeout
    while True:
        try:
            problems, counts = check(api, ns, models)
        except RuntimeError as e:
            problems, counts = [f"cannot read: {e}"], {}
        if not problems or time.time() > deadline:
            return time.time() - since, problems, counts
        time.sleep(1)


# ---------------------------------------------------------------------------------------------
# Scenarios


class Env:
    """One scenario's namespace, identities and operator replicas."""

    def __init__(self, cluster, api, work, tag, rng):
        self.cluster, self.api, self.rng = cluster, api, rng
        self.ns = bs.new_namespace(cluster, f"chaos-{tag}")
        self.work = work
        self.replicas = []
        self.supervisor = None
        self.lease = None
        self.proxy = None
        cluster.kubectl("apply", "-f", "-", input=lease_role(self.ns), stdout=subprocess.DEVNULL)

    def replica(self, name, leader_elect, via_proxy=False):
        kubeconfig = bs.mint_identity(self.work, f"{GROUP}-{self.ns}-{name}", group=GROUP)
        if via_proxy:
            if self.proxy is None:
                self.proxy = Proxy(self.cluster.port)
                self.proxy.start()
            text = open(kubeconfig).read().replace(f":{self.cluster.port}", f":{self.proxy.port}")
            open(kubeconfig, "w").write(text)
        r = Replica(name, kubeconfig, self.ns, self.work, leader_elect)
        r.user = f"{GROUP}-{self.ns}-{name}"
        self.replicas.append(r)
        return r

    def start(self):
        self.lease = LeaseWatch(self.api, self.ns)
        self.lease.start()
        self.supervisor = Supervisor(self.replicas, self.rng)
        self.supervisor.start()

    def leader(self):
        pid = pid_of_holder(self.lease.holder())
        return next((r for r in self.replicas if r.alive() and r.proc.pid == pid), None)

    def wait_leader(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.leader()
            if r:
                return r
            time.sleep(0.2)
        raise RuntimeError("no replica took the lease")

    def stop(self, keep):
        if self.supervisor:
            self.supervisor.stop()
        if self.lease:
            self.lease.stopped.set()
        if not keep:
            bs.delete_namespace(self.cluster, self.ns, wait=False)
            self.cluster.kubectl("delete", "clusterrolebinding", self.ns, "--ignore-not-found",
                                 stdout=subprocess.DEVNULL)


def lease_role(ns):
    return f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: mlmodel-operator}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {GROUP}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: mlmodel-operator-leader-election, namespace: {ns}}}
rules: [{{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, patch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: mlmodel-operator-leader-election, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: mlmodel-operator-leader-election}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {GROUP}}}]
"""


def result(name, env, models, faults, converged_s, problems, counts, extra=None):
    live = [m for m in models if m.created and not m.deleted]
    bad = {p.split(":")[0].split(" ")[0] for p in problems}
    converged = sum(1 for m in live if m.name not in bad)
    dups = downloaded_events(env.api, env.ns)
    counts = dict(counts)
    counts["duplicates"] = counts.get("duplicates", 0) + sum(n - 1 for _, n in dups)
    for key, n in dups:
        problems.append(f"{n} Downloaded Events for {key}")
    r = {"scenario": name, "faults": faults, "models": len([m for m in models if m.created]),
         "live": len(live), "converged": converged, "converge_s": converged_s,
         "problems": problems, **counts}
    r.update(extra or {})
    return r


def faults_at(rng, n, window, fn):
    return sorted((rng.uniform(window * 0.05, window), fn) for _ in range(n))


def scenario_kills(ctx, ha):
    rng, n, window = ctx.rng, ctx.models, ctx.window
    name = "kills-ha" if ha else "kills"
    env = Env(ctx.cluster, ctx.api, ctx.work, name, rng)
    reps = [env.replica("a", ha)] + ([env.replica("b", ha)] if ha else [])
    env.start()
    if ha:
        env.wait_leader()
    models, ops = plan_models(rng, n, window)
    kinds = {"SIGKILL": 0, "SIGTERM": 0}

    def kill():
        target = env.leader() if ha and rng.random() < 0.7 else rng.choice(reps)
        target = target or rng.choice(reps)
        sig = signal.SIGKILL if rng.random() < 0.8 else signal.SIGTERM
        kinds[sig.name] += 1
        target.kill(sig)

    faults = faults_at(rng, ctx.kills, window, kill)
    t0 = time.time()
    last = run_timeline(ctx.api, env.ns, ops, faults, rng, t0)
    log(f"{name}: timeline done in {time.time() - t0:.0f}s; waiting for convergence")
    secs, problems, counts = converge(ctx.api, env.ns, models, last, ctx.timeout)
    starts = sum(len(r.pids) for r in reps)
    res = result(name, env, models, {k: v for k, v in kinds.items() if v}, secs, problems, counts,
                 {"operator_starts": starts})
    env.stop(ctx.keep)
    return res


def scenario_control_plane(ctx, what):
    """The API server restarted, or etcd paused, mid-flow; one replica with leader election
    (as deploy/ ships it)."""
    rng = ctx.rng
    n, window = max(8, ctx.models // 3), ctx.window
    env = Env(ctx.cluster, ctx.api, ctx.work, what, rng)
    env.replica("a", True)
    env.start()
    env.wait_leader()
    models, ops = plan_models(rng, n, window)
    injected = {}

    def restart_apiserver():
        injected["apiserver restart"] = injected.get("apiserver restart", 0) + 1
        subprocess.run([os.path.join(ROOT, "hack", "cluster.sh"), "restart", "kube-apiserver"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pause_etcd():
        pause = rng.uniform(10, 30)
        injected["etcd paused"] = injected.get("etcd paused", 0) + 1
        injected["etcd paused s"] = round(injected.get("etcd paused s", 0) + pause, 1)
        pid = bs.pid_of("etcd")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(pause)
        finally:
            os.kill(pid, signal.SIGCONT)

    fn = restart_apiserver if what == "apiserver" else pause_etcd
    count = 2 if ctx.full else 1
    faults = faults_at(rng, count, window * 0.8, fn)
    t0 = time.time()
    last = run_timeline(ctx.api, env.ns, ops, faults, rng, t0)
    secs, problems, counts = converge(ctx.api, env.ns, models, last, ctx.timeout)
    res = result(what, env, models, injected, secs, problems, counts,
                 {"operator_starts": len(env.replicas[0].pids)})
    env.stop(ctx.keep)
    return res


def writes_of(user, since, until=None):
    """The writes (not to the Lease) of `user` from the audit log: (time, verb, resource)."""
    return [e for e in bs.audit_events(user, since)
            if e[1] in WRITES and not e[2].startswith("leases") and (until is None or e[0] <= until)]


def scenario_partition(ctx):
    """The leader cut off from the API server for longer than its lease."""
    rng = ctx.rng
    n, window = max(8, ctx.models // 3), ctx.window
    env = Env(ctx.cluster, ctx.api, ctx.work, "partition", rng)
    a = env.replica("a", True, via_proxy=True)
    b = env.replica("b", True)
    b.held = True            # a first, so that a leads
    env.start()
    if env.wait_leader() is not a:
        raise RuntimeError("replica a did not lead first")
    b.held = False
    models, ops = plan_models(rng, n, window)
    cut_for = LEASE_SECONDS * 2 + rng.uniform(3, 8)
    marks = {}

    def partition():
        marks["cut"] = time.time()
        marks["a_pid"] = a.proc.pid
        env.proxy.cut()
        time.sleep(cut_for)
        env.proxy.heal()
        marks["heal"] = time.time()

    faults = [(window * rng.uniform(0.3, 0.5), partition)]
    t0 = time.time()
    last = run_timeline(ctx.api, env.ns, ops, faults, rng, t0)
    secs, problems, counts = converge(ctx.api, env.ns, models, last, ctx.timeout)
    # The old leader's exit, and the standby's first hold of the lease after the cut.
    a_exit = next((e[0] for e in a.exits if e[3] == marks["a_pid"]), None)
    b_pids = set(b.pids)
    takeover = next((t for t, h in env.lease.history if t >= marks["cut"] and pid_of_holder(h) in b_pids), None)
    # Writes of a after b took the lease, while b still held it: written twice, by two leaders.
    split = []
    if takeover:
        held_until = next((t for t, h in env.lease.history if t > takeover and pid_of_holder(h) not in b_pids), None)
        split = writes_of(a.user, takeover, held_until)
    if a_exit is None:
        problems.append("the cut-off leader never stopped")
    if takeover is None:
        problems.append("the standby never took the lease")
    if split:
        problems.append(f"{len(split)} writes by the old leader while the new one led: {split[:5]}")
    extra = {
        "cut_s": round(cut_for, 1),
        "stepped_down_after_s": round(a_exit - marks["cut"], 1) if a_exit else None,
        "takeover_after_s": round(takeover - marks["cut"], 1) if takeover else None,
        "split_brain_writes": len(split),
        "connections_dropped": env.proxy.dropped,
        "operator_starts": sum(len(r.pids) for r in env.replicas),
    }
    res = result("partition", env, models, {"leader cut off": 1}, secs, problems, counts, extra)
    env.stop(ctx.keep)
    return res


def scenario_relist(ctx):
    """Watches resumed from a resourceVersion the apiserver no longer has: a relist."""
    rng = ctx.rng
    n = max(8, ctx.models // 3)
    env = Env(ctx.cluster, ctx.api, ctx.work, "relist", rng)
    a = env.replica("a", False, via_proxy=True)
    env.start()
    models, ops = plan_models(rng, n, 1)
    t0 = time.time()
    run_timeline(ctx.api, env.ns, [o for o in ops if o[1] == "create"], [], rng, t0)
    secs, problems, counts = converge(ctx.api, env.ns, models, t0, ctx.timeout)
    # Cut off: changes it will not see as events, then the apiserver forgets them.
    env.proxy.cut()
    cut_at = time.time()
    later = [(0, op, m) for _, op, m in ops if op != "create"]
    for m in rng.sample(models, len(models) // 3):
        later.append((0, rng.choice(["url", "replicas", "delete"]), m))
    run_timeline(ctx.api, env.ns, later, [], rng, time.time())
    subprocess.run([os.path.join(ROOT, "hack", "cluster.sh"), "restart", "kube-apiserver"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env.proxy.heal()
    healed = time.time()
    secs, problems, counts = converge(ctx.api, env.ns, models, healed, ctx.timeout)
    lists = [e for e in bs.audit_events(a.user, healed) if e[1] == "list"]
    restarted = any(e[0] >= cut_at for e in a.exits)
    if not lists and not restarted:
        problems.append("no list after the watches resumed from a lost resourceVersion")
    res = result("relist", env, models, {"cut + apiserver restart": 1, "changes unseen": len(later)},
                 secs, problems, counts, {"relists": len(lists), "operator_starts": len(a.pids)})
    env.stop(ctx.keep)
    return res


# ---------------------------------------------------------------------------------------------


class Ctx:
    pass


def table(results):
    cols = ["scenario", "faults", "models", "converged", "duplicates", "orphans", "left", "converge_s"]
    rows = []
    for r in results:
        faults = ", ".join(f"{k} {v}" for k, v in r["faults"].items())
        rows.append([r["scenario"], faults, str(r["models"]), f"{r['converged']}/{r['live']}",
                     str(r.get("duplicates", 0)), str(r.get("orphans", 0)),
                     str(r.get("deleted_left", 0) + r.get("stale", 0)), f"{r['converge_s']:.1f}"])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


SCENARIOS = ["kills", "kills-ha", "apiserver", "etcd", "partition", "relist", "real-node", "nodes"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--short", action="store_true", help="fewer models and faults (make test)")
    p.add_argument("--scenario", action="append", choices=SCENARIOS)
    p.add_argument("--keep", action="store_true", help="keep the namespaces and the operators' logs")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"chaos: seed {seed}", flush=True)
    if not os.access(OPERATOR_BIN, os.X_OK):
        log("building the release binary")
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mlmodel-operator", "--bin",
                        "mlmodel-operator"], cwd=ROOT, check=True)
    if not bs.cluster_healthy():
        raise SystemExit("chaos: the local cluster is not up (hack/cluster.sh up)")
    ctx = Ctx()
    ctx.cluster = bs.Cluster()
    ctx.api = Api(ctx.cluster)
    ctx.full = not args.short
    ctx.models = 100 if ctx.full else 12
    ctx.kills = 24 if ctx.full else 4
    ctx.window = 120 if ctx.full else 30
    ctx.timeout = 300
    ctx.keep = args.keep
    ctx.work = tempfile.mkdtemp(prefix="mlmodel-chaos-")
    ctx.cluster.kubectl("apply", "--server-side", "-f", os.path.join(ROOT, "deploy", "rbac", "cluster_role.yaml"),
                        stdout=subprocess.DEVNULL)
    ctx.cluster.install_crd()
    chosen = args.scenario or (SCENARIOS if ctx.full else ["kills", "kills-ha", "partition"])
    results = []
    for i, name in enumerate(chosen):
        # Each scenario its own stream, so one can be run alone with the same seed.
        ctx.rng = random.Random(f"{seed}-{name}")
        log(f"scenario {name}")
        t = time.time()
        if name == "kills":
            r = scenario_kills(ctx, ha=False)
        elif name == "kills-ha":
            r = scenario_kills(ctx, ha=True)
        elif name in ("apiserver", "etcd"):
            r = scenario_control_plane(ctx, name)
        elif name == "partition":
            r = scenario_partition(ctx)
        elif name == "relist":
            r = scenario_relist(ctx)
        elif name == "real-node":
            import chaos_node
            r = chaos_node.run(ctx)
        elif name == "nodes":
            import chaos_nodes
            r = chaos_nodes.run(ctx)
        r["seconds"] = round(time.time() - t, 1)
        results.append(r)
        extra = {k: v for k, v in r.items() if k not in ("problems",)}
        log(f"{name}: {json.dumps(extra)}")
        for prob in r["problems"][:10]:
            log(f"  {name}: {prob}")
    print(f"chaos: seed {seed}")
    table(results)
    if args.json:
        json.dump({"seed": seed, "results": results}, open(args.json, "w"), indent=1)
    if args.keep:
        log(f"kept: the namespaces, and the operators' logs in {ctx.work}")
    else:
        shutil.rmtree(ctx.work, ignore_errors=True)
    failed = [r["scenario"] for r in results if r["problems"]]
    if failed:
        print(f"chaos: FAILED: {', '.join(failed)} (seed {seed})")
        sys.exit(1)
    print(f"chaos: all {len(results)} scenarios converged with nothing duplicated, orphaned or left (seed {seed})")


if __name__ == "__main__":
    main()
