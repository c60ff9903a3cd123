#!/usr/bin/env python3
"""Builds a single-layer OCI image from files on this machine, with no container engine, and
pushes it to a registry (the local cluster's, on loopback) or writes it as an OCI layout tarball.

    hack/image.py --tag localhost:23500/pause:3.10 --add /tmp/pause:/pause --entrypoint /pause \
        --user 65535:65535 --push

--add SRC:DEST copies a file (mode kept, owner root); --dir DEST[:MODE] makes an empty directory;
--link DEST:TARGET a symlink; --libs-of DEST copies the shared libraries the ELF file at DEST
(already added) needs, at their own paths, as `ldd` lists them. The layer is reproducible (sorted
entries, mtime 0, uid/gid 0), so the same inputs give the same digest and a second push uploads
nothing. Python standard library only.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def shared_libraries(path: str) -> list[str]:
    """The absolute paths ldd resolves for PATH (the loader included); none for a static file."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:  # "not a dynamic executable"
        return []
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def build_layer(entries: dict) -> bytes:
    """entries: DEST -> ("file", SRC) | ("dir", MODE) | ("link", TARGET); parents made as 0755."""
    all_entries = dict(entries)
    for dest in list(entries):
        parent = os.path.dirname(dest.rstrip("/"))
        while parent not in ("", "/"):
            all_entries.setdefault(parent, ("dir", 0o755))
            parent = os.path.dirname(parent)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dest in sorted(all_entries):
            kind, arg = all_entries[dest]
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, arg
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, arg, 0o777
                tar.addfile(info)
            else:
                real = os.path.realpath(arg)
                st = os.stat(real)
                info.size, info.mode = st.st_size, st.st_mode & 0o7777
                with open(real, "rb") as f:
                    tar.addfile(info, f)
    out = io.BytesIO()
    # mtime=0 and no file name: the gzip header carries nothing that changes between builds.
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return raw.getvalue(), out.getvalue()


def build(args):
    entries = {}
    for spec in args.dir or []:
        dest, _, mode = spec.partition(":")
        entries[dest] = ("dir", int(mode or "755", 8))
    for spec in args.add or []:
        src, _, dest = spec.partition(":")
        if not os.path.isfile(src):
            sys.exit(f"image.py: {src}: no such file")
        entries[dest] = ("file", src)
    for spec in args.link or []:
        dest, _, target = spec.partition(":")
        entries[dest] = ("link", target)
    for dest in args.libs_of or []:
        kind, src = entries.get(dest, (None, None))
        if kind != "file":
            sys.exit(f"image.py: --libs-of {dest}: add that file first")
        for lib in shared_libraries(src):
            entries.setdefault(lib, ("file", lib))
    tar, layer = build_layer(entries)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": args.entrypoint,
            "Cmd": args.cmd,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + (args.env or []),
            "WorkingDir": args.workdir,
            "Labels": {"org.opencontainers.image.source": "mlmodel-operator hack/image.py"},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created_by": "hack/image.py"}],
    }
    config = {k: v for k, v in config.items() if v is not None}
    config["config"] = {k: v for k, v in config["config"].items() if v}
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {sha256(config_bytes): config_bytes, sha256(layer): layer}, manifest_bytes


def split_tag(tag: str):
    """localhost:23500/a/b:1 -> (localhost:23500, a/b, 1)."""
    host, _, rest = tag.partition("/")
    name, _, ref = rest.rpartition(":")
    if not name or "/" in ref:
        name, ref = rest, "latest"
    return host, name, ref


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def push(tag: str, blobs: dict, manifest: bytes):
    host, name, ref = split_tag(tag)
    base = f"http://{host}/v2/{name}"
    for digest, data in blobs.items():
        status, _, _ = request("HEAD", f"{base}/blobs/{digest}")
        if status == 200:
            continue
        status, headers, body = request("POST", f"{base}/blobs/uploads/")
        if status != 202:
            sys.exit(f"image.py: starting an upload to {base}: HTTP {status} {body[:200]!r}")
        location = headers["Location"]
        if location.startswith("/"):
            location = f"http://{host}{location}"
        sep = "&" if "?" in location else "?"
        status, _, body = request(
            "PUT", f"{location}{sep}digest={digest}", data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        if status != 201:
            sys.exit(f"image.py: uploading {digest}: HTTP {status} {body[:200]!r}")
    status, _, body = request("PUT", f"{base}/manifests/{ref}", manifest, {"Content-Type": MANIFEST})
    if status != 201:
        sys.exit(f"image.py: pushing the manifest of {tag}: HTTP {status} {body[:200]!r}")


def write_layout(path: str, tag: str, blobs: dict, manifest: bytes):
    """An OCI image layout as one tarball (what `ctr images import` and skopeo read)."""
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    for digest, data in list(blobs.items()) + [(sha256(manifest), manifest)]:
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": MANIFEST, "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    files["index.json"] = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(files[name]), 0
            tar.addfile(info, io.BytesIO(files[name]))


def argv(text: str) -> list[str]:
    """`/pause` -> ["/pause"]; '["httpd", "-f"]' -> ["httpd", "-f"]."""
    if text.startswith("["):
        words = json.loads(text)
        if not all(isinstance(w, str) for w in words):
            raise argparse.ArgumentTypeError(f"not a list of strings: {text}")
        return words
    return [text]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True)
    p.add_argument("--add", action="append", metavar="SRC:DEST")
    p.add_argument("--dir", action="append", metavar="DEST[:MODE]")
    p.add_argument("--link", action="append", metavar="DEST:TARGET")
    p.add_argument("--libs-of", action="append", metavar="DEST")
    p.add_argument("--entrypoint", type=argv, help="a path, or a JSON list of strings")
    p.add_argument("--cmd", type=argv, help="a word, or a JSON list of strings")
    p.add_argument("--env", action="append", metavar="K=V")
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--push", action="store_true", help="push to the registry named by --tag (plain http)")
    p.add_argument("--oci-archive", metavar="FILE", help="also write an OCI layout tarball")
    args = p.parse_args()
    blobs, manifest = build(args)
    if args.oci_archive:
        write_layout(args.oci_archive, args.tag, blobs, manifest)
    if args.push:
        push(args.tag, blobs, manifest)
    print(f"{args.tag}@{sha256(manifest)}")


if __name__ == "__main__":
    main()
