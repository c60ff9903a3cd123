"""The guest side of the mlmodel-operator plugin contract (``wit/plugin.wit``, world
``plugin-with-inputs``) for Python, the counterpart of the Rust SDK (``plugins/sdk``).

A plugin module subclasses :class:`Plugin` and binds the component's exports, which
componentize-py looks up by name in the app module::

    from mlmodel_plugin import Plugin, Step, export

    class Hello(Plugin):
        NAME = "hello"
        DESCRIPTION = "a ConfigMap saying hello"
        STEPS = [Step.SERVE]

        def render(self, model, ctx):
            return [{"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": ctx.names.config},
                     "data": {"model": model.metadata.name}}]

    Renderer, Inputs = export(Hello)

``python3 -m mlmodel_plugin.build <app dir> -o hello.wasm`` builds the component
(componentize-py); ``python3 -m mlmodel_plugin.testing <app.py>`` runs the shared test vectors
natively.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

from . import k8s
from .config import Config, ConfigError
from .k8s import PodSettings

# The bindings componentize-py generates for the world: there inside the component (imported
# while the component is built, so the snapshot holds them), absent in a native run.
try:
    from componentize_py_types import Err as _WitErr
    from wit_world.exports import inputs as _wit_inputs
    from wit_world.exports import renderer as _wit_renderer
except ImportError:  # a native run (tests)
    _WitErr = _wit_inputs = _wit_renderer = None  # type: ignore[assignment]

__all__ = [
    "Config",
    "ConfigError",
    "Context",
    "Metadata",
    "Model",
    "Names",
    "Plugin",
    "PluginError",
    "PodSettings",
    "SecretRef",
    "Spec",
    "Step",
    "export",
    "k8s",
    "render_json",
]

Manifest = Dict[str, Any]


class Step(str, enum.Enum):
    """A step of the model's life (WIT enum ``step``)."""

    DOWNLOAD = "download"
    SERVE = "serve"
    EXPOSE = "expose"


class PluginError(Exception):
    """A failure the plugin reports on purpose; its message ends up in the model's status."""


@dataclass
class Metadata:
    """``metadata`` of the ``MLModel``."""

    name: str
    namespace: Optional[str] = None
    uid: Optional[str] = None
    generation: Optional[int] = None
    labels: Dict[str, str] = field(default_factory=dict)
    annotations: Dict[str, str] = field(default_factory=dict)


@dataclass
class SecretRef:
    name: str


@dataclass
class Spec:
    """``spec`` of the ``MLModel``, with the host's defaults filled in."""

    model_url: str
    storage_size: str
    framework: str
    replicas: int
    expose: bool = False
    sha256: Optional[str] = None
    credentials_secret_ref: Optional[SecretRef] = None
    #: A Kubernetes ``ResourceRequirements``, passed through as is.
    resources: Optional[Dict[str, Any]] = None
    #: The whole spec as the host sent it (e.g. ``plugins``).
    raw: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    """The ``MLModel`` (metadata + spec, defaults filled in; no status)."""

    metadata: Metadata
    spec: Spec

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Model":
        m, s = doc["metadata"], doc["spec"]
        ref = s.get("credentialsSecretRef")
        return cls(
            metadata=Metadata(
                name=m["name"],
                namespace=m.get("namespace"),
                uid=m.get("uid"),
                generation=m.get("generation"),
                labels=dict(m.get("labels") or {}),
                annotations=dict(m.get("annotations") or {}),
            ),
            spec=Spec(
                model_url=s["modelURL"],
                storage_size=s["storageSize"],
                framework=s["framework"],
                replicas=s["replicas"],
                expose=bool(s.get("expose", False)),
                sha256=s.get("sha256"),
                credentials_secret_ref=SecretRef(ref["name"]) if ref else None,
                resources=s.get("resources"),
                raw=s,
            ),
        )


@dataclass
class Names:
    """Object names chosen by the host; always valid DNS labels."""

    volume: str
    job: str
    workload: str
    service: str
    config: str
    model: str


