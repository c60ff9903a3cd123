#!/usr/bin/env python3
"""API load of download progress with N downloads in flight on the local cluster (prints
figures, asserts nothing). Python 3 standard library only; shares hack/bench_scale.py's helpers.

N models (--models, default 1000) whose download pods stay Running on the fake nodes (kwok
annotation kwok.mlmodel.dev/complete-after: 1800s, set through the download plugin's
podAnnotations); kwok serves hack/cluster/fetch-progress.log as each `fetch` container's log, so
the operator reads real progress lines through the API server. Once every download pod runs, for
--window seconds (default 60), from the kube-apiserver's audit log (user mlmodel-bench-operator):

  log_reads_per_s        GET pods/log
  status_writes_per_s    PATCH mlmodels/status
  requests_per_s         everything the operator sent
  pods_read              distinct download pods whose log was read in the window
  models_with_progress   models whose status shows status.download.progress at the end

    hack/bench_progress.py --models 1000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scale as bs  # noqa: E402

MODEL = """---
apiVersion: mlmodel.dev/v1alpha1
kind: MLModel
metadata:
  name: dl-{i:05d}
spec:
  modelURL: https://example.com/models/{i}.bin
  framework: echo
  plugins:
    config:
      download:
        podAnnotations:
          kwok.mlmodel.dev/complete-after: "1800s"
"""


def audit_reads(user, since, t0, t1):
    """Distinct pods whose log `user` read between t0 and t1."""
    pods = set()
    for path in sorted(bs.glob.glob(os.path.join(bs.LOGS, "audit*.log")), key=os.path.getmtime):
        if os.path.getmtime(path) < since - 1:
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if f'"username":"{user}"' not in line or '"subresource":"log"' not in line:
                    continue
                ev = bs.json.loads(line)
                t = bs.parse_ts(ev["requestReceivedTimestamp"])
                if t0 <= t <= t1:
                    ref = ev["objectRef"]
                    pods.add((ref.get("namespace"), ref.get("name")))
    return len(pods)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", "-n", type=int, default=1000)
    p.add_argument("--window", type=float, default=60)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--no-build", action="store_true", help="use the existing release build")
    args = p.parse_args()

    started = False
    if not bs.cluster_healthy():
        bs.cluster_sh("up")
        started = True
    if not bs.audit_enabled():
        sys.exit("the running cluster has no audit log: restart it (make cluster-down cluster-up)")
    if not args.no_build:
        bs.run(["cargo", "build", "--release", "-q", "-p", "mlmodel-operator", "--bin", "mlmodel-operator"],
               cwd=bs.ROOT)
    cluster = bs.Cluster()
    work = tempfile.mkdtemp(prefix="bench-progress-")
    kubeconfig = bs.mint_identity(work, bs.OPERATOR_USER)
    cluster.kubectl("apply", "-f", "-", input=bs.BINDING, stdout=subprocess.DEVNULL)
    ns = bs.new_namespace(cluster, "bench-progress")
    op = bs.Operator(bs.DEFAULT_CMD, ns, kubeconfig, os.path.join(work, "operator.log"))
    try:
        path = os.path.join(work, "models.yaml")
        with open(path, "w") as f:
            f.write("".join(MODEL.format(i=i) for i in range(args.models)))
        bs.log(f"creating {args.models} models in {ns}")
        cluster.kubectl("apply", "--server-side", "-n", ns, "-f", path, stdout=subprocess.DEVNULL)
        deadline = time.time() + args.timeout
        pods = f"/api/v1/namespaces/{ns}/pods"
        while True:
            running = sum(1 for pod in cluster.get(pods, {"labelSelector": "mlmodel.dev/step=download"})["items"]
                          if pod.get("status", {}).get("phase") == "Running")
            if running >= args.models:
                break
            if time.time() > deadline or not op.alive():
                sys.exit(f"only {running} of {args.models} download pods running")
            time.sleep(2)
        bs.log(f"{running} downloads in flight; measuring {args.window:.0f} s")
        t0 = time.time()
        time.sleep(args.window)
        t1 = time.time()
        time.sleep(1)  # the audit backend writes asynchronously
        events = bs.audit_events(bs.OPERATOR_USER, t0)
        total, by_verb, by_resource = bs.count_requests(events, t0, t1)
        secs = t1 - t0
        reads = by_resource.get("get:pods/log", 0)
        writes = by_resource.get("patch:mlmodels/status", 0)
        models = cluster.get(f"/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels")["items"]
        shown = sum(1 for m in models if (m.get("status", {}).get("download") or {}).get("progress"))
        bs.figure(f"N={args.models} window_s={secs:.0f} log_reads_per_s={reads / secs:.2f} "
                  f"status_writes_per_s={writes / secs:.2f} requests_per_s={total / secs:.2f} "
                  f"pods_read={audit_reads(bs.OPERATOR_USER, t0, t0, t1)} "
                  f"models_with_progress={shown}")
        bs.figure(f"N={args.models} requests_by_resource={dict(sorted(by_resource.items()))}")
    finally:
        op.stop()
        bs.delete_namespace(cluster, ns, wait=False)
        if started:
            bs.cluster_sh("down")


if __name__ == "__main__":
    main()
