//! Leader election over a `coordination.k8s.io/v1` Lease: only the
//! holder schedules and commits.
//!
//! [`decide`] is pure: from the Lease as read, who we are and how long we have seen its
//! record unchanged, it says whether to create, take over, renew or follow. [`LeaderElector`]
//! acts on it: one read and at most one write per round, every write a `replace` carrying the
//! `resourceVersion` it read, so two replicas racing for an expired Lease cannot both win
//! (the loser gets 409 Conflict).
//!
//! Expiry is decided as client-go decides it: never by comparing the holder's `renewTime` (its
//! clock) with ours, but by how long *we* have observed the same record (holder, renew and
//! acquire times, transitions) on our own monotonic clock. A follower whose clock is ahead of
//! the holder's by more than the lease duration therefore still follows a holder that renews.
//!
//! # Guarantees
//! The shared `leader` flag is true only between a successful acquire/renew and the moment
//! the Lease could expire by any follower's observation (the start of that round plus
//! `leaseDuration − a renew period of margin`, on our monotonic clock); it turns false on any
//! failed round past that point, on a lost race and when another holder shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::clock::Clock;

/// What to do with the Lease this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew (update `renewTime`).
    Renew,
    /// Free or expired: take it over (`leaseTransitions` + 1).
    Acquire,
    /// Someone else holds it and it is not expired.
    Follow { holder: String },
}

fn micro(t: &MicroTime) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()).unwrap_or_default()
}

fn micro_time(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// What identifies one renewal of a Lease: a change of any part means the holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    holder: String,
    renew: Option<DateTime<Utc>>,
    acquire: Option<DateTime<Utc>>,
    transitions: i32,
}

