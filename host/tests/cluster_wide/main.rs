//! Cluster tests that must not run beside the others: the operator installed from
//! `deploy/install.yaml` watches every namespace, so it would race the in-process controllers of
//! `tests/cluster`. Cargo runs test binaries one after the other.
#[path = "../common/mod.rs"]
mod common;

mod real_node_install;
