"""The real-node part of hack/chaos.py (scenario `real-node`): faults only a real kubelet,
containerd and volume can show.

  download-kill   a model downloaded from a paced file server on the bridge; the download
                  container is killed (SIGKILL through containerd) half-way: the Job's next
                  attempt resumes from the partial file (the server sees a Range request and
                  sends well under twice the file), the model ends Ready with the right sha256
  kubelet         the kubelet restarted while the model serves: the model reports the truth
                  throughout and is Ready, and routed, afterwards
  disk-full       a volume of a small StorageClass (a 16 MiB tmpfs, hack/node.sh) and a model
                  larger than it, with and without a Content-Length: Failed, the Downloaded
                  condition's reason DiskFull at the first attempt (no retry), no server ever
                  created, nothing marked complete
"""

import hashlib
import http.client
import http.server
import json
import os
import socketserver
import subprocess
import threading
import time

import bench_scale as bs
import chaos

BRIDGE_IP = "10.88.0.1"
CONTAINERD_SOCK = "/run/mlmodel-operator/containerd/containerd.sock"
REAL_NODE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": "mlmodel.dev/real-node=true",
    "scheduler.alpha.kubernetes.io/defaultTolerations":
        '[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"}]',
}


class FileServer:
    """Files over HTTP on the bridge address, sent at `rate` bytes/s, with Range requests; it
    counts the bytes it sends and records each request's range start."""

    def __init__(self, files, rate, content_length=True):
        self.files, self.rate, self.content_length = files, rate, content_length
        self.sent = 0
        self.starts = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                # A strong validator, as object stores and web servers send: the downloader
                # resumes only against one (If-Range), never blind.
                etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                start = 0
                rng = self.headers.get("Range", "")
                if_range = self.headers.get("If-Range")
                if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit() and if_range in (None, etag):
                    start = min(int(rng[6:].split("-")[0]), len(data))
                with server.lock:
                    server.starts.append(start)
                body = data[start:]
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                if server.content_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                chunk = max(4096, server.rate // 20)
                try:
                    for i in range(0, len(body), chunk):
                        self.wfile.write(body[i:i + chunk])
                        with server.lock:
                            server.sent += len(body[i:i + chunk])
                        time.sleep(chunk / server.rate)
                except OSError:
                    pass
                if not server.content_length:
                    self.close_connection = True

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server((BRIDGE_IP, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://{BRIDGE_IP}:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()


def model(name, url, sha256, storage_class="local-path", size="64Mi"):
    return {
        "apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {"modelURL": url, "storageSize": size, "framework": "file-server", "replicas": 1,
                 "expose": True, "sha256": sha256,
                 "plugins": {"config": {"download": {"storageClassName": storage_class, "backoffLimit": 3}}}},
    }


def status(api, ns, name):
    obj = api.get(chaos.MODELS.format(ns=ns) + "/" + name) or {}
    return obj.get("status") or {}


def wait(api, ns, name, pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = status(api, ns, name)
        if pred(st):
            return st
        time.sleep(0.5)
    raise TimeoutError(f"{name}: {what} not seen in {timeout}s; status {json.dumps(st)[:600]}")


def pods(api, ns, name, step):
    return api.items(f"/api/v1/namespaces/{ns}/pods", f"mlmodel.dev/model={name},mlmodel.dev/step={step}")


def kill_container(container_id):
    cid = container_id.split("://", 1)[-1]
    subprocess.run(["ctr", "--address", CONTAINERD_SOCK, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", cid],
                   check=True, stdout=subprocess.DEVNULL)


def http_get(host, path, timeout=5):
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def cluster_ip(api, ns, name):
    svc = api.get(f"/api/v1/namespaces/{ns}/services/{name}") or {}
    return (svc.get("spec") or {}).get("clusterIP")


def download_kill(api, ns, rng):
    size = 24 << 20
    data = rng.randbytes(size)
    sha = hashlib.sha256(data).hexdigest()
    server = FileServer({"/model.bin": data}, rate=3 << 20)
    out = {"fault": "download container killed", "problems": []}
    try:
        api.create(chaos.MODELS.format(ns=ns), model("dlkill", server.url("/model.bin"), sha))
        at = rng.uniform(0.3, 0.6)
        deadline = time.time() + 180
        while server.sent < size * at:
            if time.time() > deadline:
                raise TimeoutError(f"the download did not start (sent {server.sent})")
            time.sleep(0.05)
        running = [p for p in pods(api, ns, "dlkill", "download")
                   if any(c.get("containerID") and "running" in (c.get("state") or {})
                          for c in (p.get("status") or {}).get("containerStatuses") or [])]
        if not running:
            raise RuntimeError("no running download container to kill")
        cs = running[0]["status"]["containerStatuses"][0]
        killed_at_bytes = server.sent
        kill_container(cs["containerID"])
        t_kill = time.time()
        st = wait(api, ns, "dlkill", lambda s: s.get("phase") in ("Ready", "Failed"), 240, "Ready or Failed")
        out["converge_s"] = time.time() - t_kill
        dl = st.get("download") or {}
        out.update(killed_at_mib=round(killed_at_bytes / 2**20, 1), file_mib=size >> 20,
                   server_sent_mib=round(server.sent / 2**20, 1), range_starts=server.starts,
                   attempts=dl.get("attempts"), retries=[r.get("reason") for r in dl.get("retries") or []])
        if st.get("phase") != "Ready":
            out["problems"].append(f"dlkill: {st.get('phase')}/{st.get('reason')}: {st.get('message')}")
        if dl.get("sha256") != sha:
            out["problems"].append(f"dlkill: sha256 {dl.get('sha256')}, want {sha}")
        if not any(s > 0 for s in server.starts):
            out["problems"].append(f"dlkill: no ranged request after the kill (requests from {server.starts})")
        if server.sent > size * 1.6:
            out["problems"].append(f"dlkill: the server sent {server.sent} bytes for a {size}-byte file")
        ip = cluster_ip(api, ns, "dlkill")
        code, body = retry_get(ip, "/model.bin")
        if code != 200 or hashlib.sha256(body).hexdigest() != sha:
            out["problems"].append(f"dlkill: GET through the Service: {code}, {len(body)} bytes")
    finally:
        server.stop()
    return out


def retry_get(ip, path, seconds=20):
    deadline = time.time() + seconds
    while True:
        try:
            return http_get(ip, path, timeout=10)
        except OSError:
            if time.time() > deadline:
                return 0, b""
            time.sleep(0.2)


def kubelet_restart(api, ns, rng):
    data = rng.randbytes(1 << 20)
    sha = hashlib.sha256(data).hexdigest()
    server = FileServer({"/model.bin": data}, rate=64 << 20)
    out = {"fault": "kubelet restarted", "problems": []}
    try:
        api.create(chaos.MODELS.format(ns=ns), model("kubelet", server.url("/model.bin"), sha))
        wait(api, ns, "kubelet", lambda s: s.get("phase") == "Ready", 240, "Ready")
        ip = cluster_ip(api, ns, "kubelet")
        seen, failed_gets, stop = [], [0, 0], threading.Event()

        def sample():
            while not stop.is_set():
                st = status(api, ns, "kubelet")
                pair = (st.get("phase"), st.get("reason"))
                if not seen or seen[-1] != pair:
                    seen.append(pair)
                try:
                    code, body = http_get(ip, "/model.bin", timeout=2)
                    failed_gets[0 if code == 200 and len(body) == len(data) else 1] += 1
                except OSError:
                    failed_gets[1] += 1
                time.sleep(0.5)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0 = time.time()
        subprocess.run([os.path.join(bs.ROOT, "hack", "cluster.sh"), "restart", "kubelet"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(20)
        st = wait(api, ns, "kubelet", lambda s: s.get("phase") == "Ready", 120, "Ready after the restart")
        stop.set()
        th.join()
        out["converge_s"] = time.time() - t0 - 20
        out.update(phases_seen=[f"{p}/{r}" for p, r in seen], gets_ok=failed_gets[0], gets_failed=failed_gets[1])
        code, body = retry_get(ip, "/model.bin")
        if code != 200 or hashlib.sha256(body).hexdigest() != sha:
            out["problems"].append(f"kubelet: GET through the Service after the restart: {code}")
        if st.get("phase") != "Ready":
            out["problems"].append(f"kubelet: {st.get('phase')} after the restart")
    finally:
        server.stop()
    return out


def disk_full(api, ns, rng):
    """Two models larger than the 16 MiB volume class, one after the other (they share the
    tmpfs): one whose server sends a Content-Length (refused before a byte is written), one
    that streams without (the volume really fills)."""
    size = 32 << 20
    data = rng.randbytes(size)
    sha = hashlib.sha256(data).hexdigest()
    out = {"fault": "volume full", "problems": []}
    small = os.path.join(bs.CACHE, "node", "small-volumes")
    t_start = time.time()
    for name, with_length in (("full-sized", True), ("full-chunked", False)):
        server = FileServer({"/big.bin": data}, rate=64 << 20, content_length=with_length)
        try:
            api.create(chaos.MODELS.format(ns=ns), model(name, server.url("/big.bin"), sha, "local-path-small", "16Mi"))
            t0 = time.time()
            st = wait(api, ns, name, lambda s: s.get("phase") == "Failed", 240, "Failed")
            out[f"{name}_s"] = round(time.time() - t0, 1)
            downloaded = next((c for c in st.get("conditions") or [] if c["type"] == "Downloaded"), {})
            out[f"{name}_message"] = downloaded.get("message")
            if with_length and "needs" not in (downloaded.get("message") or ""):
                out["problems"].append(f"{name}: a stated size that cannot fit was not refused before "
                                       f"writing: {downloaded.get('message')}")
            if downloaded.get("reason") != "DiskFull":
                out["problems"].append(f"{name}: {st.get('reason')}/{downloaded.get('reason')}: "
                                       f"{downloaded.get('message')}, want DiskFull")
            # A retry meets the same full volume: the downloader exits 2 and the Job's
            # podFailurePolicy fails it at the first attempt.
            attempts = (st.get("download") or {}).get("attempts")
            out[f"{name}_attempts"] = attempts
            if attempts != 1:
                out["problems"].append(f"{name}: {attempts} attempts for a full volume, want 1")
            if api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", f"mlmodel.dev/model={name}"):
                out["problems"].append(f"{name}: a server was created for a volume that filled")
            placed = [os.path.join(d, f) for d, _, files in os.walk(small) for f in files
                      if f == ".mlmodel-complete.json"]
            if placed:
                out["problems"].append(f"{name}: a download marked complete on the full volume: {placed}")
        finally:
            server.stop()
        # Its volume goes with it (the claim is the model's), so the next has the whole tmpfs.
        api.delete(chaos.MODELS.format(ns=ns) + "/" + name)
        deadline = time.time() + 120
        while api.items(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", f"mlmodel.dev/model={name}") \
                or any(os.scandir(small)):
            if time.time() > deadline:
                out["problems"].append(f"{name}: its volume was not released within 120s")
                break
            time.sleep(1)
    out["converge_s"] = time.time() - t_start
    return out


def run(ctx):
    """Runs the three faults in one namespace of the real node, with one operator."""
    image = os.environ.get("MLMODEL_TEST_OPERATOR_IMAGE")
    if not image:
        raise SystemExit("chaos: real-node needs MLMODEL_TEST_OPERATOR_IMAGE (make chaos sets it)")
    env = chaos.Env(ctx.cluster, ctx.api, ctx.work, "node", ctx.rng)
    ctx.api.merge(f"/api/v1/namespaces/{env.ns}", {"metadata": {
        "annotations": REAL_NODE_ANNOTATIONS,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    r = env.replica("a", False)
    r.env["MLMODEL_OPERATOR_IMAGE"] = image
    env.start()
    parts, problems, faults = [], [], {}
    t_end = time.time()
    for fn in (download_kill, kubelet_restart, disk_full):
        try:
            part = fn(ctx.api, env.ns, ctx.rng)
        except (RuntimeError, TimeoutError) as e:
            part = {"fault": fn.__name__, "problems": [f"{fn.__name__}: {e}"], "converge_s": 0}
        parts.append(part)
        problems += part["problems"]
        faults[part["fault"]] = faults.get(part["fault"], 0) + 1
        t_end = max(t_end, time.time())
        chaos.log(f"real-node {fn.__name__}: {json.dumps({k: v for k, v in part.items() if k != 'problems'})}")
    models = []
    res = {"scenario": "real-node", "faults": faults, "models": 4, "live": 4,
           "converged": 4 - len({p.split(':')[0] for p in problems}),
           "converge_s": max(p.get("converge_s", 0) for p in parts), "problems": problems,
           "duplicates": 0, "orphans": 0, "details": parts}
    try:
        more, counts = chaos.check(ctx.api, env.ns, models)
        res.update({k: v for k, v in counts.items()})
        res["problems"] += more
    except RuntimeError as e:
        res["problems"].append(str(e))
    env.stop(ctx.keep)
    return res
