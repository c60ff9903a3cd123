"""``service-py``: the Rust ``service`` plugin (plugins/service) written with the Python SDK, and
the template ``mlmodel-operator plugins new --lang python --step expose`` starts from. A
ClusterIP Service selecting the model's serving pods by the host's selector labels.

The Service cannot know which serve plugin runs, so it targets container ports by name: the
default serve plugins name their HTTP port ``http`` and their gRPC port ``grpc``.

Config (``spec.plugins.config.expose``): ``ports`` (a list of Kubernetes ServicePorts, replacing
the default ``http`` port 80 -> ``http``), ``grpc`` (true adds port 8500 -> ``grpc``),
``annotations`` (on the Service).
"""

from mlmodel_plugin import Context, Model, Plugin, Step, export, k8s


class Service(Plugin):
    NAME = "service-py"
    VERSION = "0.1.0"
    DESCRIPTION = "ClusterIP Service on the model's serving pods"
    STEPS = [Step.EXPOSE]
    CONFIG_KEYS = ["ports", "grpc", "annotations"]

    def render(self, model: Model, ctx: Context) -> list:
        config = ctx.config
        ports = config.object_list("ports")
        if not ports:
            ports.append({"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"})
        if config.bool("grpc", False):
            ports.append({"name": "grpc", "port": 8500, "targetPort": "grpc", "protocol": "TCP"})
        metadata = k8s.object_meta(ctx.names.service, ctx)
        annotations = config.string_map("annotations")
        if annotations:
            metadata["annotations"] = annotations
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata,
                "spec": {"type": "ClusterIP", "selector": dict(ctx.selector_labels), "ports": ports},
            }
        ]


Renderer, Inputs = export(Service)
