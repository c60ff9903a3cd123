//! What landed in DEST: the model format, detected from the files' content (never their names),
//! and an inventory small enough for the termination log.
//!
//! The vocabulary, exactly these strings: `saved-model`, `keras-hdf5`, `onnx`, `safetensors`,
//! `gguf`, `pytorch`, `sklearn` (a pickle or uncompressed joblib file of a scikit-learn object),
//! `pickle` (any other Python pickle), and `files` for anything else.
//!
//! The rule for a directory:
//! 1. the TensorFlow SavedModel layout wins: `saved_model.pb` (or `.pbtxt`) at the top or in a
//!    numeric version directory (`1/saved_model.pb`), whose content checks out (see
//!    [`saved_model_pb`] and [`saved_model_pbtxt`]);
//! 2. otherwise the format of the largest file whose content is recognised, among the
//!    [`CANDIDATES`] largest regular files (ties: the first path in byte order);
//! 3. otherwise `files`.
//!
//! Only small, bounded reads: a head of [`HEAD`] bytes, a few bytes at chosen offsets, the first
//! protobuf field headers (skipped by seeking, never read through), and for a zip the name of its
//! first entry, then if need be its central directory (names and offsets, not contents). The walk
//! itself reads metadata only and does not follow symlinks.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const SAVED_MODEL: &str = "saved-model";
pub const KERAS_HDF5: &str = "keras-hdf5";
pub const ONNX: &str = "onnx";
pub const SAFETENSORS: &str = "safetensors";
pub const GGUF: &str = "gguf";
pub const PYTORCH: &str = "pytorch";
pub const SKLEARN: &str = "sklearn";
pub const PICKLE: &str = "pickle";
pub const FILES: &str = "files";

/// Largest files listed in the report.
pub const LISTED: usize = 5;
/// Largest files whose content is inspected.
pub const CANDIDATES: usize = 32;
/// Longest path listed, in bytes; longer ones keep their end (the file name), after `...`.
pub const MAX_PATH: usize = 96;
/// Bytes read from the start of each inspected file: enough for a pickle's first global (its
/// module name) after the protocol and frame opcodes.
const HEAD: u64 = 256;
/// Top-level protobuf fields looked at before deciding.
const MAX_FIELDS: usize = 32;
/// Names starting with this are the downloader's own (marker, staging).
const RESERVED_PREFIX: &str = ".mlmodel-";

/// What a finished download placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// One of the vocabulary above.
    pub format: &'static str,
    /// Regular files found.
    pub files: u64,
    /// Their total size.
    pub total_bytes: u64,
    /// The [`LISTED`] largest, largest first: (path relative to DEST, cut to [`MAX_PATH`], bytes).
    pub largest: Vec<(String, u64)>,
}

/// Walks `entries` (top-level names in `dest`; all of `dest` but the downloader's own names when
/// empty) and detects the format. Unreadable parts are skipped: this never fails a download.
pub fn inspect(dest: &Path, entries: &[String]) -> Inventory {
    let mut walk = Walk::default();
    let tops: Vec<String> = if entries.is_empty() {
        std::fs::read_dir(dest)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with(RESERVED_PREFIX))
            .collect()
    } else {
        entries.to_vec()
    };
    for name in tops {
        walk.visit(&dest.join(&name), name);
    }
    let mut top = walk.top;
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(CANDIDATES);

    walk.saved_models
        .sort_by_key(|rel| (rel.contains('/'), rel.clone()));
    let saved_model = walk.saved_models.iter().any(|rel| {
        let path = dest.join(rel);
        if rel.ends_with(".pbtxt") {
            saved_model_pbtxt(&path)
        } else {
            saved_model_pb(&path)
        }
    });
    let format = if saved_model {
        SAVED_MODEL
    } else {
        top.iter()
            .find_map(|(rel, _)| detect_file(&dest.join(rel)).ok().flatten())
            .unwrap_or(FILES)
    };
    Inventory {
        format,
        files: walk.files,
        total_bytes: walk.total_bytes,
        largest: top
            .into_iter()
            .take(LISTED)
            .map(|(rel, bytes)| (shorten(&rel), bytes))
            .collect(),
    }
}