impl LeaseRecord {
    pub fn of(spec: &LeaseSpec) -> Self {
        LeaseRecord {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew: spec.renew_time.as_ref().map(micro),
            acquire: spec.acquire_time.as_ref().map(micro),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// The decision for `identity` given the Lease's spec (`None`: no Lease) and how long we have
/// observed its current record unchanged (`unchanged_for`, on our own monotonic clock).
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .unwrap_or(default_duration);
    if unchanged_for < duration {
        LeaseDecision::Follow {
            holder: holder.to_string(),
        }
    } else {
        LeaseDecision::Acquire
    }
}

/// Why a round failed. `reason()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl LeaseError {
    pub fn reason(&self) -> &'static str {
        match self {
            LeaseError::Api { .. } => "LeaseUnavailable",
        }
    }
}

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// Time between rounds.
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Runs election rounds and publishes leadership in a shared flag.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    clock: Arc<dyn Clock>,
    leader: Arc<AtomicBool>,
    /// Until when our last successful write keeps the Lease ours (monotonic).
    valid_until: Option<Instant>,
    /// The record we last read and when we first saw it (monotonic).
    observed: Option<(LeaseRecord, Instant)>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig, clock: Arc<dyn Clock>) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock,
            leader: Arc::new(AtomicBool::new(false)),
            valid_until: None,
            observed: None,
        }
    }

    /// The flag that is true while this replica leads.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.leader.clone()
    }

    fn err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn spec(&self, now: DateTime<Utc>, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| micro_time(now))),
            renew_time: Some(micro_time(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: read, decide, write. Returns whether we lead afterwards.
    ///
    /// # Errors
    /// The API failed (leadership is kept only while the last renewal is still valid).
    pub async fn round(&mut self) -> Result<bool, LeaseError> {
        let now = self.clock.now();
        let started = Instant::now();
        let result = self.try_round(now, started).await;
        let leads = match &result {
            Ok(true) => {
                // Followers count the duration from when they see our write, which is after
                // this round started: measured from here, with a renew period of margin.
                let margin = self.config.renew_every;
                self.valid_until = Some(started + self.config.duration.saturating_sub(margin));
                true
            }
            Ok(false) => {
                self.valid_until = None;
                false
            }
            Err(_) => self.valid_until.is_some_and(|t| t > Instant::now()),
        };
        if leads != self.leader.swap(leads, Ordering::SeqCst) {
            if leads {
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
            } else {
                tracing::warn!(lease = %self.config.name, identity = %self.config.identity, "lost leadership; stopped writing");
            }
        }
        result.map(|_| leads)
    }

    async fn try_round(
        &mut self,
        now: DateTime<Utc>,
        seen_at: Instant,
    ) -> Result<bool, LeaseError> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        // How long we have seen this record unchanged, by our own clock.
        let unchanged_for = match spec.map(LeaseRecord::of) {
            Some(record) => match &self.observed {
                Some((seen, since)) if *seen == record => seen_at.saturating_duration_since(*since),
                _ => {
                    self.observed = Some((record, seen_at));
                    Duration::ZERO
                }
            },
            None => {
                self.observed = None;
                Duration::ZERO
            }
        };
        let decision = decide(
            spec,
            &self.config.identity,
            unchanged_for,
            self.config.duration,
        );
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists());
        match (decision, current) {
            (LeaseDecision::Follow { .. }, _) => Ok(false),
            (LeaseDecision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
            (decision, Some(mut lease)) => {
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == LeaseDecision::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    self.spec(now, None, transitions + 1)
                });
                // `replace` sends the resourceVersion we read: a concurrent writer wins.
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
            (_, None) => Ok(false),
        }
    }

    /// Rounds forever, every `renew_every`.
    pub async fn run(mut self) {
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(reason = e.reason(), error = %e, "leader election round failed");
            }
            tokio::time::sleep(self.config.renew_every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn held_by(holder: &str, renewed: DateTime<Utc>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(micro_time(renewed)),
            ..LeaseSpec::default()
        }
    }

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, s).unwrap()
    }

    const D: Duration = Duration::from_secs(15);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed() {
        assert_eq!(decide(None, "a", secs(0), D), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&held_by("a", t(0))), "a", secs(40), D),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn another_holders_lease_is_followed_until_we_see_it_unrenewed_for_its_duration() {
        let lease = held_by("b", t(0));
        assert_eq!(
            decide(Some(&lease), "a", secs(14), D),
            LeaseDecision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease), "a", secs(15), D),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn a_holder_whose_clock_lags_ours_is_followed_while_it_renews() {
        // The holder's clock is an hour behind: its renewTime looks an hour old to us. Judged by
        // renewTime, we would take over a live Lease (two leaders); judged by how long we have
        // seen the record unchanged, we follow.
        let lagging = held_by("b", t(0) - chrono::Duration::hours(1));
        assert_eq!(
            decide(Some(&lagging), "a", secs(1), D),
            LeaseDecision::Follow { holder: "b".into() }
        );
        // A holder whose clock is ahead does not keep a dead Lease alive either.
        let ahead = held_by("b", t(0) + chrono::Duration::hours(1));
        assert_eq!(
            decide(Some(&ahead), "a", secs(16), D),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn a_renewal_is_any_change_of_the_record() {
        let a = LeaseRecord::of(&held_by("b", t(0)));
        assert_eq!(a, LeaseRecord::of(&held_by("b", t(0))));
        assert_ne!(a, LeaseRecord::of(&held_by("b", t(1))));
        assert_ne!(a, LeaseRecord::of(&held_by("c", t(0))));
    }

    #[test]
    fn a_released_or_never_renewed_lease_is_taken_over() {
        let mut lease = held_by("", t(0));
        assert_eq!(
            decide(Some(&lease), "a", secs(1), D),
            LeaseDecision::Acquire
        );
        lease.holder_identity = Some("b".into());
        lease.renew_time = None;
        // Never renewed, but held: followed for its duration like any record.
        assert!(matches!(
            decide(Some(&lease), "a", secs(1), D),
            LeaseDecision::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&lease), "a", secs(15), D),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn lease_duration_defaults_to_ours_when_unset() {
        let mut lease = held_by("b", t(0));
        lease.lease_duration_seconds = None;
        assert!(matches!(
            decide(Some(&lease), "a", secs(10), D),
            LeaseDecision::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&lease), "a", secs(16), D),
            LeaseDecision::Acquire
        );
    }
}