@dataclass
class Context:
    """What the host decided for this render (see ``context`` in ``wit/plugin.wit``)."""

    #: The step being rendered.
    step: Step
    namespace: str
    #: Short hash of what is downloaded; changes exactly when the files change.
    revision: str
    names: Names
    #: Labels the serving pods must carry: the Deployment and Service selector.
    selector_labels: Dict[str, str]
    #: Labels for every object and pod template (not the selector labels).
    labels: Dict[str, str]
    #: Directory of the model's files in a pod that mounts the volume at ``/models``.
    model_mount_path: str
    #: The operator's image (contains ``mlmodel-operator fetch``).
    operator_image: str
    #: This step's ``spec.plugins.config.<step>``, typed getters over it.
    config: Config

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Context":
        n = doc["names"]
        config = doc.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError("config is not an object")
        return cls(
            step=Step(doc["step"]),
            namespace=doc["namespace"],
            revision=doc["revision"],
            names=Names(
                volume=n["volume"],
                job=n["job"],
                workload=n["workload"],
                service=n["service"],
                config=n["config"],
                model=n["model"],
            ),
            selector_labels=dict(doc["selectorLabels"]),
            labels=dict(doc["labels"]),
            model_mount_path=doc["modelMountPath"],
            operator_image=doc["operatorImage"],
            config=Config(config),
        )


class Plugin:
    """What a plugin implements: who it is, and one pure function from the model to its objects.
    Subclass it, set the class attributes and override :meth:`render`."""

    #: The name models select it by (a DNS label).
    NAME: str = ""
    #: The plugin's own version (semver).
    VERSION: str = "0.1.0"
    #: One line for humans.
    DESCRIPTION: str = ""
    #: Steps this plugin renders.
    STEPS: Sequence[Step] = ()
    #: The keys of its step config (``ctx.config``) the plugin reads. The host refuses a model
    #: whose step config has another key (``InvalidPluginConfig``) without calling the plugin.
    #: ``None``: any key is passed through unchecked.
    CONFIG_KEYS: Optional[Sequence[str]] = None
    #: For a serve plugin: the model formats its server loads (``saved-model``, ``keras-hdf5``,
    #: ``onnx``, ``safetensors``, ``gguf``, ``pytorch``, ``sklearn``,
    #: ``pickle``, ``files``). Empty: any.
    MODEL_FORMATS: Sequence[str] = ()

    def render(self, model: Model, ctx: Context) -> List[Manifest]:
        """Renders ``ctx.step`` of ``model``. Raise (:class:`PluginError`, or the
        :class:`ConfigError` of a :class:`Config` getter) to fail the model with that message."""
        raise NotImplementedError


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"missing key {e}"
    return str(e) or type(e).__name__


def render_json(plugin: Plugin, model: str, context: str) -> List[str]:
    """The whole guest-side render from the two JSON documents to manifests, as the component
    runs it; also what a native run of a plugin uses (tests). Raises :class:`PluginError`."""
    try:
        m = Model.from_dict(json.loads(model))
    except Exception as e:
        raise PluginError(f"cannot read the model: {_message(e)}") from e
    try:
        c = Context.from_dict(json.loads(context))
    except Exception as e:
        raise PluginError(f"cannot read the render context: {_message(e)}") from e
    try:
        objects = plugin.render(m, c)
    except PluginError:
        raise
    except Exception as e:
        raise PluginError(_message(e)) from e
    return [json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in objects]


def export(plugin: Union[Plugin, Type[Plugin]]) -> Tuple[type, type]:
    """The component's exports for ``plugin``: bind both in the app module,
    ``Renderer, Inputs = export(MyPlugin)`` (componentize-py looks them up by these names)."""
    instance = plugin() if isinstance(plugin, type) else plugin

    class Renderer:
        """The exported ``mlmodel:plugin/renderer`` interface."""

        def info(self) -> Any:
            return _wit_renderer.PluginInfo(
                name=instance.NAME,
                version=instance.VERSION,
                steps=[_wit_renderer.Step[Step(s).name] for s in instance.STEPS],
                description=instance.DESCRIPTION,
            )

        def render(self, input: Any) -> List[str]:
            try:
                return render_json(instance, input.model, input.context)
            except PluginError as e:
                raise _WitErr(_wit_renderer.PluginError(message=str(e)))

    class Inputs:
        """The exported ``mlmodel:plugin/inputs`` interface."""

        def accepts(self) -> Any:
            keys = instance.CONFIG_KEYS
            return _wit_inputs.Accepted(
                config_keys=None if keys is None else list(keys),
                model_formats=list(instance.MODEL_FORMATS),
            )

    Renderer.plugin = instance  # type: ignore[attr-defined]
    return Renderer, Inputs
