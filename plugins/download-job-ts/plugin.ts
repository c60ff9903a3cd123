// `download-job-ts`: the Rust `download-job` plugin (plugins/download-job) written with the
// TypeScript SDK, and the template `mlmodel-operator plugins new --lang ts --step download`
// starts from. The model's PersistentVolumeClaim and a Job running `mlmodel-operator fetch`
// into it.
//
// Volume layout: the Job mounts the claim at `/models` and fetches into `ctx.modelMountPath`
// (`/models/<revision>`), so the files sit under `<revision>/` on the volume and the fetcher can
// rename into place atomically (a mount point cannot be renamed).
//
// Config (`spec.plugins.config.download`): `image` (default: the operator's image),
// `storageClassName`, `backoffLimit` (3), `activeDeadlineSeconds` (3600), `extraArgs` (appended
// to the fetch argv), and the pod settings of `PodSettings`.
import { type JsonObject, type Plugin, PodSettings, exportPlugin, k8s } from "mlmodel-plugin-sdk";

const downloadJob: Plugin = {
  name: "download-job-ts",
  version: "0.1.0",
  description: "PersistentVolumeClaim + Job running `mlmodel-operator fetch` into it",
  steps: ["download"],
  configKeys: [
    ...PodSettings.KEYS,
    "storageClassName",
    "extraArgs",
    "backoffLimit",
    "activeDeadlineSeconds",
  ],

  render(model, ctx) {
    const config = ctx.config;
    const pod = PodSettings.fromConfig(config);

    const claimSpec: JsonObject = {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: model.spec.storageSize } },
    };
    const storageClass = config.str("storageClassName");
    if (storageClass !== undefined) claimSpec.storageClassName = storageClass;
    const claim: JsonObject = {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: k8s.objectMeta(ctx.names.volume, ctx),
      spec: claimSpec,
    };

    // argv, never a shell line: the URL is user input.
    const command = [
      "mlmodel-operator",
      "fetch",
      "--url",
      model.spec.modelURL,
      "--dest",
      ctx.modelMountPath,
    ];
    if (model.spec.sha256 !== undefined) command.push("--sha256", model.spec.sha256.toLowerCase());
    command.push(...config.stringList("extraArgs"));

    const container: JsonObject = {
      name: "fetch",
      image: pod.imageOr(ctx.operatorImage),
      command,
      volumeMounts: [{ name: k8s.MODEL_VOLUME, mountPath: k8s.MODEL_VOLUME_ROOT }],
      resources: pod.resources ?? {
        requests: { cpu: "100m", memory: "128Mi" },
        limits: { memory: "512Mi" },
      },
      securityContext: k8s.restrictedContainerSecurityContext(),
      // The fetcher writes a one-line JSON result here; the operator reads it from the Job's pod
      // to explain a failure.
      terminationMessagePath: "/dev/termination-log",
      terminationMessagePolicy: "FallbackToLogsOnError",
    };
    if (pod.env.length > 0) container.env = pod.env;
    const secret = model.spec.credentialsSecretRef;
    if (secret !== undefined) container.envFrom = [{ secretRef: { name: secret.name } }];

    const podSpec: JsonObject = {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: k8s.restrictedPodSecurityContext(),
      containers: [container],
      volumes: [k8s.modelVolume(ctx, false)],
    };
    pod.applyToPod(podSpec);

    // No ttlSecondsAfterFinished: the operator reads the finished Job to know the revision is on
    // disk, and the owner reference removes it with the model.
    const job: JsonObject = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: k8s.objectMeta(ctx.names.job, ctx),
      spec: {
        backoffLimit: config.int("backoffLimit", 3),
        activeDeadlineSeconds: config.int("activeDeadlineSeconds", 3600),
        // `fetch` exits 2 when another attempt would fail the same way (a full volume, a
        // refused URL or archive): the Job fails at once instead of retrying.
        podFailurePolicy: {
          rules: [
            {
              action: "FailJob",
              onExitCodes: { containerName: "fetch", operator: "In", values: [2] },
            },
          ],
        },
        template: { metadata: pod.templateMeta(ctx, {}), spec: podSpec },
      },
    };
    return [claim, job];
  },
};

export const { renderer, inputs } = exportPlugin(downloadJob);
