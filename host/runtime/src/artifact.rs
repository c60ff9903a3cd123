//! A plugin as bytes, before anything is compiled: how large a file (or registry blob) may be,
//! and its digest, the key of annotation pins, of the compile cache and of registry blobs. A
//! leaf: the engine, the registry and the OCI loading all name it, and it names none of them.
use sha2::{Digest, Sha256};

/// Largest plugin file (or registry blob) read; a component is a few hundred KB.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Lowercase hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
