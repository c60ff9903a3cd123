//! A source of one file as the transfer sees it: a [`Remote`] opens a body from an offset, and an
//! attempt ends [`Opened`] or with an [`AttemptError`] (retry, restart from byte 0, or fatal).
//! `http`, `objects` (and `hf` through `http`) implement it; `transfer` and `retry` use it.
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::{FetchError, chain};

/// A successfully opened body, starting at `start` (0 when the server ignored the Range).
pub struct Opened {
    pub body: BoxStream<'static, Result<Bytes, FetchError>>,
    pub start: u64,
    /// Length of the whole object, when known.
    pub total: Option<u64>,
    /// ETag (strong) or Last-Modified: what a later Range request is validated with.
    pub validator: Option<String>,
}

/// A remote's byte stream as a body, its read errors named after `what` (a redacted URL).
pub fn network_body<S, E>(stream: S, what: String) -> BoxStream<'static, Result<Bytes, FetchError>>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + 'static,
{
    stream
        .map(move |r| r.map_err(|e| FetchError::Network(format!("reading {what}: {}", chain(&e)))))
        .boxed()
}

#[derive(Debug)]
pub enum AttemptError {
    /// May pass: retry after a backoff (or the server's Retry-After).
    Retry {
        error: FetchError,
        after: Option<Duration>,
    },
    /// The remote object changed or refused the range: drop the partial data, retry at once.
    Restart(String),
    /// Will not pass by retrying.
    Fatal(FetchError),
}

impl AttemptError {
    pub fn retry(error: FetchError) -> Self {
        Self::Retry { error, after: None }
    }
}

/// Where one file comes from (an HTTP(S) URL, an object in a store).
pub trait Remote: Send + Sync {
    /// Opens the body from byte `offset`; when resuming, `validator` (ETag or Last-Modified of
    /// the kept bytes) must still match. `stall` bounds the wait for the response.
    fn open<'a>(
        &'a self,
        offset: u64,
        validator: Option<&'a str>,
        stall: Duration,
    ) -> BoxFuture<'a, Result<Opened, AttemptError>>;

    /// What logs name: a redacted URL or `s3://bucket/key`.
    fn describe(&self) -> String;
}
