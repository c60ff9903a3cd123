#!/usr/bin/env python3
"""Builds a single-layer OCI image from files on this machine, with no container engine, and
pushes it to a registry (the local cluster's, on loopback) or writes it as an OCI layout tarball.

    hack/image.py --tag localhost:23500/pause:3.10 --add /tmp/pause:/pause --entrypoint /pause \
        --user 65535:65535 --push

--add SRC:DEST copies a file (mode kept, owner root); --dir DEST[:MODE] makes an empty directory;
--link DEST:TARGET a symlink; --libs-of DEST copies the shared libraries the ELF file at DEST
(already added) needs, at their own paths, as `ldd` lists them; --tree SRCDIR:DEST copies a whole
directory tree (a root file system: `--tree rootfs:/`): directories and regular files with their
modes, symlinks as symlinks, hard links as tar hard links to the first of their paths; device
nodes, fifos and sockets are left out (the runtime makes /dev). --add, --dir and --link override
what a tree put at the same path. The layer is reproducible (sorted entries, mtime 0, uid/gid 0),
so the same inputs give the same digest and a second push uploads nothing.

The layer is streamed: tar, gzip and both digests in one pass, written to a temporary file (or
to --layout), never held in memory; uploads stream from the file too.

    hack/image.py --tag T --tree rootfs:/ --user 1000:1000 --layout DIR   # build only
    hack/image.py --tag localhost:23500/a/b:1 --from-layout DIR --push    # push what DIR holds

--layout DIR writes the image as an OCI image layout directory (oci-layout, index.json,
blobs/sha256/...); --from-layout DIR reads one back instead of building (no build options then),
so a big image is compressed once and pushed many times. Python standard library only.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
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


class HashingWriter:
    """A write-only file that hashes (and counts) what passes through to OUT (or nowhere)."""

    def __init__(self, out=None):
        self.out, self.hash, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self):
        if self.out is not None:
            self.out.flush()

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def tree_entries(src: str, dest: str) -> dict:
    """The entries of the directory tree SRC placed at DEST (SRC itself becomes DEST)."""
    entries, first_of_inode, skipped = {}, {}, 0
    dest = "/" + dest.strip("/")
    paths = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            paths.append(os.path.join(dirpath, name))
    target = {p: (dest.rstrip("/") + "/" + os.path.relpath(p, src)) for p in paths}
    if dest != "/":
        entries[dest] = ("dir", stat.S_IMODE(os.lstat(src).st_mode))
    # Sorted by destination, so the first path of a hard-linked inode is the one the archive has
    # before the others (a tar hard link must name an entry that came earlier).
    for path in sorted(paths, key=lambda p: target[p]):
        st = os.lstat(path)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            entries[target[path]] = ("dir", mode)
        elif stat.S_ISLNK(st.st_mode):
            entries[target[path]] = ("link", os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in first_of_inode:
                first_dest, first_path = first_of_inode[key]
                entries[target[path]] = ("hardlink", first_dest, mode, first_path)
            else:
                first_of_inode[key] = (target[path], path)
                entries[target[path]] = ("file", path, mode)
        else:
            skipped += 1
    if skipped:
        print(f"image.py: {src}: left out {skipped} device nodes, fifos or sockets", file=sys.stderr)
    return entries


def build_layer(entries: dict, out, level: int = 6):
    """entries: DEST -> ("file", SRC[, MODE]) | ("dir", MODE) | ("link", TARGET) |
    ("hardlink", DEST2, MODE, SRC); parents made as 0755. Writes the gzipped tar to the binary file OUT;
    returns (diff_id, digest, size) of the tar and of the gzip."""
    all_entries = dict(entries)
    for dest in list(entries):
        parent = os.path.dirname(dest.rstrip("/"))
        while parent not in ("", "/"):
            all_entries.setdefault(parent, ("dir", 0o755))
            parent = os.path.dirname(parent)
    gz_out = HashingWriter(out)
    # mtime=0 and no file name: the gzip header carries nothing that changes between builds.
    with gzip.GzipFile(fileobj=gz_out, mode="wb", mtime=0, filename="", compresslevel=level) as gz:
        raw = HashingWriter(gz)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dest in sorted(all_entries):
                if dest in ("", "/"):
                    continue
                kind, arg, *rest = all_entries[dest]
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
                elif kind == "hardlink":
                    info.type, info.linkname, info.mode = tarfile.LNKTYPE, arg.lstrip("/"), rest[0]
                    tar.addfile(info)
                else:
                    real = os.path.realpath(arg)
                    st = os.stat(real)
                    info.size = st.st_size
                    info.mode = rest[0] if rest else st.st_mode & 0o7777
                    with open(real, "rb") as f:
                        tar.addfile(info, f)
    return raw.digest(), gz_out.digest(), gz_out.size


def build(args, layer_file):
    """Writes the layer to the open binary file LAYER_FILE; returns (blobs, manifest), blobs
    being digest -> bytes, or -> the layer file's path for the layer."""
    entries = {}
    for spec in args.tree or []:
        src, sep, dest = spec.partition(":")
        if not sep or not os.path.isdir(src):
            sys.exit(f"image.py: --tree {spec}: not SRCDIR:DEST with SRCDIR a directory")
        entries.update(tree_entries(src, dest))
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
        kind, src, *_ = entries.get(dest, (None, None))
        if kind != "file":
            sys.exit(f"image.py: --libs-of {dest}: add that file first")
        for lib in shared_libraries(src):
            entries.setdefault(lib, ("file", lib))
    # A hard link whose first path was replaced (--add, --dir, --link) becomes a copy of its file.
    for dest, entry in list(entries.items()):
        if entry[0] == "hardlink" and entries.get(entry[1], (None, None))[:2] != ("file", entry[3]):
            entries[dest] = ("file", entry[3], entry[2])
    diff_id, layer_digest, layer_size = build_layer(entries, layer_file, args.gzip_level)
    layer_file.flush()
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
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hack/image.py"}],
    }
    config = {k: v for k, v in config.items() if v is not None}
    config["config"] = {k: v for k, v in config["config"].items() if v}
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {sha256(config_bytes): config_bytes, layer_digest: layer_file.name}, manifest_bytes


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


