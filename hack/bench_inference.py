#!/usr/bin/env python3
"""A real model answering through the operator, on the local cluster's real node (prints figures,
asserts nothing). Python 3 standard library only; shares hack/bench_scale.py's helpers.

A scikit-learn model is trained here (hack/runtime/train_iris.py, variant a) and served from
this machine on the real node's bridge (http://10.88.0.1:<port>/model.joblib). The operator (the
release binary, started once, watching only this invocation's namespaces, as the user
mlmodel-bench-operator) deploys it as an MLModel `iris` (framework sklearn: the built-in
`mlserver` plugin, Seldon MLServer 1.7.1; expose, replicas 1, a 64Mi local-path claim), each run
in a fresh namespace whose pods run on the real node, deleted afterwards:

  cold   the MLServer image is first removed from the node's containerd (every reference of it,
         `ctr images rm --sync`, once no container uses it), so the kubelet pulls it again from
         the loopback registry and unpacks it
  warm   the image is present

Per run: `kubectl apply` -> the first correct prediction through the Service's ClusterIP (the
path status.inference.url names, /v2/models/iris/infer, posted every 0.1 s on a new connection:
answer 200 and outputs[0].data equal to what the model predicts locally), with the stages seen
by watches of the namespace (the model's conditions, the claim, the Job, the pods, the
EndpointSlice) and the image pull the kubelet reported (its Pulled event). Then N sequential requests (default 1000, after 50
warm-up) on one keep-alive connection (http.client) through the ClusterIP, and the same to the
pod IP (in the last warm run); then the same runtime started by hand on this machine
(hack/runtime/serve_check.py --hold: the image's root file system as a container would run it,
no engine, no cluster), its own start -> first correct answer (--runs times), and the same
request series. The last lines are the ratios (through the Service / by hand).

API requests per model come from the kube-apiserver's audit log (user mlmodel-bench-operator,
apply -> first answer or Ready, whichever is later) when the cluster has it.

The cluster is started if it is down, and stopped at the end only then. Needs root (ctr,
serve_check's mounts). Every wait has a timeout; request loops are bounded in count and time.

    hack/bench_inference.py                      # 3 cold and 3 warm runs, 1000 requests a series
    hack/bench_inference.py --runs 1 --requests 200
    hack/bench_inference.py --hand-only          # only the runtime by hand (no cluster needed)
"""

import argparse
import http.client
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scale as bs  # noqa: E402  (the cluster client, identities, the audit log)

ROOT = bs.ROOT
HACK = os.path.join(ROOT, "hack")
HOST_IP = "10.88.0.1"  # the real node's bridge (hack/node.sh): pods reach this machine there
CTR_SOCKET = "/run/mlmodel-operator/containerd/containerd.sock"
IMAGE_REPO = "seldonio/mlserver"
MODEL = "iris"
INFER_PATH = f"/v2/models/{MODEL}/infer"
REAL_NODE_LABEL = "mlmodel.dev/real-node"
STOP = threading.Event()


def log(msg):
    print(f"bench-inference: {msg}", file=sys.stderr, flush=True)


figure = bs.figure


def run(cmd, **kw):
    kw.setdefault("timeout", 1800)
    return subprocess.run(cmd, check=True, text=True, **kw)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def runs_note(values, spec="{:.2f}"):
    return "runs=" + ",".join(fmt(v, spec) for v in values)


# ---------------------------------------------------------------------------------------------
# The model and its file server


