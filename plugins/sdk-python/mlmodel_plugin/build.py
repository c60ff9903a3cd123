"""Builds a plugin's WebAssembly component with componentize-py.

    python3 -m mlmodel_plugin.build APP_DIR -o plugin.wasm [--module app] [--wit DIR]

``APP_DIR`` holds the app module (default ``app``, i.e. ``APP_DIR/app.py``) that binds
``Renderer, Inputs = export(MyPlugin)``; the component gets that directory and this SDK, nothing
else (no site-packages). componentize-py is looked for beside the running Python (a venv's
``bin/``), then on ``PATH``. ``--wit`` defaults to the repository's ``wit/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORLD = "plugin-with-inputs"
SDK_DIR = Path(__file__).resolve().parent.parent


def componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        sys.exit("build: componentize-py not found: pip install -r plugins/sdk-python/requirements.txt")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mlmodel_plugin.build", description=__doc__.split("\n")[0])
    p.add_argument("app_dir", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("-m", "--module", default="app")
    p.add_argument("--wit", type=Path, default=SDK_DIR.parent.parent / "wit")
    args = p.parse_args(argv)
    app_dir = args.app_dir.resolve()
    if not (app_dir / f"{args.module}.py").is_file():
        sys.exit(f"build: no {args.module}.py in {app_dir}")
    cmd = [
        componentize_py(),
        "--quiet",
        "-d", str(args.wit.resolve()),
        "-w", WORLD,
        "componentize", args.module,
        "-p", str(app_dir),
        "-p", str(SDK_DIR),
        "-o", str(args.out.resolve()),
    ]
    # Without VIRTUAL_ENV componentize-py adds no venv's site-packages: the component holds the
    # app and the SDK only (the standard library comes with componentize-py).
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    # No __pycache__ left in the source folders (they would be bundled and change the inputs).
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        return done.returncode
    size = args.out.stat().st_size
    print(f"built {args.out} ({size} bytes, {time.monotonic() - t0:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
