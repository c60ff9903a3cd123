"""Small builders for the parts every plugin repeats: restricted security contexts, labels, and
the pod settings every default plugin takes from its config. Same shapes as the Rust SDK's
``k8s`` module (plugins/sdk/src/k8s.rs), so a plugin ported from Rust renders the same objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from .config import Config, ConfigError

if TYPE_CHECKING:
    from . import Context, Model

#: Name of the pod volume that holds the model's PersistentVolumeClaim.
MODEL_VOLUME = "model"
#: Where a download pod mounts the model volume; the files go to ``<this>/<revision>``.
MODEL_VOLUME_ROOT = "/models"


def restricted_pod_security_context() -> Dict[str, Any]:
    """Pod-level part of the ``restricted`` Pod Security Standard; uid/gid 1000 because several
    images default to root."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security_context() -> Dict[str, Any]:
    """Container-level part of the ``restricted`` Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def merge_labels(base: Mapping[str, str], extra: Mapping[str, str]) -> Dict[str, str]:
    """``base`` with ``extra`` on top (extra wins on equal keys), sorted by key."""
    merged = {**base, **extra}
    return {k: merged[k] for k in sorted(merged)}


def object_meta(name: str, ctx: "Context") -> Dict[str, Any]:
    """``metadata`` of a top-level object: its name and the host's labels."""
    return {"name": name, "labels": dict(ctx.labels)}


@dataclass
class PodSettings:
    """Pod settings every default plugin accepts from its config: ``image``, ``podLabels``,
    ``podAnnotations``, ``nodeSelector``, ``env`` (a map of name -> value, or a list of
    Kubernetes EnvVar objects) and ``resources``."""

    #: The config keys :meth:`from_config` reads: part of a plugin's ``CONFIG_KEYS``.
    KEYS = ("image", "podLabels", "podAnnotations", "nodeSelector", "env", "resources")

    image: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    annotations: Dict[str, str] = field(default_factory=dict)
    node_selector: Dict[str, str] = field(default_factory=dict)
    env: List[Dict[str, Any]] = field(default_factory=list)
    resources: Optional[Dict[str, Any]] = None

    @classmethod
    def from_config(cls, config: Config) -> "PodSettings":
        """Reads the pod settings; raises :class:`ConfigError` naming a key of the wrong type."""
        # The order of the checks is the Rust SDK's, so the first error reported is the same.
        raw_env = config.value("env")
        if raw_env is None:
            env: List[Dict[str, Any]] = []
        elif isinstance(raw_env, dict):
            env = []
            for name in sorted(raw_env):
                value = raw_env[name]
                if not isinstance(value, str):
                    raise ConfigError("plugin config key `env` must map names to strings")
                env.append({"name": name, "value": value})
        else:
            env = config.object_list("env")
        resources = config.value("resources")
        if resources is not None and not isinstance(resources, dict):
            raise ConfigError("plugin config key `resources` must be an object")
        return cls(
            image=config.str("image"),
            labels=config.string_map("podLabels"),
            annotations=config.string_map("podAnnotations"),
            node_selector=config.string_map("nodeSelector"),
            env=env,
            resources=resources,
        )

    def image_or(self, default: str) -> str:
        """The image to run: the config's, or ``default``."""
        return self.image if self.image is not None else default

    def template_meta(self, ctx: "Context", annotations: Mapping[str, str]) -> Dict[str, Any]:
        """Pod template metadata: the host's labels, then ``podLabels``; ``annotations`` then
        ``podAnnotations``."""
        meta: Dict[str, Any] = {"labels": merge_labels(ctx.labels, self.labels)}
        merged = merge_labels(annotations, self.annotations)
        if merged:
            meta["annotations"] = merged
        return meta

    def apply_to_pod(self, pod_spec: Dict[str, Any]) -> None:
        """Adds ``nodeSelector`` to a pod spec when set."""
        if self.node_selector:
            pod_spec["nodeSelector"] = dict(self.node_selector)


def model_volume(ctx: "Context", read_only: bool) -> Dict[str, Any]:
    """The volume entry pointing at the model's PersistentVolumeClaim."""
    return {
        "name": MODEL_VOLUME,
        "persistentVolumeClaim": {"claimName": ctx.names.volume, "readOnly": read_only},
    }


def model_files_mount(ctx: "Context", mount_path: str) -> Dict[str, Any]:
    """A read-only mount of this revision's files (the ``<revision>`` directory of the volume)
    at ``mount_path``."""
    return {"name": MODEL_VOLUME, "mountPath": mount_path, "subPath": ctx.revision, "readOnly": True}


def serve_deployment(
    model: "Model", ctx: "Context", pod: PodSettings, container: Dict[str, Any]
) -> Dict[str, Any]:
    """A Deployment of one ``container`` with the model volume: selector = the host's selector
    labels; pod labels = selector + host labels + ``podLabels``; the ``mlmodel.dev/revision`` pod
    annotation so that a new revision rolls the pods."""
    pod_spec: Dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security_context(),
        "containers": [container],
        "volumes": [model_volume(ctx, True)],
    }
    pod.apply_to_pod(pod_spec)
    template_meta = pod.template_meta(ctx, {"mlmodel.dev/revision": ctx.revision})
    template_meta["labels"] = merge_labels(merge_labels(ctx.selector_labels, ctx.labels), pod.labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(ctx.names.workload, ctx),
        "spec": {
            "replicas": model.spec.replicas,
            "selector": {"matchLabels": dict(ctx.selector_labels)},
            # Never below the wanted count during a revision change.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def disruption_budget(model: "Model", ctx: "Context") -> Optional[Dict[str, Any]]:
    """The disruption budget of a model of two replicas or more: one serving pod at a time may be
    evicted, and a pod that is not ready may always be. ``None`` for one replica."""
    if model.spec.replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(ctx.names.workload, ctx),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(ctx.selector_labels)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


#: Annotation on a serve plugin's workload: the protocol clients speak to the server (``v2``, the
#: Open Inference Protocol; ``tfserving-rest``; ``http``). The host shows it in
#: ``status.inference`` with the URL a client posts to.
INFERENCE_PROTOCOL = "mlmodel.dev/inference-protocol"
#: Annotation on a serve plugin's workload: the name the server knows the model by.
INFERENCE_MODEL = "mlmodel.dev/inference-model"


def set_inference(workload: Dict[str, Any], protocol: str, model: str) -> None:
    """Tells the host how clients call the served model: sets both annotations on ``workload``."""
    annotations = workload.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[INFERENCE_PROTOCOL] = protocol
    annotations[INFERENCE_MODEL] = model
