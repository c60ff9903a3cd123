// `echo-server-ts`: the Rust `echo-server` plugin (plugins/echo-server) written with the
// TypeScript SDK, and the template of a TypeScript plugin. A small HTTP server that answers with
// a fixed text, mounting the model read-only like a real server would.
//
// Config (`spec.plugins.config.serve`): `image`, `text`, and the pod settings of `PodSettings`.
// The model's `spec.resources` wins over config `resources`.
//
// Build: node ../sdk-ts/build.mjs build plugin.ts -o echo_server_ts.wasm
import { type JsonObject, type Plugin, PodSettings, exportPlugin, k8s } from "mlmodel-plugin-sdk";

/** Pinned; a static binary of a few MB that runs as any user. */
export const DEFAULT_IMAGE = "hashicorp/http-echo:1.0";
export const HTTP_PORT = 8080;

const echoServer: Plugin = {
  name: "echo-server-ts",
  version: "0.1.0",
  description: "Deployment of a small HTTP echo server (port 8080) mounting the model read-only",
  steps: ["serve"],
  configKeys: [...PodSettings.KEYS, "text"],

  render(model, ctx) {
    const pod = PodSettings.fromConfig(ctx.config);
    const text =
      ctx.config.str("text") ?? `model ${model.metadata.name} revision ${ctx.revision}`;
    const container: JsonObject = {
      name: "server",
      image: pod.imageOr(DEFAULT_IMAGE),
      args: [`-listen=:${HTTP_PORT}`, `-text=${text}`],
      ports: [{ name: "http", containerPort: HTTP_PORT, protocol: "TCP" }],
      readinessProbe: {
        httpGet: { path: "/", port: "http" },
        periodSeconds: 5,
        failureThreshold: 3,
      },
      livenessProbe: {
        tcpSocket: { port: "http" },
        initialDelaySeconds: 10,
        periodSeconds: 10,
      },
      volumeMounts: [k8s.modelFilesMount(ctx, `/models/${ctx.names.model}`)],
      securityContext: k8s.restrictedContainerSecurityContext(),
    };
    const resources = model.spec.resources ?? pod.resources;
    if (resources !== undefined) container.resources = resources;
    if (pod.env.length > 0) container.env = pod.env;
    const budget = k8s.disruptionBudget(model, ctx);
    return [k8s.serveDeployment(model, ctx, pod, container), ...(budget ? [budget] : [])];
  },
};

export const { renderer, inputs } = exportPlugin(echoServer);
