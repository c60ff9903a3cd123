//! The models' Events (`events.k8s.io/v1`): one Event per distinct message; the same message
//! again within [`SERIES_WINDOW`] adds to that Event's series (count, last time) instead of a
//! new object.
//!
//! kube-runtime's `Recorder` keys a series by type, reason and action, not by message: a second
//! `Ready` with another message (the next revision) only bumped the count of the first, and
//! `kubectl describe` kept showing the old revision (seen by the fault tests, hack/chaos.py:
//! "Ready: serving revision A" x2 after the model had rolled to revision B).
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::MLModel;
use crate::conditions::Reason;

/// A repeat within this long is counted in the first Event's series (client-go's window).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What one Event says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    reason: String,
    note: String,
}

enum Write {
    Create(Box<Event>),
    Series { name: String, count: i32 },
}

struct Published {
    name: String,
    count: i32,
    last: Instant,
}

pub struct Recorder {
    client: Client,
    controller: String,
    instance: Option<String>,
    published: Mutex<HashMap<Key, Published>>,
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Recorder {
        Recorder {
            client,
            controller: controller.to_string(),
            instance,
            published: Mutex::default(),
        }
    }

    /// Creates the Event, or adds to the series of the same message published lately.
    pub async fn publish(
        &self,
        model: &MLModel,
        warning: bool,
        reason: &Reason,
        note: &str,
    ) -> Result<(), kube::Error> {
        let key = Key {
            uid: model.uid().unwrap_or_default(),
            warning,
            reason: reason.as_str().to_string(),
            note: note.to_string(),
        };
        let now = Timestamp::now();
        let events: Api<Event> =
            Api::namespaced(self.client.clone(), &model.namespace().unwrap_or_default());
        let (name, count) = match self.next(model, &key, now) {
            Write::Series { name, count } => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                events
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({ "series": series })),
                    )
                    .await?;
                (name, count)
            }
            Write::Create(event) => {
                let name = event.name_any();
                events.create(&PostParams::default(), &event).await?;
                (name, 1)
            }
        };
        self.published.lock().expect("not poisoned").insert(
            key,
            Published {
                name,
                count,
                last: Instant::now(),
            },
        );
        Ok(())
    }

    /// What publishing `key` now takes: a new Event, or the next count of a recent one's series.
    fn next(&self, model: &MLModel, key: &Key, now: Timestamp) -> Write {
        let mut published = self.published.lock().expect("not poisoned");
        published.retain(|_, p| p.last.elapsed() < SERIES_WINDOW);
        match published.get(key) {
            Some(p) => Write::Series {
                name: p.name.clone(),
                count: p.count + 1,
            },
            None => Write::Create(Box::new(self.event(model, key, now))),
        }
    }

    fn event(&self, model: &MLModel, key: &Key, now: Timestamp) -> Event {
        let name = model.name_any();
        Event {
            metadata: ObjectMeta {
                // As client-go names them: the object's name and the time in nanoseconds.
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: model.namespace(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            action: Some("Reconcile".into()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(
                self.instance
                    .clone()
                    .unwrap_or_else(|| self.controller.clone()),
            ),
            regarding: Some(ObjectReference {
                api_version: Some(MLModel::api_version(&()).into_owned()),
                kind: Some(MLModel::kind(&()).into_owned()),
                name: Some(name),
                namespace: model.namespace(),
                uid: model.uid(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fake_api::{Expect, FakeApi};

    fn model() -> MLModel {
        let yaml = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/samples/echo-model.yaml"
        ));
        let mut model: MLModel = serde_yaml::from_str(yaml).unwrap();
        model.metadata.namespace = Some("ns".into());
        model.metadata.uid = Some("u1".into());
        model
    }

    fn key(note: &str) -> Key {
        Key {
            uid: "u1".into(),
            warning: false,
            reason: "Ready".into(),
            note: note.into(),
        }
    }

    /// The case the fault tests found: a model Ready at revision A, then Ready at revision B,
    /// must show both messages, not A's twice; the same message again is a series.
    #[tokio::test]
    async fn another_message_is_another_event_and_the_same_one_a_series() {
        let (client, api) = FakeApi::start(vec![Expect::event("ns")]);
        let recorder = Recorder::new(client, "mlmodel-operator", None);
        let m = model();
        recorder
            .publish(&m, false, &Reason::Ready, "serving revision a")
            .await
            .unwrap();
        let calls = api.verify();
        assert_eq!(calls[0].body["note"], "serving revision a");
        assert_eq!(calls[0].body["reason"], "Ready");
        assert_eq!(calls[0].body["type"], "Normal");
        assert_eq!(calls[0].body["regarding"]["uid"], "u1");
        assert_eq!(calls[0].body["regarding"]["kind"], "MLModel");
        let first = calls[0].body["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(first.starts_with("echo-model."), "{first}");

        let now = Timestamp::now();
        assert!(matches!(
            recorder.next(&m, &key("serving revision b"), now),
            Write::Create(e) if e.note.as_deref() == Some("serving revision b")
        ));
        match recorder.next(&m, &key("serving revision a"), now) {
            Write::Series { name, count } => assert_eq!((name, count), (first, 2)),
            Write::Create(e) => panic!("a new Event for the same message: {e:?}"),
        }
        let warning = Key {
            warning: true,
            ..key("serving revision a")
        };
        assert!(matches!(recorder.next(&m, &warning, now), Write::Create(_)));
    }
}
