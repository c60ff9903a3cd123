"""The two-node part of hack/chaos.py (scenario `nodes`): models of two replicas, one on each real
node (per-pod storage), answering requests through their Services while the second node suffers,
one fault at a time at seeded instants:

  drain            `kubectl drain` of the second node (the models' pods), held a few seconds,
                   then uncordoned
  kubelet-loss     the second node's kubelet stopped for 10-70 s (past the node lifecycle
                   controller's grace at times: the model says Degraded, NodeLost, and its
                   replica there is evicted and replaced on the first node), then started again
  runtime-restart  the second node's containerd restarted (containers live on in their shims)

Afterwards every model must be Ready with 2/2 replicas at its generation, with one Deployment,
no claim or download Job (per-pod storage) and nothing duplicated or orphaned; and no request may
have failed while a replica remained, which is always here: the first node is never touched.
"""

import hashlib
import json
import os
import subprocess
import threading
import time

import bench_scale as bs
import chaos
import chaos_node

SECOND_NODE_TOLERATIONS = (
    '[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"},'
    '{"key":"mlmodel.dev/second-node","operator":"Exists","effect":"NoSchedule"}]'
)
NODE_SH = os.path.join(bs.ROOT, "hack", "node.sh")


def node_sh(*args):
    subprocess.run([NODE_SH, *args], check=True, env={**os.environ, "MLMODEL_NODE_INDEX": "2"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def second_node(api):
    nodes = api.items("/api/v1/nodes", "mlmodel.dev/real-node=true")
    for n in nodes:
        if any(t.get("key") == "mlmodel.dev/second-node" for t in (n.get("spec") or {}).get("taints") or []):
            return n["metadata"]["name"]
    raise RuntimeError("no second real node (hack/cluster.sh up starts it)")


def kubelet_pid():
    return open(os.path.join(bs.CACHE, "cluster", "run", "node2", "kubelet.pid")).read().strip()


class Requests:
    """GETs of each model's file through its Service, one model after the other, all the while."""

    def __init__(self, targets):
        self.targets = targets  # [(cluster IP, path, size)]
        self.ok = self.failed = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop.is_set():
            for ip, path, size in self.targets:
                try:
                    code, body = chaos_node.http_get(ip, path, timeout=5)
                    good = code == 200 and len(body) == size
                except OSError as e:
                    good, code = False, str(e)
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {ip}{path}: {code}")
            time.sleep(0.05)


def rebalance(api, ns, names, node2, rng):
    """After a fault both replicas of a model may sit on the first node (nothing moves a running
    pod back): one of them is deleted, as a descheduler would, and its replacement spreads to the
    second node, so that the next fault has a replica there to hit. Returns the pods moved."""
    moved = 0
    for name in names:
        live = [p for p in chaos_node.pods(api, ns, name, "serve") if not p["metadata"].get("deletionTimestamp")]
        if live and all((p.get("spec") or {}).get("nodeName") != node2 for p in live):
            victim = rng.choice(live)["metadata"]["name"]
            api.delete(f"/api/v1/namespaces/{ns}/pods/{victim}")
            moved += 1
    deadline = time.time() + 180
    while moved and time.time() < deadline:
        spread = all(any((p.get("spec") or {}).get("nodeName") == node2 and not p["metadata"].get("deletionTimestamp")
                         for p in chaos_node.pods(api, ns, name, "serve")) for name in names)
        ready = all(chaos_node.status(api, ns, name).get("replicasReady") == "2/2" for name in names)
        if spread and ready:
            break
        time.sleep(0.5)
    return moved


def run(ctx):
    image = os.environ.get("MLMODEL_TEST_OPERATOR_IMAGE")
    if not image:
        raise SystemExit("chaos: nodes needs MLMODEL_TEST_OPERATOR_IMAGE (make chaos sets it)")
    api, rng = ctx.api, ctx.rng
    node2 = second_node(api)
    env = chaos.Env(ctx.cluster, api, ctx.work, "nodes", rng)
    api.merge(f"/api/v1/namespaces/{env.ns}", {"metadata": {
        "annotations": {"scheduler.alpha.kubernetes.io/node-selector": "mlmodel.dev/real-node=true",
                        "scheduler.alpha.kubernetes.io/defaultTolerations": SECOND_NODE_TOLERATIONS},
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    r = env.replica("a", False)
    r.env["MLMODEL_OPERATOR_IMAGE"] = image
    env.start()
    n_models = 3 if ctx.full else 2
    n_faults = 6 if ctx.full else 3
    files = {f"/m{i}.bin": rng.randbytes((256 << 10) + i) for i in range(n_models)}
    server = chaos_node.FileServer(files, rate=256 << 20)
    names = [f"pair-{i}" for i in range(n_models)]
    problems, faults, details, counts = [], {}, {}, {}
    t_start = time.time()
    try:
        for i, name in enumerate(names):
            body = chaos_node.model(name, server.url(f"/m{i}.bin"),
                                    hashlib.sha256(files[f"/m{i}.bin"]).hexdigest())
            body["spec"]["replicas"] = 2
            api.create(chaos.MODELS.format(ns=env.ns), body)
        for name in names:
            chaos_node.wait(api, env.ns, name,
                            lambda s: s.get("phase") == "Ready" and s.get("replicasReady") == "2/2",
                            240, "Ready 2/2")
        details["ready_2of2_s"] = round(time.time() - t_start, 1)
        targets = []
        for i, name in enumerate(names):
            ip = chaos_node.cluster_ip(api, env.ns, name)
            chaos_node.retry_get(ip, f"/m{i}.bin")  # this machine's kube-proxy has the Service
            targets.append((ip, f"/m{i}.bin", len(files[f"/m{i}.bin"])))
        requests = Requests(targets)
        requests.thread.start()
        phases = {name: [] for name in names}

        def sample():
            while not requests.stop.is_set():
                for name in names:
                    st = chaos_node.status(api, env.ns, name)
                    now = f"{st.get('phase')}/{st.get('reason')} {st.get('replicasReady')}"
                    if not phases[name] or phases[name][-1] != now:
                        phases[name].append(now)
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for _ in range(n_faults):
            time.sleep(rng.uniform(2, 10))
            fault = rng.choice(["drain", "kubelet-loss", "runtime-restart"])
            faults[fault] = faults.get(fault, 0) + 1
            t0 = time.time()
            if fault == "drain":
                ctx.cluster.kubectl("drain", node2, "--ignore-daemonsets", "--delete-emptydir-data",
                                    "--pod-selector", "mlmodel.dev/model", "--timeout=180s",
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(3, 15))
                ctx.cluster.kubectl("uncordon", node2, stdout=subprocess.DEVNULL)
            elif fault == "kubelet-loss":
                held = rng.uniform(10, 70)
                subprocess.run(["kill", "-TERM", kubelet_pid()], check=True)
                time.sleep(held)
                node_sh("restart", "kubelet")
            else:
                node_sh("restart", "containerd")
            chaos.log(f"nodes: {fault} on {node2} done in {time.time() - t0:.1f}s")
            details["rebalanced"] = details.get("rebalanced", 0) + rebalance(api, env.ns, names, node2, rng)
        t_last = time.time()
        for name in names:
            try:
                chaos_node.wait(api, env.ns, name,
                                lambda s: s.get("phase") == "Ready" and s.get("replicasReady") == "2/2",
                                300, "Ready 2/2 after the faults")
            except TimeoutError as e:
                problems.append(str(e))
        details["converge_s"] = round(time.time() - t_last, 1)
        time.sleep(2)
        requests.stop.set()
        requests.thread.join()
        sampler.join()
        details.update(requests_ok=requests.ok, requests_failed=requests.failed,
                       phases={n: p for n, p in phases.items()})
        if requests.failed:
            problems.append(f"{requests.failed} requests failed while a replica remained on the first "
                            f"node: {requests.failures[:5]}")
        for name in names:
            obj = api.get(chaos.MODELS.format(ns=env.ns) + "/" + name) or {}
            st = obj.get("status") or {}
            if st.get("observedGeneration") != (obj.get("metadata") or {}).get("generation"):
                problems.append(f"{name}: observedGeneration {st.get('observedGeneration')}")
            if (st.get("storage") or {}).get("mode") != "PerPod":
                problems.append(f"{name}: storage {st.get('storage')}, want PerPod")
            for kind, path in (("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
                               ("PersistentVolumeClaim", "/api/v1/namespaces/{ns}/persistentvolumeclaims"),
                               ("Job", "/apis/batch/v1/namespaces/{ns}/jobs"),
                               ("PodDisruptionBudget", "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets")):
                found = api.items(path.format(ns=env.ns), f"mlmodel.dev/model={name}")
                want = 1 if kind in ("Deployment", "PodDisruptionBudget") else 0
                if len(found) != want:
                    problems.append(f"{name}: {len(found)} {kind}s, want {want}")
        more, counts = chaos.check(api, env.ns, [])
        problems += more
    finally:
        ctx.cluster.kubectl("uncordon", node2, stdout=subprocess.DEVNULL)
        server.stop()
    res = {"scenario": "nodes", "faults": faults, "models": n_models, "live": n_models,
           "converged": n_models - len({p.split(':')[0] for p in problems if p.startswith("pair-")}),
           "converge_s": details.get("converge_s", 0), "problems": problems,
           "duplicates": counts.get("duplicates", 0), "orphans": counts.get("orphans", 0),
           "details": details}
    chaos.log(f"nodes: {json.dumps(details)}")
    env.stop(ctx.keep)
    return res