#[derive(Default)]
struct Walk {
    files: u64,
    total_bytes: u64,
    /// The largest files so far (at most 2 x [`CANDIDATES`] between trims).
    top: Vec<(String, u64)>,
    /// `saved_model.pb(txt)` at the top or in a numeric version directory.
    saved_models: Vec<String>,
}

impl Walk {
    fn visit(&mut self, path: &Path, rel: String) {
        let mut stack: Vec<(PathBuf, String)> = vec![(path.to_path_buf(), rel)];
        while let Some((path, rel)) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    stack.push((entry.path(), format!("{rel}/{name}")));
                }
            } else if meta.is_file() {
                self.file(rel, meta.len());
            }
        }
    }

    fn file(&mut self, rel: String, bytes: u64) {
        self.files += 1;
        self.total_bytes += bytes;
        if is_saved_model_path(&rel) {
            self.saved_models.push(rel.clone());
        }
        self.top.push((rel, bytes));
        if self.top.len() >= 2 * CANDIDATES {
            self.top
                .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            self.top.truncate(CANDIDATES);
        }
    }
}

/// `saved_model.pb`, `saved_model.pbtxt`, or either under `<digits>/`.
fn is_saved_model_path(rel: &str) -> bool {
    let name = match rel.split_once('/') {
        None => rel,
        Some((dir, rest)) if !dir.is_empty() && dir.bytes().all(|b| b.is_ascii_digit()) => rest,
        Some(_) => return false,
    };
    name == "saved_model.pb" || name == "saved_model.pbtxt"
}

/// A path cut to [`MAX_PATH`] bytes, keeping its end.
fn shorten(rel: &str) -> String {
    if rel.len() <= MAX_PATH {
        return rel.to_string();
    }
    let mut start = rel.len() - (MAX_PATH - 3);
    while !rel.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &rel[start..])
}

/// A test of one format: the file, its length and its first [`HEAD`] bytes.
type Check = fn(&mut File, u64, &[u8]) -> io::Result<bool>;

/// The format of one file from its content, or `None` when it is none of the known ones.
pub fn detect_file(path: &Path) -> io::Result<Option<&'static str>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(HEAD as usize);
    (&mut file).take(HEAD).read_to_end(&mut head)?;
    let checks: [(&'static str, Check); 5] = [
        (GGUF, gguf),
        (SAFETENSORS, safetensors),
        (KERAS_HDF5, hdf5),
        (ONNX, onnx),
        (PYTORCH, pytorch),
    ];
    for (format, check) in checks {
        if check(&mut file, len, &head)? {
            return Ok(Some(format));
        }
    }
    Ok(pickle(&head))
}

/// `GGUF`, then a little-endian u32 version 1 to 3.
fn gguf(_: &mut File, _: u64, head: &[u8]) -> io::Result<bool> {
    Ok(head.len() >= 8
        && &head[..4] == b"GGUF"
        && (1..=3).contains(&u32::from_le_bytes(head[4..8].try_into().unwrap())))
}

/// A little-endian u64 N (at most 100 MB, the format's own limit, and within the file), then an
/// N-byte JSON object: it starts with `{` and, padding spaces aside, ends with `}`.
fn safetensors(file: &mut File, len: u64, head: &[u8]) -> io::Result<bool> {
    if head.len() < 10 {
        return Ok(false);
    }
    let n = u64::from_le_bytes(head[..8].try_into().unwrap());
    if !(2..=100_000_000).contains(&n) || 8 + n > len || head[8] != b'{' {
        return Ok(false);
    }
    let tail_len = n.min(64);
    let mut tail = vec![0; tail_len as usize];
    file.seek(SeekFrom::Start(8 + n - tail_len))?;
    file.read_exact(&mut tail)?;
    Ok(tail.trim_ascii_end().ends_with(b"}"))
}

