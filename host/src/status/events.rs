//! What a status write is worth: whether it changed at all, whether it is urgent (written at
//! once), whether a download ended with it, and the Events it deserves.
use super::{EventNote, Observation, holds};
use crate::api::{MLModelStatus, Phase};
use crate::conditions::{ConditionType, Reason};
use crate::interpret::DownloadState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Whether two statuses differ in anything but timestamps (condition transitions, the
/// download's start), so an unchanged status is never patched.
pub fn changed(old: Option<&MLModelStatus>, new: &MLModelStatus) -> bool {
    let Some(old) = old else { return true };
    // The download's start time, once the Job reports it, is news for no one: it is written
    // with the next change (the download's end at the latest).
    let strip = |s: &MLModelStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        if let Some(d) = &mut s.download {
            d.started_at = None;
        }
        s
    };
    strip(old) != strip(new)
}

/// Whether this status change records the end of a download (for the downloads metric):
/// `(succeeded, Job duration)`, once per download: only when the `Downloaded` condition turns
/// into a final state it was not in before.
pub fn download_ended(
    old: Option<&MLModelStatus>,
    new: &MLModelStatus,
    obs: &Observation,
) -> Option<(bool, Option<std::time::Duration>)> {
    let now = new.condition(ConditionType::Downloaded)?;
    let before = old.and_then(|o| o.condition(ConditionType::Downloaded));
    let same = before.is_some_and(|b| {
        b.status == now.status && b.reason == now.reason && b.message == now.message
    });
    if same {
        return None;
    }
    match &obs.download {
        DownloadState::Succeeded {
            started, finished, ..
        } if holds(now) => {
            let took = started.as_ref().zip(finished.as_ref()).and_then(|(s, f)| {
                let secs = f.0.as_second() - s.0.as_second();
                u64::try_from(secs).ok().map(std::time::Duration::from_secs)
            });
            Some((true, took))
        }
        DownloadState::Failed { .. } => Some((false, None)),
        _ => None,
    }
}

/// Whether a status change must be written at once. Milestones and bad news are: a new
/// generation observed, reaching or leaving `Ready`, any change while `Failed`, a
/// new stall or retry. The rest (a step on the way to Ready, replica counts, progress figures)
/// may wait to be coalesced with the next change: see the controller's `COALESCE`. So may a
/// model's first status, unless it is a milestone already (the controller counts its wait from
/// the model's creation).
pub fn urgent(old: Option<&MLModelStatus>, new: &MLModelStatus) -> bool {
    let milestone = |s: &MLModelStatus| {
        matches!(
            s.phase,
            Some(Phase::Ready | Phase::Degraded | Phase::Failed)
        )
    };
    let Some(old) = old else {
        return milestone(new);
    };
    let stalled = |s: &MLModelStatus| s.reason.as_deref() == Some("DownloadStalled");
    let retries = |s: &MLModelStatus| s.download.as_ref().map_or(0, |d| d.retries.len());
    old.observed_generation != new.observed_generation
        || ((milestone(old) || milestone(new))
            && (old.phase != new.phase || old.reason != new.reason))
        || (new.phase == Some(Phase::Failed) && old.message != new.message)
        || (stalled(new) && !stalled(old))
        || retries(new) != retries(old)
}

/// The Events a status change deserves: milestones (the download done, Ready) and bad news (a
/// failure, a stall, a retried download), each once. Steps on the way to Ready are in the
/// status and its conditions, not repeated as Events. A write that reaches Ready as the
/// download ends has one Event, `Ready`, whose message says what was downloaded.
pub fn events(old: Option<&MLModelStatus>, new: &MLModelStatus) -> Vec<EventNote> {
    let mut notes = Vec::new();
    let last_retry = |s: &MLModelStatus| {
        s.download
            .as_ref()
            .and_then(|d| d.retries.last())
            .map(|r| r.attempt)
    };
    if let Some(r) = new.download.as_ref().and_then(|d| d.retries.last())
        && old.and_then(last_retry) < Some(r.attempt)
    {
        notes.push(EventNote {
            warning: true,
            reason: Reason::DownloadRetried,
            message: format!(
                "download attempt {} failed ({}): {}; retrying",
                r.attempt, r.reason, r.message
            ),
        });
    }
    // On the turn to True only: the report's figures may reach the message a little later.
    fn downloaded(s: &MLModelStatus) -> Option<&Condition> {
        s.condition(ConditionType::Downloaded).filter(|c| holds(c))
    }
    let just_downloaded = downloaded(new).filter(|_| old.and_then(downloaded).is_none());
    let same = old.is_some_and(|o| o.phase == new.phase && o.reason == new.reason);
    let phase = new.phase.unwrap_or_default();
    let reason = Reason::from_wire(&new.reason.clone().unwrap_or_else(|| phase.to_string()));
    let bad_news =
        matches!(phase, Phase::Failed | Phase::Degraded) || reason == Reason::DownloadStalled;
    let ready = !same && phase == Phase::Ready;
    // One Event when the same write says both: the Ready Event tells what was downloaded.
    if let Some(done) = just_downloaded
        && !ready
    {
        notes.push(EventNote {
            warning: false,
            reason: Reason::Downloaded,
            message: done.message.clone(),
        });
    }
    if !same && (bad_news || ready) {
        let mut message = format!("{phase}: {}", new.message.clone().unwrap_or_default());
        if let Some(done) = just_downloaded.filter(|_| ready) {
            message.push_str(&format!("; {}", done.message));
        }
        notes.push(EventNote {
            warning: bad_news,
            reason,
            message,
        });
    }
    notes
}
