"""Runs a plugin natively (CPython, no wasm) on every shared test vector and prints a diff of
each mismatch: the author's inner loop before building the component.

    python3 -m mlmodel_plugin.testing APP.py [--vectors DIR]

A vector is a folder with ``input.json`` (``{"model": {...}, "context": {...}}``, the two
documents the host hands a plugin) and ``expected.json`` (the manifests the Rust reference plugin
returns, or ``{"error": message}``); see plugins/test-vectors/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from . import Plugin, PluginError, render_json

VECTORS = Path(__file__).resolve().parent.parent.parent / "test-vectors"


def load_plugin(app: Path) -> Plugin:
    spec = importlib.util.spec_from_file_location(app.stem, app)
    if spec is None or spec.loader is None:
        sys.exit(f"testing: cannot load {app}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[app.stem] = module
    spec.loader.exec_module(module)
    renderer = getattr(module, "Renderer", None)
    plugin = getattr(renderer, "plugin", None)
    if plugin is None:
        sys.exit(f"testing: {app} binds no `Renderer, Inputs = export(...)`")
    return plugin


def outcome(plugin: Plugin, vector: dict[str, Any]) -> Any:
    try:
        manifests = render_json(plugin, json.dumps(vector["model"]), json.dumps(vector["context"]))
    except PluginError as e:
        return {"error": str(e)}
    return [json.loads(m) for m in manifests]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mlmodel_plugin.testing")
    p.add_argument("app", type=Path)
    p.add_argument("--vectors", type=Path, default=VECTORS)
    args = p.parse_args(argv)
    plugin = load_plugin(args.app.resolve())
    passed, failed = 0, []
    for d in sorted(x for x in args.vectors.iterdir() if x.is_dir()):
        vector = json.loads((d / "input.json").read_text())
        expected = json.loads((d / "expected.json").read_text())
        got = outcome(plugin, vector)
        if got == expected:
            passed += 1
        else:
            failed.append(d.name)
            print(
                f"FAIL {d.name}\n--- expected\n{json.dumps(expected, indent=2, sort_keys=True)}\n"
                f"+++ got\n{json.dumps(got, indent=2, sort_keys=True)}",
                file=sys.stderr,
            )
    print(f"vectors: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