/// The HDF5 superblock signature at offset 0, 512, 1024, 2048... (after a user block; looked for
/// up to 1 MiB), followed by a superblock version 0 to 3.
fn hdf5(file: &mut File, len: u64, _: &[u8]) -> io::Result<bool> {
    const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let mut at = 0;
    while at + 9 <= len && at <= 1 << 20 {
        let mut buf = [0; 9];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf)?;
        if &buf[..8] == SIGNATURE && buf[8] <= 3 {
            return Ok(true);
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    Ok(false)
}

/// An ONNX `ModelProto`, conservatively: the first field is `ir_version` (field 1, varint: tag
/// 0x08) with a value from 1 to 64, every top-level field seen is one of `ModelProto`'s with its
/// wire type, and `graph` (field 7, length-delimited, within the file) is among the first
/// [`MAX_FIELDS`] (ONNX writes fields in number order, so it comes early).
fn onnx(file: &mut File, len: u64, head: &[u8]) -> io::Result<bool> {
    if head.first() != Some(&0x08) || !matches!(head.get(1), Some(1..=64)) {
        return Ok(false);
    }
    const FIELDS: &[(u32, u8)] = &[
        (1, 0),  // ir_version
        (2, 2),  // producer_name
        (3, 2),  // producer_version
        (4, 2),  // domain
        (5, 0),  // model_version
        (6, 2),  // doc_string
        (7, 2),  // graph
        (8, 2),  // opset_import
        (14, 2), // metadata_props
        (20, 2), // training_info
        (25, 2), // functions
    ];
    let Some(fields) = proto_fields(file, len)? else {
        return Ok(false);
    };
    Ok(fields.iter().all(|f| FIELDS.contains(f)) && fields.contains(&(7, 2)))
}

/// PyTorch: a zip (`torch.save` since 1.6) with a `data.pkl` at its top or one directory down
/// (`archive/data.pkl`): the first entry's name is read from its local header (PyTorch writes
/// `data.pkl` first), else the names of the central directory; or a bare pickle that starts with
/// the legacy `torch.save`'s magic number (a LONG1 of 10 bytes) pickled first.
fn pytorch(file: &mut File, _: u64, head: &[u8]) -> io::Result<bool> {
    let is_data_pkl = |name: &[u8]| {
        name == b"data.pkl"
            || name
                .strip_suffix(b"/data.pkl")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains(&b'/'))
    };
    if head.starts_with(b"PK\x03\x04") && head.len() >= 30 {
        let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
        let mut name = vec![0; name_len];
        file.seek(SeekFrom::Start(30))?;
        if file.read_exact(&mut name).is_ok() && is_data_pkl(&name[..]) {
            return Ok(true);
        }
        file.seek(SeekFrom::Start(0))?;
        return Ok(
            zip::ZipArchive::new(BufReader::new(&mut *file)).is_ok_and(|z| {
                z.file_names()
                    .any(|n| n.is_ok_and(|n| is_data_pkl(n.as_bytes())))
            }),
        );
    }
    const LEGACY_MAGIC: &[u8] = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    Ok(pickle_body(head).is_some_and(|body| body.starts_with(LEGACY_MAGIC)))
}

/// A pickle of protocol 2 to 5: what follows its PROTO opcode (and a protocol-4 FRAME), when the
/// first opcode there can start a pickle.
fn pickle_body(head: &[u8]) -> Option<&[u8]> {
    const FIRST_OPCODES: &[u8] = b"\x95}])(c\x93\x8a\x8cXJKMN\x88\x89GUq";
    let (&[0x80, protocol], rest) = head.split_first_chunk::<2>()? else {
        return None;
    };
    if !(2..=5).contains(&protocol) || !FIRST_OPCODES.contains(rest.first()?) {
        return None;
    }
    // FRAME: an 8-byte length, then the frame's opcodes.
    match rest {
        [0x95, tail @ ..] => tail.get(8..),
        _ => Some(rest),
    }
}

