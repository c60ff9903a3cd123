#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz targets (fuzz/seeds/<target>/).

policy:  every case of host/tests/hostile/plugin-outputs.json and every golden render
         (host/tests/golden/*/*.yaml), in the policy target's format (a flag byte, then the
         manifests as JSON separated by "\\n---\\n").
extract: small tar, tar.gz and zip archives, benign and hostile (a format byte, then the bytes).
names:   model names, benign and awkward ("A \\0 B \\0 revisions").

Run it again after changing either corpus: python3 fuzz/seeds/generate.py (needs PyYAML).
"""
import gzip
import hashlib
import io
import json
import pathlib
import stat
import tarfile
import zipfile

import warnings

import yaml

warnings.filterwarnings("ignore", "Duplicate name")

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEPARATOR = "\n---\n"
STEPS = {"download": 0, "serve": 1, "expose": 2}


def write(target, name, data):
    out = HERE / target
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)


def policy():
    cases = json.loads((REPO / "host/tests/hostile/plugin-outputs.json").read_text())
    for i, case in enumerate(cases):
        text = SEPARATOR.join(json.dumps(o, separators=(",", ":")) for o in case["objects"])
        write("policy", f"hostile-{i:02}", bytes([STEPS[case["step"]]]) + text.encode())
    plugin_step = {
        "download-job": "download",
        "echo-server": "serve",
        "file-server": "serve",
        "tensorflow-serving": "serve",
        "service": "expose",
    }
    for path in sorted((REPO / "host/tests/golden").glob("*/*.yaml")):
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        text = SEPARATOR.join(json.dumps(o, separators=(",", ":")) for o in objects)
        step = STEPS[plugin_step[path.stem]]
        write("policy", f"golden-{path.parent.name}-{path.stem}", bytes([step]) + text.encode())


def tar_bytes(entries, compress=False):
    """entries: (name, type, data-or-link-target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.mode = 0o755 if kind == "dir" else 0o777
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    data = buf.getvalue().rstrip(b"\0")
    # Whole 512-byte blocks, then the two end blocks.
    data += b"\0" * (-len(data) % 512) + b"\0" * 1024
    if compress:
        data = gzip.compress(data, mtime=0)
    return data


def zip_bytes(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, kind, payload in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            if kind == "dir":
                info.filename = name.rstrip("/") + "/"
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                z.writestr(info, b"")
            elif kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.create_system = 3
                z.writestr(info, payload.encode())
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3
                z.writestr(info, payload)
    return buf.getvalue()


ARCHIVES = {
    "saved-model": [("1/", "dir", None), ("1/saved_model.pb", "file", b"pb"),
                    ("1/variables/variables.index", "file", b"idx")],
    "dot-prefix": [("./", "dir", None), ("./model.onnx", "file", b"onnx")],
    "link-inside": [("d/", "dir", None), ("d/f", "file", b"x"), ("l", "symlink", "d/f"),
                    ("h", "hardlink", "d/f")],
    "link-chain": [("d/", "dir", None), ("d/b", "symlink", ".."), ("a", "symlink", "d/b/..")],
    "dotdot": [("../evil", "file", b"x")],
    "absolute": [("/tmp/evil", "file", b"x")],
    "link-out": [("l", "symlink", "../outside/canary")],
    "write-through-link": [("l", "symlink", "d"), ("d/", "dir", None), ("l/f", "file", b"x")],
    "duplicate": [("f", "file", b"1"), ("f", "file", b"2"), ("f", "symlink", "g")],
    "reserved": [(".mlmodel-complete.json", "file", b"{}")],
    "fifo": [("p", "fifo", None)],
}


def extract():
    for name, entries in ARCHIVES.items():
        zippable = [e for e in entries if e[1] in ("file", "dir", "symlink")]
        write("extract", f"tar-{name}", b"\0" + tar_bytes(entries))
        write("extract", f"tgz-{name}", b"\1" + tar_bytes(entries, compress=True))
        write("extract", f"zip-{name}", b"\2" + zip_bytes(zippable))
    write("extract", "auto-tar", b"\3" + tar_bytes(ARCHIVES["saved-model"]))


def names():
    h = hashlib.sha256(b"a.b").hexdigest()[:8]
    pairs = [
        ("resnet", "resnet-v2", "0123456789abcdefghij"),
        ("a.b", "a-b", "01234567890123456789"),
        ("a" * 253, "a" * 252 + "b", "aaaaaaaaaabbbbbbbbbb"),
        ("9lives", "UPPER_case", ""),
        ("x" * 62 + "-", "a-" + "b" * 61, "\x01" * 20),
        (f"{'b' * 120}.{'c' * 120}", f"a-b-{h}", "ffffffffff"),
    ]
    for i, (a, b, r) in enumerate(pairs):
        write("names", f"pair-{i}", f"{a}\0{b}\0{r}".encode())
    # The known collision (hack/README.md, "Fuzzing"): "a.b" is cut and hashed into the name the
    # valid model "a-b-<hash>" keeps; and a long name's label value is a valid model name.
    write("names", "known-collision", f"a.b\0a-b-{h}\0".encode())
    long = "m" * 70
    label = f"{'m' * 54}-{hashlib.sha256(long.encode()).hexdigest()[:8]}"
    write("names", "known-collision-label", f"{long}\0{label}\0".encode())


policy()
extract()
names()
