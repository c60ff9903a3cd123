#!/usr/bin/env python3
"""Runs the MLServer image's root file system on this machine, as a container would, with no
container engine and no cluster, and checks that it serves a model: MLServer as uid 1000 and PID 1
of its own mount and PID namespaces, the root file system read-only, /tmp a fresh tmpfs, /proc,
a minimal /dev, the model directory mounted read-only at /mnt/models, and the environment the
`mlserver` serve plugin gives the container (the host's network: it listens on 8080-8082, see
--port).

    hack/runtime/serve_check.py --rootfs ~/.cache/mlmodel-operator/images/mlserver-<hash>/rootfs \\
        --model DIR [--model-file model.joblib] [--expect TRAIN_JSON] [--workers 0] [--tmp tmpfs|ro] \\
        [--port 8080] [--hold SECONDS]

TRAIN_JSON is the line hack/runtime/train_iris.py printed: its request is sent to
/v2/models/iris/infer and the answer must carry its predictions, value for value, as INT64.
While the server starts, the codes of /v2/health/live, /v2/health/ready and
/v2/models/iris/ready are polled every 0.1 s and each change is reported with its time. Then:
the RSS of the server's processes, a SIGTERM and the time to exit. When the model fails to load,
reports whether the process exits (its code, its last log lines) or stays up.

--hold SECONDS keeps the server up for a benchmark: once it is ready (and, with --expect, has
answered correctly), one JSON line goes to stdout at once, {"serving": "http://127.0.0.1:PORT",
"infer": URL, "pid": ..., "ready_seconds": ..., "answered_seconds": ...}, and the server stays up
until this process gets SIGTERM or SIGINT, the server exits, or SECONDS pass (`inf`: no bound);
then the checks go on as without it. --port moves the server's ports (HTTP PORT, gRPC PORT+1,
metrics PORT+2; default 8080).

Prints one JSON report on stdout (after that line, with --hold); exit status 0 when the model
served and the predictions matched (or, with --expect-failure, when the server did not become
ready). Run as root (unshare, mount, chroot); Python standard library only.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NAME = "iris"
HTTP, GRPC, METRICS = 8080, 8081, 8082

# The container's environment: the image's Env, then what the serve plugin sets.
def environment(workers: int, model_file: str) -> dict:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "MLSERVER_MODELS_DIR": "/mnt/models",
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLSERVER_MODEL_NAME": NAME,
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_sklearn.SKLearnModel",
        "MLSERVER_MODEL_URI": "/mnt/models" + (f"/{model_file}" if model_file else ""),
        "MLSERVER_HTTP_PORT": str(HTTP),
        "MLSERVER_GRPC_PORT": str(GRPC),
        "MLSERVER_METRICS_PORT": str(METRICS),
        "MLSERVER_PARALLEL_WORKERS": str(workers),
        "MLSERVER_METRICS_DIR": "/tmp",
    }

# Inside the new namespaces: the container's mounts, then exec the server (PID 1).
SETUP = r"""
set -eu
root=$1 model=$2 mnt=$3 tmp=$4; shift 4
mount --bind "$root" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t proc proc "$mnt/proc"
[ "$tmp" = ro ] || mount -t tmpfs -o mode=1777,size=512m tmpfs "$mnt/tmp"
mount -t tmpfs -o mode=755,size=1m tmpfs "$mnt/dev"
for d in null zero full random urandom tty; do touch "$mnt/dev/$d"; mount --bind "/dev/$d" "$mnt/dev/$d"; done
mkdir "$mnt/dev/shm" "$mnt/dev/pts"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$mnt/dev/shm"
ln -s /proc/self/fd "$mnt/dev/fd"
mount -o remount,ro "$mnt/dev"
mount --bind "$model" "$mnt/mnt/models"
mount -o remount,bind,ro "$mnt/mnt/models"
cd /
exec chroot --userspec=1000:1000 "$mnt" /usr/bin/env -i "$@" /bin/sh -c 'cd /tmp && exec mlserver start /mnt/models'
"""


def code(path: str, data: bytes = None) -> tuple:
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP}{path}", data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def tree_pids(pid: int) -> list:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def rss_kib(pid: int) -> dict:
    out = {}
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
            out[p] = {"name": st["Name"].strip(), "VmRSS_kib": int(st["VmRSS"].split()[0]),
                      "VmHWM_kib": int(st["VmHWM"].split()[0])}
        except (OSError, KeyError):
            pass
    return out


def hold(seconds: float, proc, server: int, report: dict) -> float:
    """Keeps the server up (see --hold); returns how long it was held."""
    print(json.dumps({"serving": f"http://127.0.0.1:{HTTP}",
                      "infer": f"http://127.0.0.1:{HTTP}/v2/models/{NAME}/infer",
                      "pid": server, "ready_seconds": report["ready_seconds"],
                      "answered_seconds": report.get("answered_seconds")}), flush=True)
    stop = []
    handler = lambda signum, frame: stop.append(signum)
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    t = time.monotonic()
    try:
        while not stop and proc.poll() is None and time.monotonic() - t < seconds:
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return round(time.monotonic() - t, 2)


def main():
    global HTTP, GRPC, METRICS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rootfs", required=True)
    p.add_argument("--model", required=True, help="the model directory (mounted read-only)")
    p.add_argument("--expect", help="the JSON line of train_iris.py for this model")
    p.add_argument("--expect-failure", action="store_true", help="the model must not load")
    p.add_argument("--workers", type=int, default=0, help="MLSERVER_PARALLEL_WORKERS (default 0)")
    p.add_argument("--model-file", help="MLSERVER_MODEL_URI=/mnt/models/FILE (default: the directory)")
    p.add_argument("--tmp", choices=["tmpfs", "ro"], default="tmpfs",
                   help="/tmp: a fresh tmpfs (an emptyDir), or read-only like the rest of the root")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--log", help="keep the server's output in this file")
    p.add_argument("--port", type=int, default=HTTP,
                   help="the HTTP port; gRPC is PORT+1, metrics PORT+2 (default 8080)")
    p.add_argument("--hold", type=float, default=0, metavar="SECONDS",
                   help="once it serves, print a JSON line and keep it up until SIGTERM/SIGINT "
                        "or SECONDS (`inf`: no bound)")
    args = p.parse_args()
    HTTP, GRPC, METRICS = args.port, args.port + 1, args.port + 2
    expect = json.loads(open(args.expect).read()) if args.expect else None
    if code("/v2/health/live")[0]:
        sys.exit(f"serve_check: something already answers on port {HTTP}")

    report = {"workers": args.workers, "transitions": []}
    log = open(args.log, "w+b") if args.log else tempfile.TemporaryFile()
    mnt = tempfile.mkdtemp(prefix="mlserver-root-")
    env = [f"{k}={v}" for k, v in environment(args.workers, args.model_file).items()]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["unshare", "--mount", "--pid", "--fork", "--kill-child=SIGKILL", "bash", "-c", SETUP, "setup",
         os.path.abspath(args.rootfs), os.path.abspath(args.model), mnt, args.tmp, *env],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    paths = ["/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready"]
    last = None
    ready_at = None
    try:
        while time.monotonic() - t0 < args.timeout:
            codes = tuple(code(path)[0] for path in paths)
            if codes != last:
                report["transitions"].append(
                    {"t": round(time.monotonic() - t0, 2), **dict(zip(paths, codes))})
                last = codes
            if codes[2] == 200:
                ready_at = time.monotonic() - t0
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        report["ready_seconds"] = round(ready_at, 2) if ready_at else None
        # The server: the only child of unshare (PID 1 of the namespace).
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:  # unshare exited: so did the server
            children = []
        server = children[0] if children else None
        if ready_at:
            status, body = code(f"/v2/models/{NAME}")
            report["metadata"] = {"status": status, "body": json.loads(body or b"null")}
            if expect:
                status, body = code(f"/v2/models/{NAME}/infer", json.dumps(expect["request"]).encode())
                answer = json.loads(body or b"null")
                report["infer"] = {"status": status, "response": answer}
                out = (answer or {}).get("outputs", [{}])[0]
                report["predictions_match"] = (
                    status == 200 and out.get("data") == expect["predictions"]
                    and out.get("datatype") == "INT64")
                if report["predictions_match"]:
                    report["answered_seconds"] = round(time.monotonic() - t0, 3)
            report["metrics_port"] = urllib.request.urlopen(
                f"http://127.0.0.1:{METRICS}/metrics", timeout=5).status
            if args.hold > 0 and server and report.get("predictions_match", True):
                report["held_seconds"] = hold(args.hold, proc, server, report)
            time.sleep(2)  # settle after the first inference
            report["rss"] = rss_kib(server) if server else None
            report["rss_total_mib"] = round(sum(v["VmRSS_kib"] for v in report["rss"].values()) / 1024, 1)
            t1 = time.monotonic()
            if proc.poll() is None:  # (it may have exited while held)
                os.kill(server, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            report["sigterm_exit_seconds"] = round(time.monotonic() - t1, 2)
        else:
            # Not ready: does it exit, or stay up with the model not ready?
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            codes = tuple(code(path)[0] for path in paths)
            report["after_failure"] = {"t": round(time.monotonic() - t0, 2), **dict(zip(paths, codes))}
        report["exit_code"] = proc.poll()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.rmdir(mnt)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        report["last_log_lines"] = lines[-12:]
    print(json.dumps(report, indent=1))
    ok = (report.get("predictions_match", True) and ready_at is not None) != args.expect_failure
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