def blob_size(blob) -> int:
    """A blob is its bytes, or the path of the file that holds them."""
    return len(blob) if isinstance(blob, bytes) else os.path.getsize(blob)


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
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob_size(data))}
        if isinstance(data, bytes):
            status, _, body = request("PUT", f"{location}{sep}digest={digest}", data, headers)
        else:
            with open(data, "rb") as f:  # streamed by http.client, never read whole
                status, _, body = request("PUT", f"{location}{sep}digest={digest}", f, headers)
        if status != 201:
            sys.exit(f"image.py: uploading {digest}: HTTP {status} {body[:200]!r}")
    status, _, body = request("PUT", f"{base}/manifests/{ref}", manifest, {"Content-Type": MANIFEST})
    if status != 201:
        sys.exit(f"image.py: pushing the manifest of {tag}: HTTP {status} {body[:200]!r}")


def index_json(tag: str, manifest: bytes) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": MANIFEST, "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}).encode()


def write_layout(path: str, tag: str, blobs: dict, manifest: bytes):
    """An OCI image layout as one tarball (what `ctr images import` and skopeo read)."""
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    for digest, data in list(blobs.items()) + [(sha256(manifest), manifest)]:
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    files["index.json"] = index_json(tag, manifest)
    with tarfile.open(path, "w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = blob_size(files[name]), 0
            if isinstance(files[name], bytes):
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                with open(files[name], "rb") as f:
                    tar.addfile(info, f)


def write_layout_dir(path: str, tag: str, blobs: dict, manifest: bytes):
    """An OCI image layout directory; the layer file is moved (or copied) into it."""
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    for digest, data in list(blobs.items()) + [(sha256(manifest), manifest)]:
        dest = os.path.join(path, "blobs", "sha256", digest.split(":", 1)[1])
        if isinstance(data, bytes):
            with open(dest, "wb") as f:
                f.write(data)
        elif os.path.abspath(data) != os.path.abspath(dest):
            shutil.copyfile(data, dest)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    # index.json last: a layout that has one is complete.
    with open(os.path.join(path, "index.json.tmp"), "wb") as f:
        f.write(index_json(tag, manifest))
    os.replace(os.path.join(path, "index.json.tmp"), os.path.join(path, "index.json"))


def read_layout_dir(path: str):
    """(blobs, manifest) of the single image of the layout directory PATH; blobs are paths."""
    try:
        with open(os.path.join(path, "index.json")) as f:
            (desc,) = json.load(f)["manifests"]
    except (OSError, ValueError) as e:
        sys.exit(f"image.py: {path}: not an OCI layout of one image ({e})")
    blob = lambda digest: os.path.join(path, "blobs", "sha256", digest.split(":", 1)[1])
    with open(blob(desc["digest"]), "rb") as f:
        manifest = f.read()
    if sha256(manifest) != desc["digest"]:
        sys.exit(f"image.py: {path}: the manifest does not match its digest")
    parsed = json.loads(manifest)
    blobs = {}
    for d in [parsed["config"]] + parsed["layers"]:
        if blob_size(blob(d["digest"])) != d["size"]:
            sys.exit(f"image.py: {path}: blob {d['digest']} is missing or has the wrong size")
        blobs[d["digest"]] = blob(d["digest"])
    return blobs, manifest


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
    p.add_argument("--tree", action="append", metavar="SRCDIR:DEST", help="a whole directory tree")
    p.add_argument("--entrypoint", type=argv, help="a path, or a JSON list of strings")
    p.add_argument("--cmd", type=argv, help="a word, or a JSON list of strings")
    p.add_argument("--env", action="append", metavar="K=V")
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--gzip-level", type=int, default=6, choices=range(1, 10), metavar="1-9",
                   help="gzip level of the layer (default 6)")
    p.add_argument("--push", action="store_true", help="push to the registry named by --tag (plain http)")
    p.add_argument("--oci-archive", metavar="FILE", help="also write an OCI layout tarball")
    p.add_argument("--layout", metavar="DIR", help="also write an OCI layout directory")
    p.add_argument("--from-layout", metavar="DIR", help="take the image from this OCI layout directory instead of building")
    args = p.parse_args()
    if args.from_layout:
        building = [o for o in ("add", "dir", "link", "libs_of", "tree", "entrypoint", "cmd", "env",
                                "user", "workdir", "layout") if getattr(args, o)]
        if building:
            p.error(f"--from-layout takes no build options (got --{building[0].replace('_', '-')})")
        blobs, manifest = read_layout_dir(args.from_layout)
        run(args, blobs, manifest)
        return
    # The layer goes to a temporary file beside its final place when there is one (a rename,
    # no copy), else to the system's temporary directory; it is deleted after the push.
    where = None
    if args.layout:
        where = os.path.join(args.layout, "blobs", "sha256")
        os.makedirs(where, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=where, prefix=".layer-") as layer_file:
        blobs, manifest = build(args, layer_file)
        if args.layout:
            layer_digest = json.loads(manifest)["layers"][0]["digest"]
            final = os.path.join(where, layer_digest.split(":", 1)[1])
            if not os.path.exists(final):
                os.link(layer_file.name, final)
            blobs[layer_digest] = final
            write_layout_dir(args.layout, args.tag, blobs, manifest)
        run(args, blobs, manifest)


def run(args, blobs, manifest):
    if args.oci_archive:
        write_layout(args.oci_archive, args.tag, blobs, manifest)
    if args.push:
        push(args.tag, blobs, manifest)
    print(f"{args.tag}@{sha256(manifest)}")


if __name__ == "__main__":
    main()
