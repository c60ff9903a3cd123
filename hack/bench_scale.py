#!/usr/bin/env python3
"""Scale and memory benchmark of an MLModel operator on the local cluster (prints figures,
asserts nothing). Python 3 standard library only.

For each N (--models, default 100) and each run (--runs): a fresh namespace, the operator under
test started with its own identity, N echo models (deploy/samples/echo-model.yaml with its own
names) created in parallel chunks with `kubectl apply --server-side`, then:

  time_to_ready_s    first create -> every model's status.phase == "Ready" (seen by a watch)
  time_to_pods_ready_s  first create -> N Deployments in the namespace, each with all its pods
                     ready (the same meaning of Ready for any operator, whatever its status says)
  peak_rss_mib       the operator's VmHWM (its process tree summed) at Ready
  cpu_s              the operator's utime+stime from the first create to Ready
  api_requests       requests the operator made from the first create to Ready, counted from the
                     kube-apiserver's audit log (user mlmodel-bench-operator; one per audit ID),
                     by verb and by resource
  rss_at_rest_mib    the operator's VmRSS --rest-seconds (25) after all were Ready
  delete_to_gone_s   `kubectl delete mlmodels --all --wait=false` -> no PVC, Job, Deployment,
                     ReplicaSet, Service or Pod of the models left (the garbage collector removes
                     them through owner references)
  cluster cpu        CPU seconds of each control-plane process in the create -> Ready window

then the plain-client baseline (host/examples/scale_baseline.rs: the same API writes with no
controller in the loop) in another fresh namespace, and last `ratio N=... operator/baseline=...`:
the operator's time to Ready over the baseline's time to make the same writes. Figures are the
median of the runs.

The operator under test is any command: --operator-cmd CMD (repeatable, each measured in turn,
`default` is ours) or $BENCH_OPERATOR_CMD. `{namespace}` in CMD is replaced by the bench
namespace, which is also in $BENCH_NAMESPACE; $KUBECONFIG points at a kubeconfig of the user
mlmodel-bench-operator (group mlmodel-bench, bound to cluster-admin). The process is sent
SIGTERM at the end of each run.

    hack/bench_scale.py --models 100 --runs 3
    hack/bench_scale.py --models 1000 --runs 1 --no-baseline
    hack/bench_scale.py --models 100 --operator-cmd default \\
        --operator-cmd '/path/to/other-operator --watch-namespace {namespace}'
"""

import argparse
import concurrent.futures
import datetime as dt
import glob
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("MLMODEL_CACHE") or os.path.expanduser("~/.cache/mlmodel-operator")
CLUSTER = os.path.join(CACHE, "cluster")
PKI = os.path.join(CLUSTER, "pki")
ADMIN_KUBECONFIG = os.path.join(CLUSTER, "kubeconfig")
LOGS = os.path.join(CLUSTER, "logs")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
OPERATOR_BIN = os.path.join(TARGET, "release", "mlmodel-operator")
BASELINE_BIN = os.path.join(TARGET, "release", "examples", "scale_baseline")
DEFAULT_CMD = OPERATOR_BIN + " run --namespace {namespace} --metrics-bind-address 127.0.0.1:0"
OPERATOR_USER = "mlmodel-bench-operator"
BASELINE_USER = "mlmodel-bench-baseline"
BENCH_GROUP = "mlmodel-bench"
COMPONENTS = ["kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok"]
VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]
HZ = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench-scale: {msg}", file=sys.stderr, flush=True)


