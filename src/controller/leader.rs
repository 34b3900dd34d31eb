//! Leader election through a `coordination.k8s.io/v1` Lease, so several replicas run
//! safely: only the holder reconciles. Optimistic concurrency (the Lease's
//! `resourceVersion`) decides races: a replica whose write conflicts is not the leader.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// The result of one election round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This replica took the Lease (it was absent, expired or released).
    Acquired,
    /// This replica held the Lease and renewed it.
    Renewed,
    /// Another replica holds a live Lease.
    HeldBy(String),
}

impl Leadership {
    /// True when this replica leads.
    pub fn is_leader(&self) -> bool {
        !matches!(self, Leadership::HeldBy(_))
    }
}

/// One replica's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// `identity` is unique per replica (the pod name); `duration` how long a holder
    /// that stops renewing keeps the Lease.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// How often to call [`LeaseLock::try_acquire_or_renew`]: a third of the duration.
    pub fn retry_period(&self) -> Duration {
        self.duration / 3
    }

    /// Creates the Lease if absent, renews it if held, takes it over if expired.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<Leadership, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Leadership::Acquired),
                Err(e) if is_conflict(&e) => Ok(Leadership::HeldBy("another replica".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let (next, result) = if holder == self.identity {
            let acquired = spec.acquire_time.map_or(now, |t| t.0);
            let transitions = spec.lease_transitions.unwrap_or(0);
            (self.spec(acquired, now, transitions), Leadership::Renewed)
        } else if holder.is_empty() || expired(&spec, now) {
            let transitions = spec.lease_transitions.unwrap_or(0) + 1;
            (self.spec(now, now, transitions), Leadership::Acquired)
        } else {
            return Ok(Leadership::HeldBy(holder));
        };
        let updated = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(next),
        };
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(result),
            Err(e) if is_conflict(&e) => Ok(Leadership::HeldBy(holder)),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// A Lease whose holder has not renewed within its duration.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed + jiff::SignedDuration::from_secs(secs) < now
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