/// A Python pickle (what `pickle.dump` and an uncompressed `joblib.dump` write): `sklearn` when
/// its first global, the class of the object pickled, is from a `sklearn` module (an estimator,
/// a pipeline), else `pickle`.
fn pickle(head: &[u8]) -> Option<&'static str> {
    let body = pickle_body(head)?;
    let module = first_global_module(body);
    let sklearn = module.is_some_and(|m| m == b"sklearn" || m.starts_with(b"sklearn."));
    Some(if sklearn { SKLEARN } else { PICKLE })
}

/// The module name of the global a pickle body opens with: `GLOBAL` (`c` module `\n` name
/// `\n`, protocol 2 and 3) or the first string of a `STACK_GLOBAL` pair (`SHORT_BINUNICODE`,
/// `BINUNICODE`, protocol 4 and 5). None when it opens otherwise or is cut off.
fn first_global_module(body: &[u8]) -> Option<&[u8]> {
    let (&op, rest) = body.split_first()?;
    match op {
        b'c' => rest
            .split(|&b| b == b'\n')
            .next()
            .filter(|m| m.len() < rest.len()),
        0x8c => {
            let (&n, rest) = rest.split_first()?;
            rest.get(..usize::from(n))
        }
        b'X' => {
            let (n, rest) = rest.split_first_chunk::<4>()?;
            rest.get(..u32::from_le_bytes(*n) as usize)
        }
        _ => None,
    }
}

/// A TensorFlow `SavedModel` message: non-empty, and its top-level fields, within the first
/// [`MAX_FIELDS`], are only `saved_model_schema_version` (field 1, varint) and `meta_graphs`
/// (field 2, length-delimited, within the file), at least one `meta_graphs`. A text file or a
/// GraphDef named `saved_model.pb` fails this.
fn saved_model_pb(path: &Path) -> bool {
    let check = || -> io::Result<bool> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let Some(fields) = proto_fields(&mut file, len)? else {
            return Ok(false);
        };
        Ok(fields.iter().all(|f| matches!(f, (1, 0) | (2, 2))) && fields.contains(&(2, 2)))
    };
    check().unwrap_or(false)
}

/// The text form: its first 4 KiB are UTF-8 (a character cut at the end aside) and the first
/// thing that is not blank or a `#` comment is `saved_model_schema_version` or `meta_graphs`.
fn saved_model_pbtxt(path: &Path) -> bool {
    let mut head = Vec::new();
    let Ok(file) = File::open(path) else {
        return false;
    };
    if file.take(4096).read_to_end(&mut head).is_err() {
        return false;
    }
    let text = match std::str::from_utf8(&head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap(),
        Err(_) => return false,
    };
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            l.starts_with("saved_model_schema_version") || l.starts_with("meta_graphs")
        })
}

/// The first [`MAX_FIELDS`] top-level fields of a protobuf message filling the file, as (field
/// number, wire type); `None` when what is read cannot be one (empty, a group or an unknown wire
/// type, field 0, a length past the end, a truncated varint). Values are skipped by seeking.
fn proto_fields(file: &mut File, len: u64) -> io::Result<Option<Vec<(u32, u8)>>> {
    if len == 0 {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(256, &mut *file);
    let mut pos = 0u64;
    let mut fields = Vec::new();
    while pos < len && fields.len() < MAX_FIELDS {
        let Some(tag) = varint(&mut r, &mut pos)? else {
            return Ok(None);
        };
        let (field, wire) = (tag >> 3, (tag & 7) as u8);
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Ok(None);
        }
        let skip = match wire {
            0 => {
                if varint(&mut r, &mut pos)?.is_none() {
                    return Ok(None);
                }
                0
            }
            1 => 8,
            2 => match varint(&mut r, &mut pos)? {
                Some(n) => n,
                None => return Ok(None),
            },
            5 => 4,
            _ => return Ok(None),
        };
        if skip > len - pos {
            return Ok(None);
        }
        r.seek_relative(skip as i64)?;
        pos += skip;
        fields.push((field as u32, wire));
    }
    Ok(Some(fields))
}

