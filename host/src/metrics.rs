//! Prometheus metrics of `mlmodel-operator run` (OpenMetrics text on `/metrics`).
//!
//! Counters and histograms are recorded as things happen; gauges that describe current state
//! (models by phase, loaded plugins, leadership) are computed when scraped, from the caches,
//! so they can never drift from what the operator sees.
use crate::api::MLModel;
use crate::error::ErrorReason;
use crate::plugins::Runtime;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginErrorLabels {
    pub plugin: String,
    pub step: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginInfoLabels {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub source: String,
    pub active: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn render_buckets() -> Histogram {
    // 10 us .. ~1.3 s (the sandbox stops a call at 1 s).
    Histogram::new(exponential_buckets(0.000_01, 2.0, 18))
}

fn download_buckets() -> Histogram {
    // 1 s .. ~9 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<ResultLabels>,
    models: Family<PhaseLabels, Gauge>,
    plugin_renders: Family<PluginLabels, Counter>,
    plugin_render_errors: Family<PluginErrorLabels, Counter>,
    plugin_render_duration: HistogramFamily<PluginLabels>,
    plugins_loaded: Family<PluginInfoLabels, Gauge>,
    plugin_load_errors: Gauge,
    plugin_artifacts_rejected: Gauge,
    downloads: Family<ResultLabels, Counter>,
    download_duration: HistogramFamily<ResultLabels>,
    leader: Gauge,
    /// The caches models by phase are counted from (one per watched namespace).
    model_stores: Mutex<Vec<Store<MLModel>>>,
    runtime: Mutex<Option<Runtime>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(seconds_buckets),
            models: Family::default(),
            plugin_renders: Family::default(),
            plugin_render_errors: Family::default(),
            plugin_render_duration: Family::new_with_constructor(render_buckets),
            plugins_loaded: Family::default(),
            plugin_load_errors: Gauge::default(),
            plugin_artifacts_rejected: Gauge::default(),
            downloads: Family::default(),
            download_duration: Family::new_with_constructor(download_buckets),
            leader: Gauge::default(),
            model_stores: Mutex::default(),
            runtime: Mutex::default(),
            registry: Registry::with_prefix("mlmodel"),
        };
        m.registry.register(
            "reconciles",
            "Reconciles of MLModels by result (ok, error)",
            m.reconciles.clone(),
        );
        m.registry.register(
            "reconcile_errors",
            "Reconciles that failed and are retried, by reason",
            m.reconcile_errors.clone(),
        );
        m.registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by result",
            m.reconcile_duration.clone(),
        );
        m.registry.register(
            "models",
            "MLModels in the watched namespaces by phase",
            m.models.clone(),
        );
        m.registry.register(
            "plugin_renders",
            "Plugin calls by plugin and step",
            m.plugin_renders.clone(),
        );
        m.registry.register(
            "plugin_render_errors",
            "Plugin calls that failed (trap, timeout, bad output...) by plugin, step and reason",
            m.plugin_render_errors.clone(),
        );
        m.registry.register(
            "plugin_render_duration_seconds",
            "Time a plugin call took (instantiate, call, parse and check)",
            m.plugin_render_duration.clone(),
        );
        m.registry.register(
            "plugins_loaded",
            "Plugins loaded (1 per plugin; active=false when replaced by a later one)",
            m.plugins_loaded.clone(),
        );
        m.registry.register(
            "plugin_load_errors",
            "Plugin files that failed to load",
            m.plugin_load_errors.clone(),
        );
        m.registry.register(
            "plugin_artifacts_rejected",
            "Cached compiled plugins refused since the start: their bytes did not match the digest recorded when this operator compiled them (compiled again)",
            m.plugin_artifacts_rejected.clone(),
        );
        m.registry.register(
            "downloads",
            "Model downloads that ended, by result (succeeded, failed)",
            m.downloads.clone(),
        );
        m.registry.register(
            "download_duration_seconds",
            "Time from the download Job's start to its end, by result",
            m.download_duration.clone(),
        );
        m.registry.register(
            "leader",
            "1 while this process holds the leader lease (or runs without leader election)",
            m.leader.clone(),
        );
        // Known label values start at 0, so that rates and alerts work before the first event.
        for result in ["ok", "error"] {
            m.reconciles
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .inc_by(0);
        }
        for reason in ErrorReason::all() {
            m.reconcile_errors
                .get_or_create(&ErrorLabels {
                    reason: reason.as_str().into(),
                })
                .inc_by(0);
        }
        for result in ["succeeded", "failed"] {
            m.downloads
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .inc_by(0);
        }
        m
    }

    pub fn reconciled(&self, result: Result<(), &str>, took: Duration) {
        let result_label = if result.is_ok() { "ok" } else { "error" };
        let labels = ResultLabels {
            result: result_label.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Err(reason) = result {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    pub fn rendered(&self, plugin: &str, step: &str, error: Option<&str>, took: Duration) {
        let labels = PluginLabels {
            plugin: plugin.into(),
            step: step.into(),
        };
        self.plugin_renders.get_or_create(&labels).inc();
        self.plugin_render_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.plugin_render_errors
                .get_or_create(&PluginErrorLabels {
                    plugin: plugin.into(),
                    step: step.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }

    pub fn download_ended(&self, succeeded: bool, took: Option<Duration>) {
        let labels = ResultLabels {
            result: if succeeded { "succeeded" } else { "failed" }.into(),
        };
        self.downloads.get_or_create(&labels).inc();
        if let Some(took) = took {
            self.download_duration
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(leader as i64);
    }

    pub fn watch_models(&self, store: Store<MLModel>) {
        self.model_stores.lock().expect("not poisoned").push(store);
    }

    pub fn watch_plugins(&self, runtime: Runtime) {
        *self.runtime.lock().expect("not poisoned") = Some(runtime);
    }

    /// Refreshes the state gauges, then encodes everything.
    pub fn encode(&self) -> String {
        self.refresh();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn refresh(&self) {
        let stores = self.model_stores.lock().expect("not poisoned").clone();
        self.models.clear();
        for phase in crate::api::Phase::ALL {
            self.models
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().into(),
                })
                .set(0);
        }
        for store in &stores {
            for model in store.state() {
                let phase = model
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map(|p| p.as_str())
                    .unwrap_or("Pending");
                self.models
                    .get_or_create(&PhaseLabels {
                        phase: phase.into(),
                    })
                    .inc();
            }
        }
        let runtime = self.runtime.lock().expect("not poisoned").clone();
        if let Some(runtime) = runtime {
            self.plugins_loaded.clear();
            for p in runtime.plugins() {
                self.plugins_loaded
                    .get_or_create(&PluginInfoLabels {
                        name: p.name,
                        version: p.version,
                        sha256: p.sha256,
                        source: p.source,
                        active: p.active.to_string(),
                    })
                    .set(1);
            }
            self.plugin_load_errors
                .set(runtime.load_errors().len() as i64);
        }
        self.plugin_artifacts_rejected
            .set(crate::plugins::artifacts_rejected() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_encoded_with_their_labels() {
        let m = Metrics::new();
        m.reconciled(Ok(()), Duration::from_millis(3));
        m.reconciled(Err("Kube"), Duration::from_millis(5));
        m.rendered("echo-server", "serve", None, Duration::from_micros(80));
        m.rendered(
            "echo-server",
            "serve",
            Some("PluginTimeout"),
            Duration::from_secs(1),
        );
        m.download_ended(true, Some(Duration::from_secs(12)));
        m.set_leader(true);
        let text = m.encode();
        for line in [
            "mlmodel_reconciles_total{result=\"ok\"} 1",
            "mlmodel_reconciles_total{result=\"error\"} 1",
            "mlmodel_reconcile_errors_total{reason=\"Kube\"} 1",
            "mlmodel_reconcile_duration_seconds_count{result=\"ok\"} 1",
            "mlmodel_plugin_renders_total{plugin=\"echo-server\",step=\"serve\"} 2",
            "mlmodel_plugin_render_errors_total{plugin=\"echo-server\",step=\"serve\",reason=\"PluginTimeout\"} 1",
            "mlmodel_downloads_total{result=\"succeeded\"} 1",
            "mlmodel_download_duration_seconds_sum{result=\"succeeded\"} 12.0",
            "mlmodel_models{phase=\"Ready\"} 0",
            "mlmodel_leader 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
