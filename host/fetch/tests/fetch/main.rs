//! The downloader's tests, one binary (each test binary links the whole downloader again): every
//! test runs `mlmodel-fetch fetch ...` (the command line of `mlmodel-operator fetch`) against
//! local servers on loopback: a scriptable HTTP server (`support`), and moto for `s3://`.
mod support;
mod tempdir;

mod archive;
mod disk;
mod gcs;
mod hf;
mod http;
mod s3;
