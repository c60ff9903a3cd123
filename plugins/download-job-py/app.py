"""``download-job-py``: the Rust ``download-job`` plugin (plugins/download-job) written with the
Python SDK, and the template ``mlmodel-operator plugins new --lang python --step download``
starts from. The model's PersistentVolumeClaim and a Job running ``mlmodel-operator fetch`` into
it.

Volume layout: the Job mounts the claim at ``/models`` and fetches into ``ctx.model_mount_path``
(``/models/<revision>``), so the files sit under ``<revision>/`` on the volume and the fetcher can
rename into place atomically (a mount point cannot be renamed).

Config (``spec.plugins.config.download``): ``image`` (default: the operator's image),
``storageClassName``, ``backoffLimit`` (3), ``activeDeadlineSeconds`` (3600), ``extraArgs``
(appended to the fetch argv), and the pod settings of :class:`PodSettings`.
"""

from mlmodel_plugin import Context, Model, Plugin, PodSettings, Step, export, k8s


class DownloadJob(Plugin):
    NAME = "download-job-py"
    VERSION = "0.1.0"
    DESCRIPTION = "PersistentVolumeClaim + Job running `mlmodel-operator fetch` into it"
    STEPS = [Step.DOWNLOAD]
    CONFIG_KEYS = [
        *PodSettings.KEYS,
        "storageClassName",
        "extraArgs",
        "backoffLimit",
        "activeDeadlineSeconds",
    ]

    def render(self, model: Model, ctx: Context) -> list:
        config = ctx.config
        pod = PodSettings.from_config(config)

        claim_spec = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": model.spec.storage_size}},
        }
        storage_class = config.str("storageClassName")
        if storage_class is not None:
            claim_spec["storageClassName"] = storage_class
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": k8s.object_meta(ctx.names.volume, ctx),
            "spec": claim_spec,
        }

        # argv, never a shell line: the URL is user input.
        command = [
            "mlmodel-operator",
            "fetch",
            "--url",
            model.spec.model_url,
            "--dest",
            ctx.model_mount_path,
        ]
        if model.spec.sha256 is not None:
            command += ["--sha256", model.spec.sha256.lower()]
        command += config.string_list("extraArgs")

        container = {
            "name": "fetch",
            "image": pod.image_or(ctx.operator_image),
            "command": command,
            "volumeMounts": [{"name": k8s.MODEL_VOLUME, "mountPath": k8s.MODEL_VOLUME_ROOT}],
            "resources": pod.resources
            if pod.resources is not None
            else {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": k8s.restricted_container_security_context(),
            # The fetcher writes a one-line JSON result here; the operator reads it from the
            # Job's pod to explain a failure.
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        if pod.env:
            container["env"] = pod.env
        secret = model.spec.credentials_secret_ref
        if secret is not None:
            container["envFrom"] = [{"secretRef": {"name": secret.name}}]

        pod_spec = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": k8s.restricted_pod_security_context(),
            "containers": [container],
            "volumes": [k8s.model_volume(ctx, False)],
        }
        pod.apply_to_pod(pod_spec)

        # No ttlSecondsAfterFinished: the operator reads the finished Job to know the revision
        # is on disk, and the owner reference removes it with the model.
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": k8s.object_meta(ctx.names.job, ctx),
            "spec": {
                "backoffLimit": config.int("backoffLimit", 3),
                "activeDeadlineSeconds": config.int("activeDeadlineSeconds", 3600),
                # `fetch` exits 2 when another attempt would fail the same way (a full volume,
                # a refused URL or archive): the Job fails at once instead of retrying.
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {
                                "containerName": "fetch",
                                "operator": "In",
                                "values": [2],
                            },
                        }
                    ]
                },
                "template": {"metadata": pod.template_meta(ctx, {}), "spec": pod_spec},
            },
        }
        return [claim, job]


Renderer, Inputs = export(DownloadJob)
