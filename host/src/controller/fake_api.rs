//! A fake API server for driving [`reconcile`](super::reconcile) without a cluster: a
//! `tower_test` mock service handed to `kube::Client::new`, answering from a scenario of
//! expected requests (in order) and canned replies. Anything not in the scenario is answered
//! with a 500 and recorded, so a test sees both what was missing and what was extra.
use crate::api::MLModel;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What the fake API server answers to one expected request.
pub enum Reply {
    /// The request's own body (server-side apply, event creation).
    Echo,
    /// `model` with the status the request patched in (a status patch).
    ModelWithStatus(Box<MLModel>),
    /// This object (a GET of an object that exists).
    Object(Value),
    /// 200 with a success Status (a delete).
    Deleted,
    /// 409 Conflict (a delete whose UID precondition failed).
    Conflict,
    /// 409 Conflict (a create-only apply of an object that exists).
    Exists,
}

/// One expected request: method and path (no query).
pub struct Expect {
    pub method: &'static str,
    pub path: String,
    pub reply: Reply,
}

impl Expect {
    pub fn apply(path: impl Into<String>) -> Self {
        Expect {
            method: "PATCH",
            path: path.into(),
            reply: Reply::Echo,
        }
    }

    /// A create-only apply of an object that exists already.
    pub fn exists(path: impl Into<String>) -> Self {
        Expect {
            method: "PATCH",
            path: path.into(),
            reply: Reply::Exists,
        }
    }

    /// A GET of an object that exists.
    pub fn present(path: impl Into<String>, object: Value) -> Self {
        Expect {
            method: "GET",
            path: path.into(),
            reply: Reply::Object(object),
        }
    }

    /// A delete, answered with `reply` (`Deleted` or `Conflict`).
    pub fn delete(path: impl Into<String>, reply: Reply) -> Self {
        Expect {
            method: "DELETE",
            path: path.into(),
            reply,
        }
    }

    pub fn status_patch(model: &MLModel) -> Self {
        let ns = model.metadata.namespace.as_deref().unwrap_or_default();
        let name = model.metadata.name.as_deref().unwrap_or_default();
        Expect {
            method: "PATCH",
            path: format!("/apis/mlmodel.dev/v1alpha1/namespaces/{ns}/mlmodels/{name}/status"),
            reply: Reply::ModelWithStatus(Box::new(model.clone())),
        }
    }

    pub fn event(ns: &str) -> Self {
        Expect {
            method: "POST",
            path: format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
            reply: Reply::Echo,
        }
    }
}

/// A request the fake API server received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// Not in the scenario (or out of order): answered with a 500.
    pub unexpected: bool,
}

pub struct FakeApi {
    calls: Arc<Mutex<Vec<Call>>>,
    left: Arc<Mutex<VecDeque<Expect>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    /// A client whose API server plays `scenario`.
    pub fn start(scenario: Vec<Expect>) -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let left = Arc::new(Mutex::new(VecDeque::from(scenario)));
        let (log, expected) = (calls.clone(), left.clone());
        let server = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body");
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
                let next = {
                    let mut expected = expected.lock().unwrap();
                    match expected.front() {
                        Some(e) if e.method == method && e.path == path => expected.pop_front(),
                        _ => None,
                    }
                };
                let (code, reply) = match &next {
                    Some(Expect {
                        reply: Reply::Echo, ..
                    }) => (200, body.clone()),
                    Some(Expect {
                        reply: Reply::ModelWithStatus(model),
                        ..
                    }) => {
                        let mut reply = serde_json::to_value(model).unwrap();
                        reply["status"] = body["status"].clone();
                        (200, reply)
                    }
                    Some(Expect {
                        reply: Reply::Object(object),
                        ..
                    }) => (200, object.clone()),
                    Some(Expect {
                        reply: Reply::Deleted,
                        ..
                    }) => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                    ),
                    Some(Expect {
                        reply: Reply::Conflict,
                        ..
                    }) => (
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "Precondition failed: UID in precondition", "reason": "Conflict", "code": 409}),
                    ),
                    Some(Expect {
                        reply: Reply::Exists,
                        ..
                    }) => (
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "Operation cannot be fulfilled: the object has been modified", "reason": "Conflict", "code": 409}),
                    ),
                    None => (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "not in the scenario", "reason": "InternalError", "code": 500}),
                    ),
                };
                log.lock().unwrap().push(Call {
                    method,
                    path,
                    body,
                    unexpected: next.is_none(),
                });
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                respond.send_response(response);
            }
        });
        (
            Client::new(service, "default"),
            FakeApi {
                calls,
                left,
                server,
            },
        )
    }

    /// The requests received; panics unless they were exactly the scenario, in order.
    pub fn verify(self) -> Vec<Call> {
        self.server.abort();
        let calls = self.calls.lock().unwrap().clone();
        let seen: Vec<String> = calls
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect();
        let left: Vec<String> = self
            .left
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        assert!(
            calls.iter().all(|c| !c.unexpected) && left.is_empty(),
            "requests: {seen:#?}\nexpected but not received: {left:#?}"
        );
        calls
    }
}
