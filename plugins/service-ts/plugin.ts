// `service-ts`: the Rust `service` plugin (plugins/service) written with the TypeScript SDK, and
// the template `mlmodel-operator plugins new --lang ts --step expose` starts from. A ClusterIP
// Service selecting the model's serving pods by the host's selector labels.
//
// The Service cannot know which serve plugin runs, so it targets container ports by name: the
// default serve plugins name their HTTP port `http` and their gRPC port `grpc`.
//
// Config (`spec.plugins.config.expose`): `ports` (a list of Kubernetes ServicePorts, replacing
// the default `http` port 80 -> `http`), `grpc` (true adds port 8500 -> `grpc`), `annotations`
// (on the Service).
import { type Plugin, exportPlugin, k8s } from "mlmodel-plugin-sdk";

const service: Plugin = {
  name: "service-ts",
  version: "0.1.0",
  description: "ClusterIP Service on the model's serving pods",
  steps: ["expose"],
  configKeys: ["ports", "grpc", "annotations"],

  render(_model, ctx) {
    const config = ctx.config;
    const ports = config.objectList("ports");
    if (ports.length === 0) {
      ports.push({ name: "http", port: 80, targetPort: "http", protocol: "TCP" });
    }
    if (config.bool("grpc", false)) {
      ports.push({ name: "grpc", port: 8500, targetPort: "grpc", protocol: "TCP" });
    }
    const metadata = k8s.objectMeta(ctx.names.service, ctx);
    const annotations = config.stringMap("annotations");
    if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
    return [
      {
        apiVersion: "v1",
        kind: "Service",
        metadata,
        spec: { type: "ClusterIP", selector: { ...ctx.selectorLabels }, ports },
      },
    ];
  },
};

export const { renderer, inputs } = exportPlugin(service);