/// A base-128 varint of at most 10 bytes; `None` when cut short or too long.
fn varint(r: &mut impl BufRead, pos: &mut u64) -> io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0];
        if r.read(&mut b)? == 0 {
            return Ok(None);
        }
        *pos += 1;
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("fetch-format-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn put(dir: &Path, rel: &str, bytes: &[u8]) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// The format of a directory holding only `rel` with `bytes`.
    fn format_of(rel: &str, bytes: &[u8]) -> &'static str {
        let dir = scratch("one");
        put(&dir, rel, bytes);
        let format = inspect(&dir, &[]).format;
        fs::remove_dir_all(&dir).unwrap();
        format
    }

    /// After `user_block` bytes: the signature, superblock version 0 and the start of a
    /// version-0 superblock (free-space and root-group versions, sizes of offsets and lengths,
    /// leaf and internal node K...), then padding.
    fn hdf5_bytes(user_block: usize) -> Vec<u8> {
        let mut b = vec![0u8; user_block];
        b.extend_from_slice(b"\x89HDF\r\n\x1a\n");
        b.extend_from_slice(&[0, 0, 0, 0, 0, 8, 8, 0, 4, 0, 16, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0u8; 64]);
        b
    }

    fn safetensors_bytes() -> Vec<u8> {
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   "#;
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend_from_slice(&1.0f32.to_le_bytes());
        b.extend_from_slice(&2.0f32.to_le_bytes());
        b
    }

    fn gguf_bytes(version: u32) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // tensor count
        b.extend_from_slice(&0u64.to_le_bytes()); // metadata count
        b
    }

    fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// `pickle.dumps({}, protocol=2)`.
    const EMPTY_DICT: &[u8] = b"\x80\x02}q\x00.";

    /// The start of `joblib.dump(LogisticRegression(), f)` (protocol 4: FRAME, then the class
    /// as a STACK_GLOBAL of two short strings).
    const SKLEARN_PROTO4: &[u8] = b"\x80\x04\x95\x1c\x03\x00\x00\x00\x00\x00\x00\x8c\x1esklearn.linear_model._logistic\x94\x8c\x12LogisticRegression\x94\x93\x94)\x81\x94}\x94.";

    /// The start of `pickle.dumps(DecisionTreeClassifier(), protocol=2)`.
    const SKLEARN_PROTO2: &[u8] =
        b"\x80\x02csklearn.tree._classes\nDecisionTreeClassifier\nq\x00)\x81q\x01}q\x02b.";

    /// A ModelProto: ir_version 8, producer_name "t", graph { name: "g" }, opset_import
    /// { version: 13 }.
    const ONNX_MODEL: &[u8] = b"\x08\x08\x12\x01t\x3a\x03\x12\x01g\x42\x02\x10\x0d";

    /// A SavedModel: saved_model_schema_version 1, meta_graphs { meta_info_def {} }.
    const SAVED_MODEL_PB: &[u8] = b"\x08\x01\x12\x02\x0a\x00";

    #[test]
    fn each_format_is_recognised_from_its_content() {
        let pt_zip = zip_bytes(&[
            ("archive/data.pkl", EMPTY_DICT),
            ("archive/version", b"3\n"),
            ("archive/data/0", &[0; 16]),
        ]);
        let pt_zip_later = zip_bytes(&[
            ("archive/version", b"3\n"),
            ("archive/data.pkl", EMPTY_DICT),
        ]);
        let cases: [(&str, &[u8], &str); 12] = [
            ("model.h5", &hdf5_bytes(0), KERAS_HDF5),
            ("weights", &hdf5_bytes(512), KERAS_HDF5),
            ("model.safetensors", &safetensors_bytes(), SAFETENSORS),
            ("model.gguf", &gguf_bytes(3), GGUF),
            ("model.pt", &pt_zip, PYTORCH),
            ("model.bin", &pt_zip_later, PYTORCH),
            ("model.pkl", EMPTY_DICT, PICKLE),
            ("model.joblib", SKLEARN_PROTO4, SKLEARN),
            ("model.pickle", SKLEARN_PROTO2, SKLEARN),
            // Older torch.save: the pickled magic number first (LONG1).
            (
                "old.pt",
                b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
                PYTORCH,
            ),
            ("model.onnx", ONNX_MODEL, ONNX),
            ("1/saved_model.pb", SAVED_MODEL_PB, SAVED_MODEL),
        ];
        for (rel, bytes, want) in cases {
            assert_eq!(format_of(rel, bytes), want, "{rel}");
        }
        // Names do not matter: the same bytes under other names.
        assert_eq!(format_of("x.txt", &safetensors_bytes()), SAFETENSORS);
        assert_eq!(format_of("model", ONNX_MODEL), ONNX);
    }

    /// Only a `sklearn` module's class makes a pickle `sklearn`; other pickles, and pickles whose
    /// first global is cut off or comes later, are `pickle`.
    #[test]
    fn pickles_are_told_apart_by_their_first_global() {
        let cases: [(&[u8], &str); 6] = [
            (b"\x80\x04\x8c\x07sklearn\x94\x8c\x01x\x94\x93.", SKLEARN),
            (
                b"\x80\x04\x8c\x0csklearnextra\x94\x8c\x01x\x94\x93.",
                PICKLE,
            ),
            (b"\x80\x02cxgboost.core\nBooster\nq\x00.", PICKLE),
            // GLOBAL without its newline: cut off.
            (b"\x80\x02csklearn.tree", PICKLE),
            // A short string longer than what is there.
            (b"\x80\x04\x8c\x40sklearn.", PICKLE),
            // A list first: the class comes later.
            (b"\x80\x04]\x94\x8c\x0fsklearn.foo.bar\x94.", PICKLE),
        ];
        for (bytes, want) in cases {
            assert_eq!(format_of("model.pkl", bytes), want, "{bytes:?}");
        }
    }

    /// Content, not names: each format's name or near-miss content is `files`.
    #[test]
    fn look_alikes_are_files() {
        let mut bad_hdf5 = hdf5_bytes(0);
        bad_hdf5[8] = 9; // no such superblock version
        let mut late_hdf5 = vec![0u8; 700];
        late_hdf5.extend_from_slice(&hdf5_bytes(0)); // not at 512 * 2^k
        let mut long_safetensors = safetensors_bytes();
        long_safetensors[..8].copy_from_slice(&1_000u64.to_le_bytes()); // past the end
        let mut open_safetensors = safetensors_bytes();
        open_safetensors.truncate(8 + 20); // header cut: no closing brace
        open_safetensors[..8].copy_from_slice(&20u64.to_le_bytes());
        let no_pkl = zip_bytes(&[("archive/weights", b"x"), ("deep/er/data.pkl", EMPTY_DICT)]);
        let cases: [(&str, &[u8]); 16] = [
            ("model.h5", b"this is text, not HDF5"),
            ("model.h5", &bad_hdf5),
            ("model.h5", &late_hdf5),
            ("model.safetensors", b"{\"not\": \"a header\"}"),
            ("model.safetensors", &long_safetensors),
            ("model.safetensors", &open_safetensors),
            ("model.gguf", b"GGUF is a file format"),
            ("model.gguf", &gguf_bytes(99)),
            ("model.pt", &no_pkl),
            ("model.pt", b"PK\x03\x04 not really a zip"),
            ("model.pkl", b"\x80\x07}."),
            // ir_version, then a field ONNX does not have; then no graph at all.
            ("model.onnx", b"\x08\x08\x12\x01t\x9a\x01\x00"),
            ("model.onnx", b"\x08\x08\x12\x01t"),
            // A length running past the end.
            ("model.onnx", b"\x08\x08\x3a\x7f\x12\x01g"),
            ("1/saved_model.pb", b"graph"),
            ("saved_model.pb", b""),
        ];
        for (rel, bytes) in cases {
            assert_eq!(format_of(rel, bytes), FILES, "{rel}: {bytes:?}");
        }
        // An ONNX model named saved_model.pb is ONNX, not a SavedModel (field 7).
        assert_eq!(format_of("saved_model.pb", ONNX_MODEL), ONNX);
        // A SavedModel message outside the layout is not recognised by itself.
        assert_eq!(format_of("graphs/saved_model.pb", SAVED_MODEL_PB), FILES);
    }

    #[test]
    fn a_saved_model_layout_wins_over_larger_files() {
        let dir = scratch("saved");
        put(&dir, "1/saved_model.pb", SAVED_MODEL_PB);
        put(&dir, "1/variables/variables.index", b"index");
        put(
            &dir,
            "1/variables/variables.data-00000-of-00001",
            &[7; 4000],
        );
        put(&dir, "extra/model.gguf", &gguf_bytes(3));
        let inv = inspect(&dir, &[]);
        assert_eq!(inv.format, SAVED_MODEL);
        assert_eq!(inv.files, 4);
        assert_eq!(inv.total_bytes, 6 + 5 + 4000 + 24);
        assert_eq!(
            inv.largest[0],
            (
                "1/variables/variables.data-00000-of-00001".to_string(),
                4000
            )
        );
        fs::remove_dir_all(&dir).unwrap();

        let dir = scratch("pbtxt");
        put(
            &dir,
            "saved_model.pbtxt",
            b"# exported\nsaved_model_schema_version: 1\nmeta_graphs {\n}\n",
        );
        assert_eq!(inspect(&dir, &[]).format, SAVED_MODEL);
        put(&dir, "saved_model.pbtxt", b"hello: 1\n");
        assert_eq!(inspect(&dir, &[]).format, FILES);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_largest_recognised_file_decides() {
        let dir = scratch("largest");
        let mut big = safetensors_bytes();
        big.extend_from_slice(&[0; 1000]);
        put(&dir, "model.safetensors", &big);
        put(&dir, "small.gguf", &gguf_bytes(2));
        put(&dir, "README.md", &[b'x'; 5000]); // the largest, recognised as nothing
        put(&dir, ".mlmodel-complete.json", &[b'{'; 9000]); // the downloader's own: skipped
        let inv = inspect(&dir, &[]);
        assert_eq!(inv.format, SAFETENSORS);
        assert_eq!(inv.files, 3);
        let names: Vec<_> = inv.largest.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["README.md", "model.safetensors", "small.gguf"]);
        // Only the placed entries count when they are given.
        let only = inspect(&dir, &["small.gguf".to_string()]);
        assert_eq!((only.format, only.files), (GGUF, 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_are_not_followed_and_long_paths_are_cut() {
        let dir = scratch("links");
        let long = format!("{}/{}.onnx", "d".repeat(150), "m".repeat(20));
        put(&dir, &long, ONNX_MODEL);
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        let inv = inspect(&dir, &[]);
        assert_eq!((inv.format, inv.files), (ONNX, 1));
        let (path, bytes) = &inv.largest[0];
        assert_eq!(*bytes, ONNX_MODEL.len() as u64);
        assert_eq!(path.len(), MAX_PATH);
        assert!(path.starts_with("...") && path.ends_with(&format!("/{}.onnx", "m".repeat(20))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