def figure(line):
    print(line, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# The cluster


def kubectl_bin():
    out = run([os.path.join(ROOT, "hack", "build-tools.sh")], capture_output=True).stdout.strip()
    return os.path.join(out, "kubectl")


class Cluster:
    """The local cluster: kubectl as admin and a small HTTPS client for polling."""

    def __init__(self):
        self.kubectl_path = kubectl_bin()
        text = open(ADMIN_KUBECONFIG).read()
        self.server = re.search(r"server:\s*(\S+)", text).group(1)
        url = urllib.parse.urlparse(self.server)
        self.host, self.port = url.hostname, url.port
        self.ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(PKI, "admin.crt"), os.path.join(PKI, "admin.key"))
        self.local = threading.local()

    def kubectl(self, *args, kubeconfig=ADMIN_KUBECONFIG, **kw):
        return run([self.kubectl_path, "--kubeconfig", kubeconfig, *args], **kw)

    def install_crd(self):
        """The MLModel CRD of the operator binary under test, applied and Established (a fresh
        cluster has none)."""
        crd = run([OPERATOR_BIN, "crd"], capture_output=True).stdout
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd,
                     stdout=subprocess.DEVNULL)
        self.kubectl("wait", "--for=condition=Established", "crd/mlmodels.mlmodel.dev",
                     "--timeout=60s", stdout=subprocess.DEVNULL)

    def get(self, path, params=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
                self.local.conn = conn
            try:
                conn.request("GET", path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
                return json.loads(body)
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.5)

    def count(self, path, selector=None):
        """Whether any object is left under `path` (a list of at most one)."""
        params = {"limit": "1"}
        if selector:
            params["labelSelector"] = selector
        return len(self.get(path, params)["items"])


def pid_of(component):
    try:
        pid = int(open(os.path.join(CLUSTER, "run", f"{component}.pid")).read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def cluster_healthy():
    return subprocess.run([os.path.join(ROOT, "hack", "cluster.sh"), "status"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def audit_enabled():
    pid = pid_of("kube-apiserver")
    if not pid:
        return False
    try:
        return b"--audit-policy-file=" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def cluster_sh(verb):
    run([os.path.join(ROOT, "hack", "cluster.sh"), verb], stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# Identities: client certificates signed by the cluster CA


def mint_identity(work, user, group=BENCH_GROUP):
    key, csr, crt = (os.path.join(work, f"{user}.{ext}") for ext in ("key", "csr", "crt"))
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", key], capture_output=True)
    run(["openssl", "req", "-new", "-key", key, "-subj", f"/O={group}/CN={user}", "-out", csr],
        capture_output=True)
    ext = os.path.join(work, "client.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(PKI, "ca.crt"),
         "-CAkey", os.path.join(PKI, "ca.key"), "-set_serial", "0x" + os.urandom(15).hex(),
         "-days", "2", "-sha256", "-out", crt, "-extfile", ext], capture_output=True)
    b64 = lambda p: __import__("base64").b64encode(open(p, "rb").read()).decode()
    kubeconfig = os.path.join(work, f"{user}.kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: mlmodel-local
  cluster:
    server: {open(ADMIN_KUBECONFIG).read().split('server:')[1].split()[0]}
    certificate-authority-data: {b64(os.path.join(PKI, 'ca.crt'))}
users:
- name: {user}
  user:
    client-certificate-data: {b64(crt)}
    client-key-data: {b64(key)}
contexts:
- name: mlmodel-local
  context:
    cluster: mlmodel-local
    user: {user}
    namespace: default
current-context: mlmodel-local
""")
    os.chmod(kubeconfig, 0o600)
    return kubeconfig


BINDING = f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: mlmodel-bench
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {BENCH_GROUP}}}
"""


# ---------------------------------------------------------------------------------------------
# Processes: RSS and CPU from /proc


def proc_tree(root):
    """`root` and its live descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid, with_children=False):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields after ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(f[11]) + int(f[12])
    if with_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / HZ


def status_kib(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Operator:
    def __init__(self, cmd, namespace, kubeconfig, logfile):
        argv = shlex.split(cmd.replace("{namespace}", namespace))
        env = dict(os.environ, KUBECONFIG=kubeconfig, BENCH_NAMESPACE=namespace)
        env.setdefault("MLMODEL_LOG", "info")
        self.log = open(logfile, "w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        self.peak_rss_kib = 0
        self.stop_sampling = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self):
        while not self.stop_sampling.wait(0.2):
            self.peak_rss_kib = max(self.peak_rss_kib, self.rss_kib())

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        return sum(status_kib(p, "VmRSS") for p in proc_tree(self.pid))

    def hwm_kib(self):
        # The high-water mark of each process (exact for one process), never below the sampled sum.
        return max(self.peak_rss_kib, sum(status_kib(p, "VmHWM") for p in proc_tree(self.pid)))

    def cpu(self):
        return sum(cpu_seconds(p, with_children=True) for p in proc_tree(self.pid))

    def stop(self):
        self.stop_sampling.set()
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def machine_busy():
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / HZ


def cluster_cpu():
    out = {}
    for c in COMPONENTS:
        pid = pid_of(c)
        out[c] = cpu_seconds(pid) if pid else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# The audit log


def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def audit_events(user, since):
    """Events of `user` received at or after `since` (epoch seconds), one per audit ID."""
    by_id = {}
    files = sorted(glob.glob(os.path.join(LOGS, "audit*.log")), key=os.path.getmtime)
    needle = f'"username":"{user}"'
    for path in files:
        if os.path.getmtime(path) < since - 1:
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if needle not in line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                t = parse_ts(ev["requestReceivedTimestamp"])
                if t < since:
                    continue
                ref = ev.get("objectRef") or {}
                resource = ref.get("resource", ev.get("requestURI", "?"))
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                by_id[ev["auditID"]] = (t, ev["verb"], resource)
    return sorted(by_id.values())


def count_requests(events, t0, t1):
    window = [e for e in events if t0 <= e[0] <= t1]
    by_verb, by_resource = {}, {}
    for _, verb, resource in window:
        by_verb[verb] = by_verb.get(verb, 0) + 1
        key = f"{verb}:{resource}"
        by_resource[key] = by_resource.get(key, 0) + 1
    return len(window), by_verb, by_resource


# ---------------------------------------------------------------------------------------------
# One run


def model_docs(prefix, n):
    sample = open(os.path.join(ROOT, "deploy", "samples", "echo-model.yaml")).read()
    body = sample[sample.index("apiVersion:"):]
    docs = []
    for i in range(n):
        docs.append("---\n" + re.sub(r"(?m)^  name: echo-model$", f"  name: {prefix}-{i:05d}", body))
    return docs


def create_models(cluster, ns, n, work, parallel):
    docs = model_docs("bench", n)
    chunks = [docs[i::parallel] for i in range(min(parallel, n))]
    files = []
    for i, chunk in enumerate(chunks):
        path = os.path.join(work, f"models-{i}.yaml")
        with open(path, "w") as f:
            f.write("".join(chunk))
        files.append(path)
    with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
        list(pool.map(lambda p: cluster.kubectl("apply", "--server-side", "-n", ns, "-f", p,
                                                stdout=subprocess.DEVNULL), files))


class ListWatch:
    """One value per object of a list path, kept by a watch (a list, then a watch from its
    resourceVersion; a relist on any error), so following 1000 objects costs the apiserver only
    the changes, not a full list every poll. `value(obj)` gives what is kept."""

    def __init__(self, cluster, path, value, what):
        self.cluster, self.path, self.value, self.what = cluster, path, value, what
        self.state = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                lst = self.cluster.get(self.path)
                with self.lock:
                    self.state = {m["metadata"]["name"]: self.value(m) for m in lst["items"]}
                    self.changed.notify_all()
                self._watch(lst["metadata"]["resourceVersion"])
            except Exception as e:  # noqa: BLE001 - any failure: list again
                if not self.stopped:
                    log(f"  watch of {self.what}: {e}; listing again")
                    time.sleep(0.5)

    def _watch(self, rv):
        params = urllib.parse.urlencode({"watch": "1", "resourceVersion": rv,
                                         "allowWatchBookmarks": "true", "timeoutSeconds": "600"})
        conn = http.client.HTTPSConnection(self.cluster.host, self.cluster.port,
                                           context=self.cluster.ctx, timeout=120)
        try:
            conn.request("GET", f"{self.path}?{params}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"watch: {resp.status}")
            while not self.stopped:
                line = resp.readline()
                if not line:
                    return  # the server ended the watch: list again
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {ev['object'].get('message')}")
                if ev["type"] == "BOOKMARK":
                    continue
                m = ev["object"]
                with self.lock:
                    name = m["metadata"]["name"]
                    if ev["type"] == "DELETED":
                        self.state.pop(name, None)
                    else:
                        self.state[name] = self.value(m)
                    self.changed.notify_all()
        finally:
            conn.close()

    def counts(self):
        with self.lock:
            out = {}
            for v in self.state.values():
                out[v] = out.get(v, 0) + 1
            return len(self.state), out

    def wait_all(self, n, want, timeout):
        """Waits until n objects all have the value `want`; returns the time that was seen, or
        None after `timeout` seconds."""
        deadline = time.time() + timeout
        with self.lock:
            while True:
                if len(self.state) == n and all(v == want for v in self.state.values()):
                    return time.time()
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.changed.wait(min(left, 1.0))

    def stop(self):
        self.stopped = True


def phase_watch(cluster, ns):
    """The phase of every model."""
    return ListWatch(cluster, f"/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels",
                     lambda m: (m.get("status") or {}).get("phase") or "-", "models")


def pods_ready_watch(cluster, ns):
    """Whether each Deployment of the namespace has all its pods ready: the same meaning of
    Ready for any operator, whatever its status says (one model, one Deployment)."""
    def ready(d):
        want = (d.get("spec") or {}).get("replicas", 1)
        st = d.get("status") or {}
        return (st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
                and st.get("readyReplicas", 0) >= want and st.get("updatedReplicas", 0) >= want)
    return ListWatch(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments", ready, "deployments")


def phases(cluster, ns):
    items = cluster.get(f"/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels")["items"]
    out = {}
    for m in items:
        phase = (m.get("status") or {}).get("phase") or "-"
        out[phase] = out.get(phase, 0) + 1
    return len(items), out


# Everything a model leads to, counted in the whole (fresh) namespace rather than by our labels,
# so any operator's objects are counted.
OWNED = [
    "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "/apis/batch/v1/namespaces/{ns}/jobs",
    "/apis/apps/v1/namespaces/{ns}/deployments",
    "/apis/apps/v1/namespaces/{ns}/replicasets",
    "/api/v1/namespaces/{ns}/services",
    "/api/v1/namespaces/{ns}/pods",
    "/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels",
]


def owned_left(cluster, ns):
    return sum(cluster.count(path.format(ns=ns)) for path in OWNED)


def new_namespace(cluster, prefix):
    ns = f"{prefix}-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", ns, stdout=subprocess.DEVNULL)
    return ns


def delete_namespace(cluster, ns, wait=True):
    cluster.kubectl("delete", "namespace", ns, f"--wait={'true' if wait else 'false'}",
                    "--timeout=600s", "--ignore-not-found", stdout=subprocess.DEVNULL)


def settle(op, since, audit, minimum=3.0, quiet=2.0, maximum=90.0):
    """Waits until the operator has started watching and gone quiet (from the audit log), or a
    fixed time without one."""
    t_start = time.time()
    while True:
        time.sleep(0.5)
        if not op.alive():
            raise RuntimeError("the operator exited during start-up")
        now = time.time()
        if now - t_start < minimum:
            continue
        if not audit:
            if now - t_start >= 10:
                return
            continue
        evs = audit_events(OPERATOR_USER, since)
        watching = any(v == "watch" for _, v, _ in evs)
        last = evs[-1][0] if evs else t_start
        if watching and now - last >= quiet:
            return
        if now - t_start > maximum:
            log("the operator did not go quiet within 90 s of start; measuring anyway")
            return


def run_operator(cluster, args, cmd, n, work, audit, tag):
    ns = new_namespace(cluster, f"bench-scale-{n}")
    logfile = os.path.join(work, f"operator-{tag}.log")
    t_launch = time.time()
    op = Operator(cmd, ns, args.operator_kubeconfig, logfile)
    res = {"namespace": ns, "log": logfile}
    try:
        settle(op, t_launch, audit)
        watch = phase_watch(cluster, ns)
        pods = pods_ready_watch(cluster, ns)
        cpu0, ccpu0, busy0 = op.cpu(), cluster_cpu(), machine_busy()
        t0 = time.time()
        create_models(cluster, ns, n, work, args.create_parallel)
        res["create_s"] = time.time() - t0
        t1 = tp = None
        try:
            while t1 is None or tp is None:
                t1 = t1 or watch.wait_all(n, "Ready", 5)
                # Pods ready and status Ready come in either order, depending on the operator.
                tp = tp or pods.wait_all(n, True, 0 if t1 is None else 5)
                now = time.time()
                if t1 is not None and tp is not None:
                    break
                if not op.alive():
                    raise RuntimeError(f"the operator exited (log: {logfile})")
                if now - t0 > args.timeout:
                    raise RuntimeError(f"timed out: {watch.counts()[1]} after {args.timeout}s "
                                       f"(log: {logfile})")
                log(f"  {tag}: t={now - t0:.0f}s {watch.counts()[1]} "
                    f"deployments ready: {pods.counts()[1].get(True, 0)}")
        finally:
            watch.stop()
            pods.stop()
        res["time_to_ready_s"] = t1 - t0
        res["time_to_pods_ready_s"] = tp - t0
        res["cpu_s"] = op.cpu() - cpu0
        res["peak_rss_mib"] = op.hwm_kib() / 1024
        ccpu1 = cluster_cpu()
        res["cluster_cpu"] = {c: ccpu1[c] - ccpu0[c] for c in COMPONENTS}
        res["machine_busy_s"] = machine_busy() - busy0
        res["loadavg"] = float(open("/proc/loadavg").read().split()[0])
        if args.rest_seconds > 0:
            time.sleep(args.rest_seconds)
            res["rss_at_rest_mib"] = op.rss_kib() / 1024
            res["cpu_at_rest_s"] = op.cpu() - cpu0 - res["cpu_s"]
        t2 = time.time()
        cluster.kubectl("delete", "mlmodels", "--all", "-n", ns, "--wait=false",
                        stdout=subprocess.DEVNULL)
        while owned_left(cluster, ns):
            if time.time() - t2 > args.timeout:
                raise RuntimeError("timed out waiting for the owned objects to be deleted")
            time.sleep(0.5)
        t3 = time.time()
        res["delete_to_gone_s"] = t3 - t2
        res["cpu_total_s"] = op.cpu()
        if audit:
            time.sleep(1)  # the audit backend writes asynchronously to the file
            evs = audit_events(OPERATOR_USER, t_launch)
            res["requests"] = count_requests(evs, t0, t1)
            res["requests_delete"] = count_requests(evs, t2, t3)
            res["requests_lifetime"] = count_requests(evs, t_launch, t3)
    finally:
        op.stop()
        delete_namespace(cluster, ns)
    return res


def run_baseline(cluster, args, n, patches, events, tag):
    ns = new_namespace(cluster, f"bench-baseline-{n}")
    try:
        t0 = time.time()
        cmd = [BASELINE_BIN, "--namespace", ns, "--models", str(n), "--status-patches",
               str(patches), "--events", str(events), "--concurrency", str(args.baseline_concurrency),
               "--wait-ready", "--timeout", str(int(args.timeout))]
        out = run(cmd, capture_output=True, env=dict(os.environ, KUBECONFIG=args.baseline_kubeconfig,
                                                     RUST_LOG="warn")).stdout
        t1 = time.time()
    finally:
        delete_namespace(cluster, ns)
    res = {}
    for line in out.splitlines():
        kind, *fields = line.split()
        res[kind] = {k: float(v) for k, v in (f.split("=", 1) for f in fields) if k != "N"}
    if args.audit:
        time.sleep(1)
        evs = audit_events(BASELINE_USER, t0)
        res["requests"] = count_requests(evs, t0, t1)
    return res


# ---------------------------------------------------------------------------------------------
# Reporting


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def runs_note(values, fmt="{:.1f}"):
    return "runs=" + ",".join(fmt.format(v) for v in values) if len(values) > 1 else "runs=1"


def report(name, n, results):
    pre = f"scale N={n} operator={name}"
    r = results
    t = [x["time_to_ready_s"] for x in r]
    figure(f"{pre} time_to_ready_s={med(t):.2f} per_model_ms={med(t) / n * 1e3:.1f} "
           f"{runs_note(t)} (first create -> all Ready; {n} creates took "
           f"{med([x['create_s'] for x in r]):.2f}s)")
    tp = [x["time_to_pods_ready_s"] for x in r]
    figure(f"{pre} time_to_pods_ready_s={med(tp):.2f} {runs_note(tp)} (first create -> {n} "
           f"Deployments with every pod ready, whatever the status says)")
    rss = [x["peak_rss_mib"] for x in r]
    figure(f"{pre} peak_rss_mib={med(rss):.1f} {runs_note(rss)}")
    cpu = [x["cpu_s"] for x in r]
    figure(f"{pre} cpu_s={med(cpu):.2f} per_model_ms={med(cpu) / n * 1e3:.2f} {runs_note(cpu, '{:.2f}')} "
           f"(utime+stime, create -> Ready)")
    if all("rss_at_rest_mib" in x for x in r):
        rest = [x["rss_at_rest_mib"] for x in r]
        figure(f"{pre} rss_at_rest_mib={med(rest):.1f} per_model_kib={med(rest) * 1024 / n:.1f} "
               f"{runs_note(rest)} (VmRSS {ARGS.rest_seconds:.0f}s after all Ready; idle cpu_s="
               f"{med([x['cpu_at_rest_s'] for x in r]):.2f})")
    d = [x["delete_to_gone_s"] for x in r]
    figure(f"{pre} delete_to_gone_s={med(d):.2f} per_model_ms={med(d) / n * 1e3:.1f} {runs_note(d)}")
    cc = {c: med([x["cluster_cpu"][c] for x in r]) for c in COMPONENTS}
    window = med(t)
    figure(f"{pre} cluster_cpu_s " + " ".join(f"{c}={v:.1f}" for c, v in cc.items())
           + f" operator={med(cpu):.1f} (create -> Ready, {window:.1f}s x {os.cpu_count()} cores = "
             f"{window * os.cpu_count():.0f} cpu-s available)")
    busy = med([x["machine_busy_s"] for x in r])
    ours = sum(cc.values()) + med(cpu)
    figure(f"{pre} machine_busy_cpu_s={busy:.1f} cluster+operator={ours:.1f} "
           f"other={max(0.0, busy - ours):.1f} loadavg_1m={med([x['loadavg'] for x in r]):.2f} "
           f"(other: processes outside the cluster and the operator, e.g. compilers, this harness)")
    if all("requests" in x for x in r):
        tot = [x["requests"][0] for x in r]
        figure(f"{pre} api_requests={med(tot):.0f} per_model={med(tot) / n:.2f} {runs_note(tot, '{:.0f}')} "
               f"(kube-apiserver audit log, user {OPERATOR_USER}, create -> Ready)")
        verbs = {v: med([x["requests"][1].get(v, 0) for x in r]) for v in VERBS}
        figure(f"{pre} api_requests_by_verb " + " ".join(f"{v}={c:.0f}" for v, c in verbs.items())
               + " per_model " + " ".join(f"{v}={c / n:.2f}" for v, c in verbs.items() if c))
        keys = sorted({k for x in r for k in x["requests"][2]})
        figure(f"{pre} api_requests_by_resource " + " ".join(
            f"{k}={med([x['requests'][2].get(k, 0) for x in r]):.0f}" for k in keys))
        dl = [x["requests_delete"][0] for x in r]
        lt = [x["requests_lifetime"][0] for x in r]
        figure(f"{pre} api_requests_delete={med(dl):.0f} api_requests_lifetime={med(lt):.0f} "
               f"(delete -> gone; start -> stop)")


def report_baseline(n, named_results, baseline):
    if baseline:
        bt = [b["baseline"]["time_s"] for b in baseline]
        bw = med([b["baseline"]["writes"] for b in baseline])
        bo = med([b["baseline"]["objects"] for b in baseline])
        figure(f"baseline N={n} objects={bo:.0f} writes={bw:.0f} time_s={med(bt):.2f} "
               f"objects_per_s={bo / med(bt):.0f} writes_per_s={bw / med(bt):.0f} {runs_note(bt, '{:.2f}')} "
               f"(plain kube-rs client, {ARGS.baseline_concurrency} models in flight)")
        st = [b["baseline-settled"]["time_s"] for b in baseline]
        figure(f"baseline N={n} settled_s={med(st):.2f} {runs_note(st)} "
               f"(same writes, then every Job complete and Deployment available)")
        bd = [b["baseline-delete"]["time_to_gone_s"] for b in baseline]
        figure(f"baseline N={n} delete_to_gone_s={med(bd):.2f} {runs_note(bd)}")
        if all("requests" in b for b in baseline):
            figure(f"baseline N={n} api_requests={med([b['requests'][0] for b in baseline]):.0f} "
                   f"(audit log, user {BASELINE_USER}, whole baseline run)")
        for name, r in named_results:
            t = med([x["time_to_ready_s"] for x in r])
            figure(f"ratio N={n} operator={name} operator/baseline-settled={t / med(st):.2f}")
        for name, r in named_results:
            t = med([x["time_to_ready_s"] for x in r])
            figure(f"ratio N={n} operator={name} operator/baseline={t / med(bt):.2f} "
                   f"(time to Ready / plain-client time for the same writes)")


# ---------------------------------------------------------------------------------------------


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--models", "-n", default=os.environ.get("BENCH_N", "100"),
                   help="N, or several comma-separated (default 100; env BENCH_N)")
    p.add_argument("--runs", default=os.environ.get("BENCH_RUNS", "3"),
                   help="runs per N, or one per N comma-separated (e.g. 3,1); figures are medians "
                        "(default 3; env BENCH_RUNS)")
    p.add_argument("--operator-cmd", action="append", default=[],
                   help="operator command, repeatable; `default` is ours; {namespace} is replaced "
                        "(env BENCH_OPERATOR_CMD)")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain-client baseline")
    p.add_argument("--baseline-concurrency", type=int, default=16)
    p.add_argument("--rest-seconds", type=float, default=25,
                   help="seconds after all Ready before RSS at rest is read (0: skip)")
    p.add_argument("--create-parallel", type=int, default=4,
                   help="kubectl apply processes creating the models")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--no-build", action="store_true", help="use the existing release build")
    p.add_argument("--restart-cluster", action="store_true",
                   help="restart a running cluster that lacks the audit log")
    p.add_argument("--memory-only", action="store_true",
                   help="print only the memory-at-rest figure last (make bench-memory)")
    args = ARGS = p.parse_args()
    sizes = [int(x) for x in str(args.models).split(",") if x.strip()]
    runs = [int(x) for x in str(args.runs).split(",") if x.strip()]
    runs_of = {n: runs[min(i, len(runs) - 1)] for i, n in enumerate(sizes)}
    cmds = args.operator_cmd or [os.environ.get("BENCH_OPERATOR_CMD") or "default"]

    if not args.no_build:
        log("building release (operator and baseline)")
        # Apart: built with an example, the operator would take the dev-dependencies' features
        # (tokio's test-util) and be compiled a second time; alone it is the image's build.
        run(["cargo", "build", "--release", "--quiet", "-p", "mlmodel-operator"], cwd=ROOT)
        run(["cargo", "build", "--release", "--quiet", "-p", "mlmodel-operator",
             "--example", "scale_baseline"], cwd=ROOT)
    default_cmd = DEFAULT_CMD
    helptext = subprocess.run([OPERATOR_BIN, "run", "--help"], capture_output=True, text=True).stdout
    if "--metrics-bind-address" not in helptext:
        default_cmd = default_cmd.replace(" --metrics-bind-address 127.0.0.1:0", "")
    cmds = [default_cmd if c == "default" else c for c in cmds]

    started = False
    if not cluster_healthy():
        log("the local cluster is not up: starting it (stopped again at the end)")
        cluster_sh("up")
        started = True
    elif not audit_enabled():
        if args.restart_cluster:
            log("the running cluster has no audit log: restarting it (hack/cluster.sh down && up)")
            cluster_sh("down")
            cluster_sh("up")
        else:
            log("error: the running cluster predates the audit log that counts API requests; "
                "run `make cluster-down cluster-up` (or pass --restart-cluster) and try again")
            return 2
    args.audit = audit_enabled()

    work = tempfile.mkdtemp(prefix="bench-scale.", dir=CACHE)
    keep_work = False
    cluster = Cluster()
    try:
        args.operator_kubeconfig = mint_identity(work, OPERATOR_USER)
        args.baseline_kubeconfig = mint_identity(work, BASELINE_USER)
        cluster.kubectl("apply", "-f", "-", input=BINDING, stdout=subprocess.DEVNULL)
        cluster.install_crd()
        log(f"machine: {os.cpu_count()} cores; operators: {cmds}")
        for n in sizes:
            results = {c: [] for c in cmds}
            baseline = []
            for i in range(runs_of[n]):
                for j, cmd in enumerate(cmds):
                    tag = f"N{n}-op{j}-run{i + 1}"
                    log(f"{tag}: {cmd}")
                    try:
                        res = run_operator(cluster, args, cmd, n, work, args.audit, tag)
                    except Exception:
                        keep_work = True
                        raise
                    results[cmd].append(res)
                    rq = res.get("requests", (None,))[0]
                    log(f"{tag}: ready in {res['time_to_ready_s']:.2f}s, cpu {res['cpu_s']:.2f}s, "
                        f"peak {res['peak_rss_mib']:.0f} MiB, rest {res.get('rss_at_rest_mib', 0):.0f} MiB, "
                        f"gone in {res['delete_to_gone_s']:.2f}s, requests {rq}")
                if not args.no_baseline and not args.memory_only:
                    first = results[cmds[0]][-1]
                    patches, events = 4, 4
                    if "requests" in first:
                        by = first["requests"][2]
                        patches = max(1, round(sum(v for k, v in by.items()
                                                   if k.endswith("mlmodels/status")
                                                   and k.split(":")[0] in ("patch", "update")) / n))
                        events = round(sum(v for k, v in by.items() if k == "create:events") / n)
                    tag = f"N{n}-baseline-run{i + 1}"
                    log(f"{tag}: {n} models, {patches} status patches and {events} events each")
                    b = run_baseline(cluster, args, n, patches, events, tag)
                    log(f"{tag}: {b.get('baseline')} {b.get('baseline-settled')}")
                    baseline.append(b)
            named = []
            for cmd in cmds:
                name = os.path.basename(shlex.split(cmd)[0])
                if len(cmds) > 1:
                    name += f"#{cmds.index(cmd) + 1}"
                named.append((name, results[cmd]))
                if args.memory_only:
                    rest = [x["rss_at_rest_mib"] for x in results[cmd]]
                    figure(f"memory N={n} operator={name} peak_rss_mib="
                           f"{med([x['peak_rss_mib'] for x in results[cmd]]):.1f} "
                           f"{runs_note(rest)}")
                    figure(f"memory N={n} operator={name} rss_at_rest_mib={med(rest):.1f} "
                           f"per_model_kib={med(rest) * 1024 / n:.1f} (VmRSS {args.rest_seconds:.0f}s "
                           f"after all {n} Ready)")
                else:
                    report(name, n, results[cmd])
            if not args.memory_only:
                report_baseline(n, named, baseline)
        if args.audit is False:
            log("API requests not counted: the cluster has no audit log")
    finally:
        if keep_work:
            log(f"kept {work} (operator logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        subprocess.run([cluster.kubectl_path, "--kubeconfig", ADMIN_KUBECONFIG, "delete",
                        "clusterrolebinding", "mlmodel-bench", "--ignore-not-found"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if started:
            log("stopping the cluster this run started")
            cluster_sh("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
