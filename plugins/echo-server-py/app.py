"""``echo-server-py``: the Rust ``echo-server`` plugin (plugins/echo-server) written with the
Python SDK, and the template of a Python plugin. A small HTTP server that answers with a fixed
text, mounting the model read-only like a real server would.

Config (``spec.plugins.config.serve``): ``image``, ``text``, and the pod settings of
:class:`PodSettings`. The model's ``spec.resources`` wins over config ``resources``.

Build: python3 -m mlmodel_plugin.build . -o echo_server_py.wasm (with plugins/sdk-python on
PYTHONPATH and componentize-py installed)
"""

from mlmodel_plugin import Context, Model, Plugin, PodSettings, Step, export, k8s

#: Pinned; a static binary of a few MB that runs as any user.
DEFAULT_IMAGE = "hashicorp/http-echo:1.0"
HTTP_PORT = 8080


class EchoServer(Plugin):
    NAME = "echo-server-py"
    VERSION = "0.1.0"
    DESCRIPTION = "Deployment of a small HTTP echo server (port 8080) mounting the model read-only"
    STEPS = [Step.SERVE]
    CONFIG_KEYS = [*PodSettings.KEYS, "text"]

    def render(self, model: Model, ctx: Context) -> list:
        pod = PodSettings.from_config(ctx.config)
        text = ctx.config.str("text")
        if text is None:
            text = f"model {model.metadata.name} revision {ctx.revision}"
        container = {
            "name": "server",
            "image": pod.image_or(DEFAULT_IMAGE),
            "args": [f"-listen=:{HTTP_PORT}", f"-text={text}"],
            "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": "/", "port": "http"},
                "periodSeconds": 5,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "tcpSocket": {"port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
            },
            "volumeMounts": [k8s.model_files_mount(ctx, f"/models/{ctx.names.model}")],
            "securityContext": k8s.restricted_container_security_context(),
        }
        resources = model.spec.resources if model.spec.resources is not None else pod.resources
        if resources is not None:
            container["resources"] = resources
        if pod.env:
            container["env"] = pod.env
        budget = k8s.disruption_budget(model, ctx)
        return [k8s.serve_deployment(model, ctx, pod, container)] + ([budget] if budget else [])


Renderer, Inputs = export(EchoServer)
