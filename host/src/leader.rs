//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager: server-side apply,
//! so two candidates can never both take the lease).
//!
//! A leader that cannot renew in time stops leading and the process exits (as client-go's
//! controllers do): a fresh start is the one state that is certainly consistent, and the
//! Deployment restarts it as a candidate.
use anyhow::Context as _;
use clap::Args;
use kube::{Client, Config};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Reconcile only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "MLMODEL_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "mlmodel-operator")]
    pub leader_election_id: String,
    /// Seconds a leader's lease lasts without renewal; a standby takes over after this.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease_duration_seconds: u64,
}

/// This process's candidacy.
pub struct Candidate {
    manager: Arc<LeaseManager>,
    leading: watch::Receiver<bool>,
    pub identity: String,
}

impl Candidate {
    /// Joins the election (creating the Lease if missing); does not wait for the lease.
    pub async fn join(config: &Config, args: &LeaderArgs) -> anyhow::Result<Candidate> {
        let duration = args.lease_duration_seconds;
        // Renew a third of the lease before it ends; a renewal that hangs is cut off by then,
        // so a leader cut off from the API server stops before a standby may take over.
        let grace = (duration / 3).max(1);
        let mut config = config.clone();
        config.connect_timeout = Some(Duration::from_secs(grace));
        config.read_timeout = Some(Duration::from_secs(grace));
        config.write_timeout = Some(Duration::from_secs(grace));
        let namespace = args
            .leader_election_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the leader-election client")?;
        let identity = identity();
        let manager = LeaseManagerBuilder::new(client, &args.leader_election_id)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace(grace)
            .with_field_manager(format!("mlmodel-operator-leader-{identity}"))
            .build()
            .await
            .with_context(|| {
                format!(
                    "joining the leader election (Lease {namespace}/{})",
                    args.leader_election_id
                )
            })?;
        let manager = Arc::new(manager);
        let (tx, leading) = watch::channel(false);
        let m = manager.clone();
        tokio::spawn(async move {
            loop {
                match m.changed().await {
                    Ok(state) => {
                        let was = *tx.borrow();
                        if tx.send(state).is_err() || (was && !state) {
                            return;
                        }
                    }
                    Err(e) if *tx.borrow() => {
                        warn!(error = %e, "cannot renew the leader lease");
                        let _ = tx.send(false);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "leader election: cannot read or take the lease; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
        info!(%identity, lease = %args.leader_election_id, %namespace, "joined the leader election");
        Ok(Candidate {
            manager,
            leading,
            identity,
        })
    }

    /// Resolves once this process leads.
    pub async fn lead(&mut self) -> anyhow::Result<()> {
        self.leading
            .wait_for(|l| *l)
            .await
            .context("the leader election stopped")?;
        info!(identity = %self.identity, "became the leader");
        Ok(())
    }

    /// Resolves when this process stops leading.
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|l| !*l).await;
    }

    /// Gives the lease up at shutdown so that a standby takes over at once.
    pub async fn release(&self) {
        if let Err(e) = self.manager.release().await {
            warn!(error = %e, "could not release the leader lease");
        }
    }
}

/// Unique per process: the pod's name (or the host's) and the process id.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "mlmodel-operator".into());
    format!("{host}_{}", std::process::id())
}
