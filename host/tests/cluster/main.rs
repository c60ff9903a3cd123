//! The tests on the local cluster (`make test` starts it; each test is
//! `#[ignore = "needs the local cluster: make test"]`), in one binary so the host links once.
//! Each test works in namespaces of its own; in-process controllers and installed operators are
//! scoped to them, so the tests run side by side.
#[path = "../common/mod.rs"]
mod common;
#[path = "../deploy_support/mod.rs"]
mod deploy_support;
#[path = "../fixtures/support.rs"]
mod support;

mod cluster_smoke;
mod controller_flow;
mod crd_validation;
mod deploy_install;
mod operator_process;
mod real_inference;
mod real_node;
mod real_nodes;