def train(work):
    py = run([os.path.join(HACK, "runtime", "sklearn-venv.sh")],
             capture_output=True).stdout.strip().splitlines()[-1]
    out = os.path.join(work, "model")
    line = run([py, os.path.join(HACK, "runtime", "train_iris.py"), "--out", out, "--variant", "a"],
               capture_output=True).stdout.strip().splitlines()[-1]
    path = os.path.join(work, "train.json")
    with open(path, "w") as f:
        f.write(line + "\n")
    return out, path, json.loads(line)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def file_server(directory):
    """Serves `directory` on the bridge (an ephemeral port) from a thread."""
    handler = lambda *a, **kw: Quiet(*a, directory=directory, **kw)
    srv = http.server.ThreadingHTTPServer((HOST_IP, 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://{HOST_IP}:{srv.server_address[1]}/model.joblib"


# ---------------------------------------------------------------------------------------------
# HTTP: one inference, and a series on one keep-alive connection


def answer_ok(status, body, predictions):
    if status != 200:
        return False
    try:
        return json.loads(body)["outputs"][0]["data"] == predictions
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def infer_once(host, port, body, connect_timeout=0.5, timeout=5.0):
    """One POST on a new connection: (status or None, body or the error). A short connect
    timeout: a SYN that finds no route yet (a ClusterIP kube-proxy has not programmed) is not
    answered, and waiting for it would delay the first answer."""
    conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(timeout)
        conn.request("POST", INFER_PATH, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


def series(host, port, body, predictions, n, warmup, max_seconds):
    """`warmup` then `n` sequential requests on one keep-alive connection (a new one only if the
    server closes it); the client's time from sending to the body read, per request."""
    conns = 0
    conn = None
    times, errors, wrong, slow = [], 0, 0, []
    answers = []
    deadline = time.monotonic() + max_seconds
    t_start = None
    busy0 = bs.machine_busy()  # the whole machine's CPU, all cores, during the measured part
    for i in range(warmup + n):
        if time.monotonic() > deadline or STOP.is_set():
            log(f"  series to {host}:{port} stopped after {max_seconds:.0f}s at request {i}")
            break
        if i == warmup:
            t_start = time.perf_counter()
            busy0 = bs.machine_busy()
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conns += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", INFER_PATH, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            dt = time.perf_counter() - t0
            status = resp.status
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = None
            if i >= warmup:
                errors += 1
            continue
        if i >= warmup:
            times.append(dt)
            answers.append((status, data))
            if dt > 0.1:
                slow.append((i - warmup, round(dt * 1e3)))
    elapsed = time.perf_counter() - t_start if t_start is not None else 0.0
    busy = bs.machine_busy() - busy0
    if conn is not None:
        conn.close()
    for status, data in answers:  # checked after the timing, so parsing costs nothing above
        if not answer_ok(status, data, predictions):
            wrong += 1
    if slow:
        log(f"  series to {host}:{port}: {len(slow)} request(s) over 100 ms (index, ms): {slow[:20]}")
    return {"times": times, "elapsed": elapsed, "errors": errors, "wrong": wrong,
            "connections": conns, "slow": len(slow), "busy_cores": busy / elapsed if elapsed else None}


def pct(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summarize(s):
    t = sorted(s["times"])
    if not t:
        return None
    return {"n": len(t), "p50_ms": pct(t, 50) * 1e3, "p99_ms": pct(t, 99) * 1e3,
            "mean_ms": statistics.fmean(t) * 1e3, "max_ms": t[-1] * 1e3,
            "rps": len(t) / s["elapsed"] if s["elapsed"] > 0 else None,
            "errors": s["errors"], "wrong": s["wrong"], "connections": s["connections"],
            "slow": s["slow"], "busy_cores": s["busy_cores"]}


# ---------------------------------------------------------------------------------------------
# Watches: the first time each milestone of a namespace's objects was seen


class Milestones:
    """A list then a watch of `path` (a relist on any error); `marks(obj)` gives the milestones an
    object shows now; the first time each was seen is kept, and the last object by name."""

    def __init__(self, cluster, path, marks):
        self.cluster, self.path, self.marks = cluster, path, marks
        self.first, self.objects = {}, {}
        self.lock = threading.Lock()
        self.stopped = False
        self.conn = None
        threading.Thread(target=self._run, daemon=True).start()

    def _see(self, obj, now):
        with self.lock:
            self.objects[obj["metadata"]["name"]] = obj
            for m in self.marks(obj):
                self.first.setdefault(m, now)

    def _run(self):
        while not self.stopped:
            try:
                lst = self.cluster.get(self.path)
                now = time.time()
                for obj in lst["items"]:
                    self._see(obj, now)
                self._watch(lst["metadata"]["resourceVersion"])
            except Exception as e:  # noqa: BLE001 - any failure: list again
                if not self.stopped:
                    log(f"  watch of {self.path}: {e}; listing again")
                    time.sleep(0.5)

    def _watch(self, rv):
        params = urllib.parse.urlencode({"watch": "1", "resourceVersion": rv,
                                         "allowWatchBookmarks": "true", "timeoutSeconds": "600"})
        conn = http.client.HTTPSConnection(self.cluster.host, self.cluster.port,
                                           context=self.cluster.ctx, timeout=120)
        self.conn = conn
        try:
            conn.request("GET", f"{self.path}?{params}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"watch: {resp.status}")
            while not self.stopped:
                line = resp.readline()
                if not line:
                    return
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {ev['object'].get('message')}")
                if ev["type"] in ("BOOKMARK", "DELETED"):
                    continue
                self._see(ev["object"], time.time())
        finally:
            conn.close()

    def at(self, mark):
        with self.lock:
            return self.first.get(mark)

    def obj(self, name):
        with self.lock:
            return self.objects.get(name)

    def stop(self):
        self.stopped = True
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def model_marks(m):
    st = m.get("status") or {}
    out = [f"phase:{st.get('phase')}"]
    out += [c["type"] for c in st.get("conditions") or [] if c.get("status") == "True"]
    if st.get("inference"):
        out.append("inference")
    return out


def pod_marks(p):
    owners = [o.get("kind") for o in p["metadata"].get("ownerReferences") or []]
    role = "download" if "Job" in owners else "server" if "ReplicaSet" in owners else "pod"
    out = [f"{role}:created"]
    if p["spec"].get("nodeName"):
        out.append(f"{role}:scheduled")
    st = p.get("status") or {}
    for cs in st.get("containerStatuses") or []:
        if "running" in (cs.get("state") or {}):
            out.append(f"{role}:running")
        if "terminated" in (cs.get("state") or {}):
            out.append(f"{role}:terminated")
    if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []):
        out.append(f"{role}:ready")
    if st.get("phase") == "Succeeded":
        out.append(f"{role}:succeeded")
    return out


def pvc_marks(c):
    return ["pvc:created"] + (["pvc:bound"] if (c.get("status") or {}).get("phase") == "Bound" else [])


def job_marks(j):
    done = any(c["type"] == "Complete" and c["status"] == "True"
               for c in (j.get("status") or {}).get("conditions") or [])
    return ["job:created"] + (["job:complete"] if done else [])


def slice_marks(s):
    ready = any((e.get("conditions") or {}).get("ready") for e in s.get("endpoints") or [])
    return ["endpoints:ready"] if ready else []


# ---------------------------------------------------------------------------------------------
# The node's containerd


def ctr(*args):
    return run(["ctr", "--address", CTR_SOCKET, "-n", "k8s.io", *args], capture_output=True,
               timeout=300)


def image_refs():
    """Every reference of the MLServer image in the node's containerd (by name, by digest, and
    the config digest the CRI plugin adds), found through the manifest digest of its names."""
    rows = [line.split() for line in ctr("images", "ls").stdout.splitlines()[1:]]
    rows = [r for r in rows if len(r) > 2]  # REF TYPE DIGEST ...
    named = [r for r in rows if f"/{IMAGE_REPO}:" in r[0] or f"/{IMAGE_REPO}@" in r[0]]
    digests = {r[2] for r in named}
    return [r[0] for r in rows if r[2] in digests]


def containers_of(refs):
    rows = [line.split() for line in ctr("containers", "ls").stdout.splitlines()[1:] if line.strip()]
    return [r[0] for r in rows if len(r) > 1 and (r[1] in refs or f"/{IMAGE_REPO}" in r[1])]


def make_cold(timeout=120):
    """Removes the MLServer image from the node once no container uses it. Returns a note."""
    refs = image_refs()
    t0 = time.time()
    while True:
        users = containers_of(refs)
        if not users:
            break
        if time.time() - t0 > timeout:
            return (f"NOT removed: {len(users)} container(s) of the image still on the node after "
                    f"{timeout}s (this run is warm)")
        time.sleep(1)
    if refs:
        ctr("images", "rm", "--sync", *refs)
    left = image_refs()
    if left:
        return f"still present after rm: {left}"
    return f"removed {len(refs)} reference(s)" if refs else "was not present"


# ---------------------------------------------------------------------------------------------
# One run


NAMESPACE = """apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    mlmodel.dev/bench: inference
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: mlmodel.dev/real-node=true
    scheduler.alpha.kubernetes.io/defaultTolerations: '[{{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"}}]'
"""


def model_manifest(ns, url):
    return json.dumps({
        "apiVersion": "mlmodel.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": MODEL, "namespace": ns},
        "spec": {
            "modelURL": url,
            "storageSize": "64Mi",
            "framework": "sklearn",
            "replicas": 1,
            "expose": True,
            "plugins": {"config": {"download": {"storageClassName": "local-path"}}},
        },
    })


GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|µs|us|ns|m|s)")
UNIT = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}


def go_seconds(text):
    return sum(float(v) * UNIT[u] for v, u in GO_DURATION.findall(text))


def image_pull(cluster, ns):
    """What the kubelet said about the server container's image: (seconds or None, message)."""
    evs = cluster.get(f"/api/v1/namespaces/{ns}/events")["items"]
    for e in sorted(evs, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        if (e.get("involvedObject") or {}).get("fieldPath") != "spec.containers{server}":
            continue
        msg = e.get("message", "")
        if e.get("reason") == "Pulled":
            m = re.search(r" in (\S+) \(", msg)
            return (go_seconds(m.group(1)) if m else 0.0), msg
    return None, "no Pulled event"


def one_run(cluster, args, ns, kind, url, body, predictions, measure_latency):
    res = {"kind": kind, "namespace": ns}
    cluster.kubectl("apply", "-f", "-", input=NAMESPACE.format(ns=ns), stdout=subprocess.DEVNULL)
    if kind == "cold":
        res["cold_note"] = make_cold()
        log(f"  {ns}: image {res['cold_note']}")
    base = f"/namespaces/{ns}"
    watches = {
        "model": Milestones(cluster, f"/apis/mlmodel.dev/v1alpha1{base}/mlmodels", model_marks),
        "pods": Milestones(cluster, f"/api/v1{base}/pods", pod_marks),
        "pvc": Milestones(cluster, f"/api/v1{base}/persistentvolumeclaims", pvc_marks),
        "jobs": Milestones(cluster, f"/apis/batch/v1{base}/jobs", job_marks),
        "slices": Milestones(cluster, f"/apis/discovery.k8s.io/v1{base}/endpointslices", slice_marks),
    }
    time.sleep(0.5)  # the watches' lists
    try:
        t0 = time.time()
        cluster.kubectl("apply", "-f", "-", input=model_manifest(ns, url), stdout=subprocess.DEVNULL)
        res["kubectl_apply_s"] = time.time() - t0
        deadline = t0 + args.timeout
        ip = None
        last = "no answer yet"
        t_answer = None
        next_log = t0 + 15
        attempts = []  # (start, seconds, outcome) of each try through the Service
        while t_answer is None:
            now = time.time()
            if STOP.is_set():
                raise KeyboardInterrupt
            m = watches["model"].obj(MODEL)
            st = (m or {}).get("status") or {}
            if st.get("phase") == "Failed":
                raise RuntimeError(f"{ns}: the model Failed: {st.get('reason')}: {st.get('message')}")
            if now > deadline:
                raise RuntimeError(f"{ns}: no correct answer {args.timeout:.0f}s after apply "
                                   f"(phase {st.get('phase')}, {st.get('message')}; last: {last})")
            if now > next_log:
                log(f"  {ns}: t={now - t0:.0f}s phase {st.get('phase')}: {st.get('message')}")
                next_log = now + 15
            if ip is None:
                try:
                    ip = cluster.get(f"/api/v1{base}/services/{MODEL}")["spec"]["clusterIP"]
                    res["cluster_ip"] = ip
                except RuntimeError:
                    pass
            if ip is not None:
                ta = time.time()
                status, data = infer_once(ip, 80, body)
                if answer_ok(status, data, predictions):
                    t_answer = time.time()
                    attempts.append((ta - t0, t_answer - ta, "correct"))
                    break
                last = f"HTTP {status}: {data[:200]!r}" if status else data
                attempts.append((ta - t0, time.time() - ta, last[:60]))
            time.sleep(0.1)
        res["answer"] = t_answer - t0
        res["attempts"] = len(attempts)
        log(f"  {ns}: tries through the Service: {len(attempts)}, the last ones (s after apply, "
            f"took, outcome): " + "; ".join(f"{a:.2f} {d:.2f} {o}" for a, d, o in attempts[-4:]))
        # Ready may come after the first answer (or before): wait for it, bounded.
        while watches["model"].at("Ready") is None and time.time() < t_answer + 120:
            time.sleep(0.1)
        for name, w in watches.items():
            for mark, t in w.first.items():
                res[mark] = t - t0
        st = (watches["model"].obj(MODEL) or {}).get("status") or {}
        inf_url = (st.get("inference") or {}).get("url") or ""
        res["inference_url"] = inf_url
        if inf_url and not inf_url.endswith(INFER_PATH):
            log(f"  {ns}: status.inference.url {inf_url} is not at {INFER_PATH}")
        res["pull_s"], res["pull_msg"] = image_pull(cluster, ns)
        t_end = max(t_answer, t0 + (res.get("Ready") or 0))
        if args.audit:
            time.sleep(1)  # the audit backend writes asynchronously to the file
            evs = bs.audit_events(bs.OPERATOR_USER, t0)
            res["requests"] = bs.count_requests(evs, t0, t_end)
            log(f"  {ns}: the operator's requests (s after apply): " + ", ".join(
                f"{t - t0:.2f} {verb} {what}" for t, verb, what in evs if t <= t_end))
        if measure_latency:
            pods = [p for p in watches["pods"].objects.values()
                    if "server:ready" in pod_marks(p) and not p["metadata"].get("deletionTimestamp")]
            pod_ip = pods[0]["status"]["podIP"] if pods else None
            log(f"  {ns}: {args.requests} requests through the Service {ip}:80")
            res["latency_service"] = series(ip, 80, body, predictions, args.requests, args.warmup,
                                            args.series_seconds)
            res["service_addr"] = f"{ip}:80"
            if pod_ip:
                log(f"  {ns}: {args.requests} requests to the pod {pod_ip}:8080")
                res["latency_pod"] = series(pod_ip, 8080, body, predictions, args.requests,
                                            args.warmup, args.series_seconds)
                res["pod_addr"] = f"{pod_ip}:8080"
    finally:
        for w in watches.values():
            w.stop()
        t1 = time.time()
        try:
            bs.delete_namespace(cluster, ns)
            res["delete_s"] = time.time() - t1
        except subprocess.CalledProcessError as e:
            log(f"  {ns}: deleting the namespace: {e}")
    return res


# ---------------------------------------------------------------------------------------------
# The runtime by hand (serve_check.py)


def free_ports(n=3, start=23600, end=23700):
    for base in range(start, end - n):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no {n} free consecutive ports in {start}-{end}")


def by_hand(args, rootfs, model_dir, train_json, work, i, hold):
    """One start of the runtime by hand: its report (and, held, the series)."""
    port = free_ports()
    cmd = [sys.executable, os.path.join(HACK, "runtime", "serve_check.py"), "--rootfs", rootfs,
           "--model", model_dir, "--expect", train_json, "--port", str(port),
           "--log", os.path.join(work, f"serve-check-{i}.log")]
    if hold:
        cmd += ["--hold", str(args.series_seconds * 2 + 120)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = {"port": port}
    try:
        if hold:
            line = ""
            deadline = t0 + 180
            while not line and time.time() < deadline and proc.poll() is None:
                r, _, _ = select.select([proc.stdout], [], [], 0.5)
                if r:
                    line = proc.stdout.readline()
            if not line:
                raise RuntimeError("serve_check.py did not serve within 180 s (log: "
                                   f"{work}/serve-check-{i}.log)")
            out["serving"] = json.loads(line)
            out["wall_to_serving_s"] = time.time() - t0
            train = json.load(open(train_json))
            body = json.dumps(train["request"]).encode()
            log(f"  by hand: {args.requests} requests to 127.0.0.1:{port}")
            out["latency"] = series("127.0.0.1", port, body, train["predictions"], args.requests,
                                    args.warmup, args.series_seconds)
            proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        out["report"] = json.loads(rest)
        out["exit"] = proc.returncode
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


# ---------------------------------------------------------------------------------------------
# Reporting


# The path to the first answer, one stage after the other (they add up to apply -> first answer),
# from what the watches saw; then what the operator's status said, and when.
STAGES = [  # (label, from mark, to mark)
    ("apply->download_pod", None, "download:created"),
    ("->scheduled", "download:created", "download:scheduled"),
    ("->download_done", "download:scheduled", "download:succeeded"),
    ("->server_pod", "download:succeeded", "server:created"),
    ("->container_running", "server:created", "server:running"),
    ("->pod_ready", "server:running", "server:ready"),
    ("->endpoints_ready", "server:ready", "endpoints:ready"),
    ("->first_answer", "endpoints:ready", "answer"),
]
STAGE_NOTE = ("apply->download_pod: the operator's claim and Job; ->scheduled: the local-path "
              "volume provisioned for the claim, WaitForFirstConsumer; ->download_done: the "
              "downloader's container ran; ->server_pod: Job complete seen, Deployment, "
              "ReplicaSet, pod; ->container_running: scheduling, image (pull), container start; "
              "->pod_ready: MLServer start and model load, probes every 2 s; ->first_answer: "
              "kube-proxy's rules and this client's next try, every 0.1 s")
DETAIL = [  # seconds after apply
    "pvc:created", "download:created", "pvc:bound", "download:scheduled", "download:succeeded", "job:complete", "server:created", "Downloaded", "Exposed",
    "server:scheduled", "server:running", "server:ready", "endpoints:ready", "answer", "Serving",
    "Ready",
]


def stage(r, a, b):
    ta = 0.0 if a is None else r.get(a)
    tb = r.get(b)
    return None if ta is None or tb is None else tb - ta


def report_runs(kind, rs):
    pre = f"inference {kind}"
    t = [r["answer"] for r in rs]
    figure(f"{pre} apply_to_first_answer_s={fmt(med(t))} {runs_note(t)} (kubectl apply -> first "
           f"correct prediction through the Service ClusterIP; median of {len(rs)})")
    figure(f"{pre} breakdown_s apply->Downloaded={fmt(med([r.get('Downloaded') for r in rs]))} "
           f"apply->Ready={fmt(med([r.get('Ready') for r in rs]))} "
           f"apply->first_answer={fmt(med(t))} (the model's conditions as seen by a watch)")
    figure(f"{pre} stages_s " + " ".join(
        f"{label}={fmt(med([stage(r, a, b) for r in rs]))}" for label, a, b in STAGES)
        + " (medians of each)")
    figure(f"{pre} status_after_fact_s "
           f"Downloaded-download_pod_succeeded={fmt(med([stage(r, 'download:succeeded', 'Downloaded') for r in rs]))} "
           f"Downloaded-server_pod_created={fmt(med([stage(r, 'server:created', 'Downloaded') for r in rs]))} "
           f"Ready-first_answer={fmt(med([stage(r, 'answer', 'Ready') for r in rs]))} "
           f"(how long after the fact the model's status said so; negative: before)")
    figure(f"{pre} seconds_after_apply " + " ".join(
        f"{m}={fmt(med([r.get(m) for r in rs]))}" for m in DETAIL))
    pulls = [r.get("pull_s") for r in rs]
    figure(f"{pre} image_pull_s={fmt(med(pulls))} {runs_note(pulls)} (kubelet: "
           f"{rs[-1].get('pull_msg')})")
    if kind == "cold":
        figure(f"{pre} image_removal: " + "; ".join(sorted({r.get('cold_note', '') for r in rs})))
    if all("requests" in r for r in rs):
        tot = [r["requests"][0] for r in rs]
        verbs = {v: med([r["requests"][1].get(v, 0) for r in rs]) for v in bs.VERBS}
        figure(f"{pre} api_requests_per_model={fmt(med(tot), '{:.0f}')} {runs_note(tot, '{:.0f}')} "
               + " ".join(f"{v}={c:.0f}" for v, c in verbs.items() if c)
               + f" (audit log, user {bs.OPERATOR_USER}, apply -> first answer or Ready)")
        keys = sorted({k for r in rs for k in r["requests"][2]})
        figure(f"{pre} api_requests_by_resource " + " ".join(
            f"{k}={med([r['requests'][2].get(k, 0) for r in rs]):.0f}" for k in keys))
    d = [r.get("delete_s") for r in rs]
    figure(f"{pre} namespace_delete_s={fmt(med(d))} {runs_note(d)} (kubectl delete namespace "
           f"--wait)")


def report_latency(name, s, where):
    x = summarize(s)
    if x is None:
        figure(f"latency {name} no answers ({where})")
        return None
    figure(f"latency {name} requests={x['n']} p50_ms={x['p50_ms']:.2f} p99_ms={x['p99_ms']:.2f} "
           f"mean_ms={x['mean_ms']:.2f} max_ms={x['max_ms']:.1f} requests_per_s={fmt(x['rps'], '{:.0f}')} "
           f"over_100ms={x['slow']} errors={x['errors']} wrong={x['wrong']} "
           f"connections={x['connections']} machine_busy_cores={fmt(x['busy_cores'])} ({where})")
    return x


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")),
                   help="cold and warm runs each; figures are medians (default 3; env BENCH_RUNS)")
    p.add_argument("--requests", type=int, default=1000, help="requests per latency series")
    p.add_argument("--warmup", type=int, default=50, help="warm-up requests before each series")
    p.add_argument("--series-seconds", type=float, default=300,
                   help="a series stops after this many seconds whatever its count")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds from apply to the first correct answer, at most, per run")
    p.add_argument("--operator-image", help="the image download Jobs run (default: "
                   "hack/operator-image.sh builds and pushes it, and the release binary)")
    p.add_argument("--warm-only", action="store_true",
                   help="no cold runs (the MLServer image is left on the node)")
    p.add_argument("--hand-only", action="store_true",
                   help="only the runtime by hand (serve_check.py): no cluster")
    args = p.parse_args()
    if os.geteuid() != 0:
        log("needs root (ctr on the node's containerd, serve_check.py's mounts)")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (STOP.set(), sys.exit(143)))

    work = tempfile.mkdtemp(prefix="bench-inference.", dir=bs.CACHE)
    log(f"work directory {work}; machine: {os.cpu_count()} cores")
    started = False
    op = srv = cluster = None
    runs = {"cold": [], "warm": []}
    keep_work = False
    try:
        model_dir, train_json, trained = train(work)
        body = json.dumps(trained["request"]).encode()
        predictions = trained["predictions"]
        rootfs = os.path.join(run([os.path.join(HACK, "runtime-image.sh")],
                                  capture_output=True).stdout.strip().splitlines()[-1], "rootfs")
        if not args.hand_only:
            if not bs.cluster_healthy():
                log("the local cluster is not up: starting it (stopped again at the end)")
                bs.cluster_sh("up")
                started = True
            args.audit = bs.audit_enabled()
            cluster = bs.Cluster()
            nodes = cluster.get("/api/v1/nodes", {"labelSelector": f"{REAL_NODE_LABEL}=true"})
            if not nodes["items"]:
                raise RuntimeError("the cluster has no real node (MLMODEL_REAL_NODE=0?)")
            # The MLServer image in the registry (node.sh pushed it; a push of what is there
            # uploads nothing): cold runs pull it from there.
            ref = run([os.path.join(HACK, "runtime-image.sh"), "--push", "localhost:23500"],
                      capture_output=True).stdout.strip().splitlines()[-1]
            log(f"runtime image {ref}")
            image = args.operator_image
            if not image:
                log("building the operator (release) and its image: hack/operator-image.sh")
                image = run([os.path.join(HACK, "operator-image.sh")], capture_output=True,
                            cwd=ROOT).stdout.strip().splitlines()[-1]
            log(f"operator image {image}")
            srv, url = file_server(model_dir)
            log(f"model file {url} (predictions {predictions})")
            kubeconfig = bs.mint_identity(work, bs.OPERATOR_USER)
            cluster.kubectl("apply", "-f", "-", input=bs.BINDING, stdout=subprocess.DEVNULL)
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                            os.path.join(ROOT, "deploy", "crd", "mlmodel.dev_mlmodels.yaml"),
                            stdout=subprocess.DEVNULL)
            cluster.kubectl("wait", "--for=condition=Established", "crd/mlmodels.mlmodel.dev",
                            "--timeout=60s", stdout=subprocess.DEVNULL)
            tag = os.urandom(3).hex()
            plan = []
            for i in range(1, args.runs + 1):
                if not args.warm_only:
                    plan.append(("cold", f"bench-infer-{tag}-cold{i}"))
                plan.append(("warm", f"bench-infer-{tag}-warm{i}"))
            cmd = (f"{bs.OPERATOR_BIN} run --namespace {','.join(ns for _, ns in plan)} "
                   f"--metrics-bind-address 127.0.0.1:0 --cache-dir {os.path.join(bs.CACHE, 'wasm')} "
                   f"--operator-image {image}")
            t_launch = time.time()
            op = bs.Operator(cmd, plan[0][1], kubeconfig, os.path.join(work, "operator.log"))
            bs.settle(op, t_launch, args.audit)
            log(f"operator running (pid {op.pid}), watching {len(plan)} namespaces")
            for j, (kind, ns) in enumerate(plan):
                last = j == len(plan) - 1
                log(f"{kind} run {ns}")
                try:
                    r = one_run(cluster, args, ns, kind, url, body, predictions, measure_latency=last)
                except Exception:
                    keep_work = True
                    raise
                if not op.alive():
                    keep_work = True
                    raise RuntimeError(f"the operator exited (log: {work}/operator.log)")
                runs[kind].append(r)
                log(f"  {ns}: first answer {r['answer']:.2f}s, Downloaded {fmt(r.get('Downloaded'))}s, "
                    f"Ready {fmt(r.get('Ready'))}s, pull {fmt(r.get('pull_s'))}s, "
                    f"deleted in {fmt(r.get('delete_s'))}s")
            op.stop()
            op = None
        # The same runtime by hand on this machine (no model pod is left: the namespaces are gone).
        hand = []
        for i in range(1, args.runs + 1):
            log(f"by hand, start {i} of {args.runs}")
            hand.append(by_hand(args, rootfs, model_dir, train_json, work, i, hold=i == args.runs))
    finally:
        if op is not None:
            op.stop()
        if srv is not None:
            srv.shutdown()
        if cluster is not None:
            subprocess.run([cluster.kubectl_path, "--kubeconfig", bs.ADMIN_KUBECONFIG, "delete",
                            "clusterrolebinding", "mlmodel-bench", "--ignore-not-found"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if keep_work:
            log(f"kept {work} (operator log, serve_check logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if started:
            log("stopping the cluster this run started")
            bs.cluster_sh("down")

    # Figures
    if runs["cold"] or runs["warm"]:
        figure("note: stages_s " + STAGE_NOTE)
    for kind in ("cold", "warm"):
        if runs[kind]:
            report_runs(kind, runs[kind])
    starts = [h["report"].get("answered_seconds") for h in hand]
    readies = [h["report"].get("ready_seconds") for h in hand]
    figure(f"by_hand start_to_first_answer_s={fmt(med(starts))} {runs_note(starts)} "
           f"start_to_ready_s={fmt(med(readies))} (serve_check.py: unshare, mounts, chroot, "
           f"`mlserver start` -> /v2/models/{MODEL}/ready 200 (polled every 0.1 s) -> a correct "
           f"answer; rss_mib={fmt(hand[-1]['report'].get('rss_total_mib'), '{:.0f}')})")
    last = runs["warm"][-1] if runs["warm"] else {}
    figure(f"note: each latency series is {args.requests} requests sent one after the other on ONE "
           f"keep-alive HTTP/1.1 connection (Python http.client), after {args.warmup} warm-up "
           f"requests on it; a time is the client's, request sent -> body read; answers are "
           f"checked after the series; machine_busy_cores: the whole machine's CPU during the "
           f"series, this client and the server included")
    svc = report_latency("service", last["latency_service"],
                         f"ClusterIP {last['service_addr']}, kube-proxy iptables") \
        if "latency_service" in last else None
    pod = report_latency("pod", last["latency_pod"], f"pod IP {last['pod_addr']}") \
        if "latency_pod" in last else None
    held = hand[-1]
    man = report_latency("by_hand", held["latency"],
                         f"127.0.0.1:{held['port']}, serve_check.py on this machine") \
        if "latency" in held else None
    if runs["warm"] and starts and med(starts):
        w = med([r["answer"] for r in runs["warm"]])
        c = med([r["answer"] for r in runs["cold"]]) if runs["cold"] else None
        figure(f"ratio start warm_apply_to_answer/by_hand_start_to_answer={w / med(starts):.1f}"
               + (f" cold_apply_to_answer/by_hand_start_to_answer={c / med(starts):.1f}" if c else ""))
    if man:
        if pod:
            figure(f"ratio latency pod/by_hand p50={pod['p50_ms'] / man['p50_ms']:.2f} "
                   f"p99={pod['p99_ms'] / man['p99_ms']:.2f} mean={pod['mean_ms'] / man['mean_ms']:.2f}")
        if svc:
            figure(f"ratio latency service/by_hand p50={svc['p50_ms'] / man['p50_ms']:.2f} "
                   f"p99={svc['p99_ms'] / man['p99_ms']:.2f} mean={svc['mean_ms'] / man['mean_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
