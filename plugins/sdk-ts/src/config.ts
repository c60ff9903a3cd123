// Typed access to a step's plugin config, with errors that name the offending key: the same
// getters, rules and messages as the Rust SDK's `Config` (plugins/sdk/src/config.rs).

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
/** A JSON object. */
export type JsonObject = { [key: string]: Json };

/** A config value of the wrong type; its message names the key and what it must be. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Compares by Unicode code point, as Rust orders strings (a `BTreeMap`'s keys): JavaScript's
 * default sort compares UTF-16 code units, which differs past U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** The keys of `o` in the order a Rust `BTreeMap` iterates them. */
export function sortedKeys(o: object): string[] {
  return Object.keys(o).sort(compareCodePoints);
}

/** `spec.plugins.config.<step>` of the model: a JSON object (`{}` when unset). */
export class Config {
  constructor(readonly raw: JsonObject = {}) {}

  /** The value of `key`; `undefined` when unset or `null`. */
  private get(key: string): Json | undefined {
    const v = Object.prototype.hasOwnProperty.call(this.raw, key) ? this.raw[key] : undefined;
    return v === null ? undefined : v;
  }

  private static wrong(key: string, want: string): ConfigError {
    return new ConfigError(`plugin config key \`${key}\` must be ${want}`);
  }

  /** A non-empty string, or `undefined` when unset. */
  str(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (typeof v === "string" && v !== "") return v;
    throw Config.wrong(key, "a non-empty string");
  }

  /**
   * An integer, or `fallback` when unset. (JSON `3.0` reads as 3 here; the Rust SDK refuses it.)
   */
  int(key: string, fallback: number): number {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v === "number" && Number.isSafeInteger(v)) return v;
    throw Config.wrong(key, "an integer");
  }

  /** A boolean, or `fallback` when unset. */
  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v === "boolean") return v;
    throw Config.wrong(key, "true or false");
  }

  /** A map of strings (labels, annotations, node selector), empty when unset. */
  stringMap(key: string): Record<string, string> {
    const v = this.get(key);
    if (v === undefined) return {};
    if (isObject(v)) {
      const out: Record<string, string> = {};
      for (const k of sortedKeys(v)) {
        const s = v[k];
        if (typeof s !== "string") throw Config.wrong(key, "a map of strings");
        out[k] = s;
      }
      return out;
    }
    throw Config.wrong(key, "a map of strings");
  }

  /** A list of strings, empty when unset. */
  stringList(key: string): string[] {
    const v = this.get(key);
    if (v === undefined) return [];
    if (Array.isArray(v) && v.every((s) => typeof s === "string")) return [...(v as string[])];
    throw Config.wrong(key, "a list of strings");
  }

  /** A list of objects (container ports, env entries), passed through, empty when unset. */
  objectList(key: string): JsonObject[] {
    const v = this.get(key);
    if (v === undefined) return [];
    if (Array.isArray(v) && v.every(isObject)) return [...(v as JsonObject[])];
    throw Config.wrong(key, "a list of objects");
  }

  /** Any JSON value, as given; `undefined` when unset or `null`. */
  value(key: string): Json | undefined {
    return this.get(key);
  }
}
