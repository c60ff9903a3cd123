#!/usr/bin/env python3
"""Resolves hack/runtime/mlserver-requirements.in (with mlserver-constraints.txt) into the lock
hack/runtime/mlserver-requirements.txt: every package of the closure pinned `==`, with the sha256
of the one wheel pip picks for the image (CPython 3.11, manylinux x86_64 up to glibc 2.36, the
glibc of Debian 12), so hack/runtime-image.sh and hack/runtime/sklearn-venv.sh install exactly
these files (`pip install --require-hashes`).

    hack/runtime/relock.py            # rewrites the lock; commit it if it changed

Run by hand when a version should move (it asks PyPI); builds only read the lock. Python
standard library plus the pip of the Python that runs it.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IN = os.path.join(HERE, "mlserver-requirements.in")
CONSTRAINTS = os.path.join(HERE, "mlserver-constraints.txt")
LOCK = os.path.join(HERE, "mlserver-requirements.txt")


def platform_args() -> list[str]:
    """The wheel tags Debian 12's python3 accepts, most specific first (as pip orders them on such
    a host, so the host's venv and the image pick the same wheel)."""
    args = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    for minor in range(36, 16, -1):
        args += ["--platform", f"manylinux_2_{minor}_x86_64"]
    args += ["--platform", "manylinux2014_x86_64"]  # pip adds manylinux2010 and manylinux1
    return args


def main():
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--no-cache-dir", "--report", report, "--target", os.path.join(tmp, "t"),
             *platform_args(), "-r", IN, "-c", CONSTRAINTS],
            check=True, env=env)
        install = json.load(open(report))["install"]
    lines = []
    for item in install:
        meta, info = item["metadata"], item["download_info"]
        name = meta["name"].lower().replace("_", "-").replace(".", "-")
        wheel = info["url"].rsplit("/", 1)[1]
        digest = info["archive_info"]["hashes"]["sha256"]
        lines.append(f"{name}=={meta['version']} \\\n    --hash=sha256:{digest}\n    # {wheel}\n")
    head = (
        "# The lock of the MLServer image (hack/runtime-image.sh) and of the training venv\n"
        "# (hack/runtime/sklearn-venv.sh). Written by hack/runtime/relock.py from\n"
        "# mlserver-requirements.in and mlserver-constraints.txt; do not edit by hand.\n"
        "# CPython 3.11, manylinux x86_64 wheels only (glibc <= 2.36, Debian 12).\n"
    )
    with open(LOCK, "w") as f:
        f.write(head + "".join(sorted(lines)))
    print(f"{LOCK}: {len(lines)} packages", file=sys.stderr)


if __name__ == "__main__":
    main()
