// The guest side of the mlmodel-operator plugin contract (`wit/plugin.wit`, world
// `plugin-with-inputs`) for TypeScript and JavaScript, the counterpart of the Rust SDK
// (`plugins/sdk`).
//
// A plugin module describes itself with a `Plugin` object and exports what `exportPlugin` returns:
//
//     import { type Plugin, exportPlugin } from "mlmodel-plugin-sdk";
//     const hello: Plugin = {
//       name: "hello", version: "0.1.0", steps: ["serve"],
//       description: "a ConfigMap saying hello",
//       render: (model, ctx) => [{ apiVersion: "v1", kind: "ConfigMap",
//         metadata: { name: ctx.names.config }, data: { model: model.metadata.name } }],
//     };
//     export const { renderer, inputs } = exportPlugin(hello);
//
// `node build.mjs build <plugin.ts> -o plugin.wasm` bundles it with this SDK and builds the
// component with componentize-js.
export * as k8s from "./k8s.ts";
export { PodSettings } from "./k8s.ts";
export { Config, ConfigError } from "./config.ts";

import { Config, type Json, type JsonObject } from "./config.ts";
export type { Json, JsonObject } from "./config.ts";

/** A step of the model's life (WIT enum `step`). */
export type Step = "download" | "serve" | "expose";

/** `metadata` of the `MLModel`. */
export interface Metadata {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** `spec` of the `MLModel`, with the host's defaults filled in. */
export interface Spec {
  modelURL: string;
  storageSize: string;
  framework: string;
  replicas: number;
  expose: boolean;
  sha256?: string;
  credentialsSecretRef?: { name: string };
  /** A Kubernetes `ResourceRequirements`, passed through as is. */
  resources?: JsonObject;
  /** The whole spec as the host sent it (e.g. `plugins`). */
  [key: string]: Json | undefined;
}

/** The `MLModel` (metadata + spec, defaults filled in; no status). */
export interface Model {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  spec: Spec;
}

/** Object names chosen by the host; always valid DNS labels. */
export interface Names {
  volume: string;
  job: string;
  workload: string;
  service: string;
  config: string;
  model: string;
}

/** What the host decided for this render (see `context` in `wit/plugin.wit`). */
export interface Context {
  /** The step being rendered. */
  step: Step;
  namespace: string;
  /** Short hash of what is downloaded; changes exactly when the files change. */
  revision: string;
  names: Names;
  /** Labels the serving pods must carry: the Deployment and Service selector. */
  selectorLabels: Record<string, string>;
  /** Labels for every object and pod template (not the selector labels). */
  labels: Record<string, string>;
  /** Directory of the model's files in a pod that mounts the volume at `/models`. */
  modelMountPath: string;
  /** The operator's image (contains `mlmodel-operator fetch`). */
  operatorImage: string;
  /** This step's `spec.plugins.config.<step>`, typed getters over it. */
  config: Config;
}

/** A Kubernetes object as plain JSON (`apiVersion`, `kind`, `metadata.name` at least). */
export type Manifest = JsonObject;

/** What a plugin implements: who it is, and one pure function from the model to its objects. */
export interface Plugin {
  /** The name models select it by (a DNS label). */
  name: string;
  /** The plugin's own version (semver). */
  version: string;
  /** One line for humans. */
  description: string;
  /** Steps this plugin renders. */
  steps: Step[];
  /**
   * The keys of its step config (`ctx.config`) the plugin reads. The host refuses a model whose
   * step config has another key (`InvalidPluginConfig`) without calling the plugin. Unset: any
   * key is passed through unchecked.
   */
  configKeys?: readonly string[];
  /**
   * For a serve plugin: the model formats its server loads (`saved-model`, `keras-hdf5`, `onnx`,
   * `safetensors`, `gguf`, `pytorch`, `sklearn`, `pickle`, `files`). Empty or unset: any.
   */
  modelFormats?: readonly string[];
  /**
   * Renders `ctx.step` of `model`. Throw (an `Error`, e.g. the `ConfigError` of a `Config`
   * getter) to fail the model with that message.
   */
  render(model: Model, ctx: Context): Manifest[];
}

// The WIT exports, as componentize-js expects them (kebab-case fields become camelCase).
/** WIT `plugin-info`. */
export interface PluginInfo {
  name: string;
  version: string;
  steps: Step[];
  description: string;
}
/** WIT `render-input`: two JSON documents. */
export interface RenderInput {
  model: string;
  context: string;
}
/** WIT `accepted` of the `inputs` interface. */
export interface Accepted {
  configKeys: string[] | undefined;
  modelFormats: string[];
}
/** The exported `mlmodel:plugin/renderer` interface. */
export interface RendererExport {
  info(): PluginInfo;
  /** Throws a WIT `plugin-error` (`{ message }`) on failure. */
  render(input: RenderInput): string[];
}
/** The exported `mlmodel:plugin/inputs` interface. */
export interface InputsExport {
  accepts(): Accepted;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads the `model` document; throws an `Error` saying what is wrong. */
export function parseModel(json: string): Model {
  const m = JSON.parse(json) as unknown;
  if (!isObject(m) || !isObject(m.metadata) || !isObject(m.spec)) {
    throw new Error("metadata or spec missing");
  }
  const metadata = m.metadata as unknown as Metadata;
  if (typeof metadata.name !== "string") throw new Error("metadata.name missing");
  metadata.labels ??= {};
  metadata.annotations ??= {};
  const spec = m.spec as unknown as Spec;
  spec.expose ??= false;
  if (spec.resources === null) delete spec.resources;
  return m as unknown as Model;
}

/** Reads the `context` document; throws an `Error` saying what is wrong. */
export function parseContext(json: string): Context {
  const c = JSON.parse(json) as unknown;
  if (!isObject(c) || !isObject(c.names)) {
    throw new Error("names missing");
  }
  const config = c.config ?? {};
  if (!isObject(config)) throw new Error("config is not an object");
  return { ...(c as unknown as Context), config: new Config(config) };
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (isObject(e) && typeof e.message === "string") return e.message;
  return String(e);
}

/**
 * The whole guest-side render from the two JSON documents to manifests, as the component runs
 * it; also what a native run of a plugin uses (tests). Throws an `Error` with the message.
 */
export function renderJson(plugin: Plugin, model: string, context: string): string[] {
  let m: Model, c: Context;
  try {
    m = parseModel(model);
  } catch (e) {
    throw new Error(`cannot read the model: ${messageOf(e)}`);
  }
  try {
    c = parseContext(context);
  } catch (e) {
    throw new Error(`cannot read the render context: ${messageOf(e)}`);
  }
  return plugin.render(m, c).map((o) => JSON.stringify(o));
}

/**
 * The component's exports for `plugin`: export both from the plugin's module,
 * `export const { renderer, inputs } = exportPlugin(plugin);`.
 */
export function exportPlugin(plugin: Plugin): { renderer: RendererExport; inputs: InputsExport } {
  return {
    renderer: {
      info: () => ({
        name: plugin.name,
        version: plugin.version,
        steps: [...plugin.steps],
        description: plugin.description,
      }),
      render(input: RenderInput): string[] {
        try {
          return renderJson(plugin, input.model, input.context);
        } catch (e) {
          // componentize-js turns a thrown value into the `err` of the result.
          throw { message: messageOf(e) };
        }
      },
    },
    inputs: {
      accepts: () => ({
        configKeys: plugin.configKeys ? [...plugin.configKeys] : undefined,
        modelFormats: [...(plugin.modelFormats ?? [])],
      }),
    },
  };
}
