// Small builders for the parts every plugin repeats: restricted security contexts, labels, and
// the pod settings every default plugin takes from its config. Same shapes as the Rust SDK's
// `k8s` module (plugins/sdk/src/k8s.rs), so a plugin ported from Rust renders the same objects.
import { Config, ConfigError, sortedKeys, type JsonObject } from "./config.ts";
import type { Context, Model } from "./index.ts";

/** Name of the pod volume that holds the model's PersistentVolumeClaim. */
export const MODEL_VOLUME = "model";
/** Where a download pod mounts the model volume; the files go to `<this>/<revision>`. */
export const MODEL_VOLUME_ROOT = "/models";

/**
 * Pod-level part of the `restricted` Pod Security Standard; uid/gid 1000 because several images
 * default to root.
 */
export function restrictedPodSecurityContext(): JsonObject {
  return {
    runAsNonRoot: true,
    runAsUser: 1000,
    runAsGroup: 1000,
    fsGroup: 1000,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Container-level part of the `restricted` Pod Security Standard. */
export function restrictedContainerSecurityContext(): JsonObject {
  return {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    runAsNonRoot: true,
  };
}

/** `base` with `extra` on top (extra wins on equal keys). */
export function mergeLabels(
  base: Record<string, string>,
  extra: Record<string, string>,
): Record<string, string> {
  const merged = { ...base, ...extra };
  const out: Record<string, string> = {};
  for (const k of sortedKeys(merged)) out[k] = merged[k];
  return out;
}

/** `metadata` of a top-level object: its name and the host's labels. */
export function objectMeta(name: string, ctx: Context): JsonObject {
  return { name, labels: { ...ctx.labels } };
}

/**
 * Pod settings every default plugin accepts from its config: `image`, `podLabels`,
 * `podAnnotations`, `nodeSelector`, `env` (a map of name -> value, or a list of Kubernetes
 * EnvVar objects) and `resources`.
 */
export class PodSettings {
  /** The config keys `fromConfig` reads: part of a plugin's `configKeys`. */
  static readonly KEYS = [
    "image",
    "podLabels",
    "podAnnotations",
    "nodeSelector",
    "env",
    "resources",
  ] as const;

  constructor(
    readonly image: string | undefined,
    readonly labels: Record<string, string>,
    readonly annotations: Record<string, string>,
    readonly nodeSelector: Record<string, string>,
    readonly env: JsonObject[],
    readonly resources: JsonObject | undefined,
  ) {}

  /** Reads the pod settings; throws a `ConfigError` naming a key of the wrong type. */
  static fromConfig(config: Config): PodSettings {
    // The order of the checks is the Rust SDK's, so the first error reported is the same.
    let env: JsonObject[];
    const rawEnv = config.value("env");
    if (rawEnv === undefined) {
      env = [];
    } else if (typeof rawEnv === "object" && rawEnv !== null && !Array.isArray(rawEnv)) {
      env = sortedKeys(rawEnv).map((name) => {
        const value = rawEnv[name];
        if (typeof value !== "string") {
          throw new ConfigError("plugin config key `env` must map names to strings");
        }
        return { name, value };
      });
    } else {
      env = config.objectList("env");
    }
    const rawResources = config.value("resources");
    let resources: JsonObject | undefined;
    if (rawResources === undefined) {
      resources = undefined;
    } else if (
      typeof rawResources === "object" &&
      rawResources !== null &&
      !Array.isArray(rawResources)
    ) {
      resources = rawResources;
    } else {
      throw new ConfigError("plugin config key `resources` must be an object");
    }
    return new PodSettings(
      config.str("image"),
      config.stringMap("podLabels"),
      config.stringMap("podAnnotations"),
      config.stringMap("nodeSelector"),
      env,
      resources,
    );
  }

  /** The image to run: the config's, or `fallback`. */
  imageOr(fallback: string): string {
    return this.image ?? fallback;
  }

  /**
   * Pod template metadata: the host's labels, then `podLabels`; `annotations` then
   * `podAnnotations`.
   */
  templateMeta(ctx: Context, annotations: Record<string, string>): JsonObject {
    const meta: JsonObject = { labels: mergeLabels(ctx.labels, this.labels) };
    const merged = mergeLabels(annotations, this.annotations);
    if (Object.keys(merged).length > 0) meta.annotations = merged;
    return meta;
  }

  /** Adds `nodeSelector` to a pod spec when set. */
  applyToPod(podSpec: JsonObject): void {
    if (Object.keys(this.nodeSelector).length > 0) podSpec.nodeSelector = { ...this.nodeSelector };
  }
}

/** The volume entry pointing at the model's PersistentVolumeClaim. */
export function modelVolume(ctx: Context, readOnly: boolean): JsonObject {
  return {
    name: MODEL_VOLUME,
    persistentVolumeClaim: { claimName: ctx.names.volume, readOnly },
  };
}

/**
 * A read-only mount of this revision's files (the `<revision>` directory of the volume) at
 * `mountPath`.
 */
export function modelFilesMount(ctx: Context, mountPath: string): JsonObject {
  return { name: MODEL_VOLUME, mountPath, subPath: ctx.revision, readOnly: true };
}

/**
 * A Deployment of one `container` with the model volume: selector = the host's selector labels;
 * pod labels = selector + host labels + `podLabels`; the `mlmodel.dev/revision` pod annotation
 * so that a new revision rolls the pods.
 */
export function serveDeployment(
  model: Model,
  ctx: Context,
  pod: PodSettings,
  container: JsonObject,
): JsonObject {
  const podSpec: JsonObject = {
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: restrictedPodSecurityContext(),
    containers: [container],
    volumes: [modelVolume(ctx, true)],
  };
  pod.applyToPod(podSpec);
  const templateMeta = pod.templateMeta(ctx, { "mlmodel.dev/revision": ctx.revision });
  templateMeta.labels = mergeLabels(mergeLabels(ctx.selectorLabels, ctx.labels), pod.labels);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: objectMeta(ctx.names.workload, ctx),
    spec: {
      replicas: model.spec.replicas,
      selector: { matchLabels: { ...ctx.selectorLabels } },
      // Never below the wanted count during a revision change.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: { metadata: templateMeta, spec: podSpec },
    },
  };
}

/**
 * The disruption budget of a model of two replicas or more: one serving pod at a time may be
 * evicted, and a pod that is not ready may always be. `undefined` for one replica.
 */
export function disruptionBudget(model: Model, ctx: Context): JsonObject | undefined {
  if (model.spec.replicas < 2) return undefined;
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: objectMeta(ctx.names.workload, ctx),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: { ...ctx.selectorLabels } },
      unhealthyPodEvictionPolicy: "AlwaysAllow",
    },
  };
}

/**
 * Annotation on a serve plugin's workload: the protocol clients speak to the server (`v2`, the
 * Open Inference Protocol; `tfserving-rest`; `http`). The host shows it in `status.inference`
 * with the URL a client posts to.
 */
export const INFERENCE_PROTOCOL = "mlmodel.dev/inference-protocol";
/** Annotation on a serve plugin's workload: the name the server knows the model by. */
export const INFERENCE_MODEL = "mlmodel.dev/inference-model";

/** Tells the host how clients call the served model: sets both annotations on `workload`. */
export function setInference(workload: JsonObject, protocol: string, model: string): void {
  const metadata = (workload.metadata ??= {}) as JsonObject;
  const annotations = (metadata.annotations ??= {}) as JsonObject;
  annotations[INFERENCE_PROTOCOL] = protocol;
  annotations[INFERENCE_MODEL] = model;
}
