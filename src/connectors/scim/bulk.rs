//! SCIM Bulk (RFC 7644 §3.7): where the server's `ServiceProviderConfig` advertises
//! `bulk.supported`, a batch's creates and membership changes go out as one `POST /Bulk`
//! per `maxOperations` (and `maxPayloadSize`) instead of a request each.
//!
//! Only changes whose request needs no look-up are bulked: a create of a user this
//! connector has not resolved, and an add or remove of a member whose user and group ids
//! are known (the batch's groups are looked up first; removes also need the removal shape
//! the server was seen to take). An identity with any other change in the batch (enable,
//! disable, delete, an unresolved user) goes the one-by-one way whole, so one person's
//! changes keep their plan order. Each bulked change is read by its own status:
//! - a 2xx is checked as a single request's is (the first change of each kind is read
//!   back, [`ScimConnector::holds`]);
//! - anything else, or a Bulk request that failed whole (an error, a cut connection, an
//!   answer without the operation), is sent again one by one, where the single path's
//!   handling (a 409 for a user created meanwhile, a group deleted since, the error
//!   classes the retry layer reads) decides. Every bulked request is idempotent or
//!   detects its own repeat (a create answered 409 is looked up), so a repeat is safe.
//!
//! A server that answers `/Bulk` with 404 or 501 despite its configuration is remembered
//! as without Bulk.

use std::collections::{BTreeMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    ConnectorError, GROUP_SCHEMA, MemberRemove, Op, Proof, RemoveShape, ScimConnector,
    add_members_body, ignored, remove_members_body, truthy, user_body,
};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// At most this many operations in one Bulk request, whatever the server allows.
const MAX_OPERATIONS: usize = 1000;

/// What the server takes in one Bulk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload: usize,
}

/// The Bulk limits a `ServiceProviderConfig` advertises; None without Bulk.
pub fn limits(config: &Value) -> Option<BulkLimits> {
    let bulk = config.get("bulk")?;
    if !bulk.get("supported").is_some_and(truthy) {
        return None;
    }
    let number = |key: &str| {
        bulk.get(key)
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    let max_operations = usize::try_from(number("maxOperations")?).ok()?;
    // Without a stated payload limit, stay under the 1 MiB most servers default to.
    let max_payload = number("maxPayloadSize").map_or(1 << 20, |n| n as usize);
    (max_operations > 0 && max_payload > 0).then_some(BulkLimits {
        max_operations: max_operations.min(MAX_OPERATIONS),
        max_payload,
    })
}

/// A change as one Bulk operation.
#[derive(Debug)]
enum Bulked {
    Create {
        email: String,
        data: Value,
    },
    Add {
        uid: String,
        gid: String,
    },
    Remove {
        uid: String,
        gid: String,
        shape: RemoveShape,
    },
}

impl Bulked {
    fn operation(&self, bulk_id: &str) -> Value {
        let (method, path, data) = match self {
            Bulked::Create { data, .. } => ("POST", "/Users".to_string(), data.clone()),
            Bulked::Add { uid, gid, .. } => {
                ("PATCH", format!("/Groups/{gid}"), add_members_body(uid))
            }
            Bulked::Remove { uid, gid, shape } => (
                "PATCH",
                format!("/Groups/{gid}"),
                remove_members_body(*shape, uid),
            ),
        };
        json!({"method": method, "path": path, "bulkId": bulk_id, "data": data})
    }
}

/// One operation's answer in a Bulk response.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    response: Value,
}

impl ScimConnector {
    /// The server's Bulk limits, read from `/ServiceProviderConfig` once per connector
    /// (a failed read is asked again next time); None without Bulk.
    pub(super) async fn bulk_limits(&self) -> Option<BulkLimits> {
        if let Some(known) = self.learned().bulk {
            return known;
        }
        let found = match self.call(Method::GET, "/ServiceProviderConfig", None).await {
            Ok((status, body)) if status.is_success() => limits(&body),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the SCIM ServiceProviderConfig; no Bulk for now");
                return None;
            }
        };
        self.learned().bulk = Some(found);
        found
    }

    /// Applies a batch with Bulk where it can (see the module docs); None when the
    /// server has no Bulk.
    pub(super) async fn apply_bulk(&self, ops: &[Op]) -> Option<Vec<Result<(), ConnectorError>>> {
        let limits = self.bulk_limits().await?;
        self.resolve_groups(ops).await;
        let mut bulked: Vec<Option<Bulked>> = Vec::with_capacity(ops.len());
        for op in ops {
            bulked.push(self.bulked(op).await);
        }
        let one_by_one: HashSet<String> = ops
            .iter()
            .zip(&bulked)
            .filter(|(_, b)| b.is_none())
            .map(|(op, _)| op.identity().to_lowercase())
            .collect();
        let mut send: Vec<(usize, Bulked)> = Vec::new();
        for (i, (op, b)) in ops.iter().zip(bulked).enumerate() {
            if let Some(b) = b
                && !one_by_one.contains(&op.identity().to_lowercase())
            {
                send.push((i, b));
            }
        }
        let mut out: Vec<Option<Result<(), ConnectorError>>> = vec![None; ops.len()];
        for chunk in chunks(send, limits) {
            let Some(answers) = self.post_bulk(&chunk).await else {
                continue;
            };
            for ((i, b), answer) in chunk.iter().zip(answers) {
                if let Some(answer) = answer {
                    out[*i] = self.settle(b, answer).await;
                }
            }
        }
        // The rest, and every bulked change that did not land, one by one in plan order.
        let mut results = Vec::with_capacity(ops.len());
        for (op, done) in ops.iter().zip(out) {
            results.push(match done {
                Some(r) => r,
                None => self.apply_one(op).await,
            });
        }
        Some(results)
    }

    /// Looks up (and caches) every group the batch's membership changes name, and
    /// creates, empty, the groups its additions need that do not exist yet (as a first
    /// grant would). A group that can be neither found nor made now is left to the
    /// one-by-one path, which says why.
    async fn resolve_groups(&self, ops: &[Op]) {
        let mut groups: BTreeMap<&str, bool> = BTreeMap::new();
        for op in ops {
            match op {
                Op::AddEntitlement { entitlement, .. } => {
                    groups.insert(entitlement, true);
                }
                Op::RemoveEntitlement { entitlement, .. } => {
                    groups.entry(entitlement).or_insert(false);
                }
                _ => {}
            }
        }
        for (group, needed) in groups {
            match self.find_group(group).await {
                Ok(None) if needed => {
                    if let Err(e) = self.create_group(group).await {
                        tracing::debug!(error = %e, group, "cannot create the SCIM group for Bulk");
                    }
                }
                _ => {}
            }
        }
    }

    /// Creates the empty group `name` (or finds the one created meanwhile) and caches
    /// its id, holding the cache's lock so that concurrent grants create one group.
    async fn create_group(&self, name: &str) -> Result<(), ConnectorError> {
        let mut cache = self.groups.lock().await;
        if cache.contains_key(name) {
            return Ok(());
        }
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        let (status, created) = self
            .expect(
                Method::POST,
                "/Groups",
                Some(&body),
                &[StatusCode::CONFLICT],
            )
            .await?;
        let id = if status == StatusCode::CONFLICT {
            self.lookup_group(name).await?
        } else {
            created
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if let Some(id) = id {
            cache.insert(name.to_string(), id);
        }
        Ok(())
    }

    /// The change as a Bulk operation, when its request needs no look-up.
    async fn bulked(&self, op: &Op) -> Option<Bulked> {
        let email = op.identity().to_lowercase();
        match op {
            Op::CreateAccount { display_name, .. } if self.cached_user(&email).is_none() => {
                let data = user_body(&email, display_name.as_deref());
                Some(Bulked::Create { email, data })
            }
            Op::AddEntitlement { entitlement, .. } => Some(Bulked::Add {
                uid: self.cached_user(&email)?,
                gid: self.groups.lock().await.get(entitlement)?.clone(),
            }),
            Op::RemoveEntitlement { entitlement, .. } => {
                let shape = match (self.config.member_remove, self.learned().remove) {
                    (MemberRemove::Only(shape), _) | (MemberRemove::Auto, Some(shape)) => shape,
                    (MemberRemove::Auto, None) => return None,
                };
                Some(Bulked::Remove {
                    uid: self.cached_user(&email)?,
                    gid: self.groups.lock().await.get(entitlement)?.clone(),
                    shape,
                })
            }
            _ => None,
        }
    }

    /// Sends one Bulk request; each operation's answer, None where the response has
    /// none; None for all when the request failed whole.
    async fn post_bulk(&self, chunk: &[(usize, Bulked)]) -> Option<Vec<Option<Answer>>> {
        let operations: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(k, (_, b))| b.operation(&bulk_id(k)))
            .collect();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": operations});
        let (status, answer) = match self.call(Method::POST, "/Bulk", Some(&body)).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "SCIM Bulk request failed; sending its changes one by one");
                return None;
            }
        };
        if status == StatusCode::NOT_FOUND || status == StatusCode::NOT_IMPLEMENTED {
            tracing::warn!(%status, "the SCIM server advertises Bulk but refuses /Bulk; not using it");
            self.learned().bulk = Some(None);
            return None;
        }
        if !status.is_success() {
            tracing::warn!(%status, "SCIM Bulk request refused; sending its changes one by one");
            return None;
        }
        let answers: Vec<&Value> = answer
            .get("Operations")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let by_id = |k: usize| {
            let id = bulk_id(k);
            answers
                .iter()
                .find(|a| a.get("bulkId").and_then(Value::as_str) == Some(id.as_str()))
                .or_else(|| {
                    // Servers need not echo a bulkId on PATCH: then by position, when
                    // every operation has its answer.
                    (answers.len() == chunk.len())
                        .then(|| &answers[k])
                        .filter(|a| a.get("bulkId").is_none())
                })
                .copied()
        };
        Some(
            (0..chunk.len())
                .map(|k| by_id(k).and_then(answer_of))
                .collect(),
        )
    }

    /// A bulked change's result from its answer; None to send it again one by one.
    async fn settle(&self, b: &Bulked, answer: Answer) -> Option<Result<(), ConnectorError>> {
        match b {
            Bulked::Create { email, .. } => {
                if !answer.status.is_success() {
                    return None;
                }
                let id = answer
                    .response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| answer.location.as_deref().and_then(last_segment));
                if let Some(id) = id {
                    self.remember_user(email, &id);
                }
                Some(Ok(()))
            }
            Bulked::Add { uid, gid, .. } => {
                if !answer.status.is_success() {
                    return None;
                }
                Some(
                    match self.holds(gid, uid, &answer.response, Proof::Add).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(ignored(
                            &format!("/Groups/{gid}"),
                            answer.status,
                            "add",
                            uid,
                        )),
                        Err(e) => Err(e),
                    },
                )
            }
            Bulked::Remove { uid, gid, shape } => {
                let no_target =
                    answer.response.get("scimType").and_then(Value::as_str) == Some("noTarget");
                if answer.status == StatusCode::BAD_REQUEST && no_target {
                    return Some(Ok(()));
                }
                if !answer.status.is_success() {
                    return None;
                }
                Some(
                    match self
                        .holds(gid, uid, &answer.response, Proof::Remove(*shape))
                        .await
                    {
                        Ok(false) => Ok(()),
                        Ok(true) => Err(ignored(
                            &format!("/Groups/{gid}"),
                            answer.status,
                            "remove",
                            uid,
                        )),
                        Err(e) => Err(e),
                    },
                )
            }
        }
    }
}

fn bulk_id(k: usize) -> String {
    format!("lk{k}")
}

/// The answer of one operation: its status (a string by the RFC; a number or
/// `{"code": n}` from some servers), location and response.
fn answer_of(v: &Value) -> Option<Answer> {
    let status = v.get("status")?;
    let code = status
        .as_u64()
        .or_else(|| status.as_str()?.trim().parse().ok())
        .or_else(|| status.get("code")?.as_u64())?;
    Some(Answer {
        status: StatusCode::from_u16(u16::try_from(code).ok()?).ok()?,
        location: v
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string),
        response: v.get("response").cloned().unwrap_or(Value::Null),
    })
}

/// The id at the end of a resource's location URL.
fn last_segment(location: &str) -> Option<String> {
    let id = location.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// The changes in requests within the server's limits: at most `max_operations` each,
/// and under its payload limit (with room for the envelope).
fn chunks(send: Vec<(usize, Bulked)>, limits: BulkLimits) -> Vec<Vec<(usize, Bulked)>> {
    let budget = limits.max_payload.saturating_sub(1024).max(1);
    let mut out: Vec<Vec<(usize, Bulked)>> = Vec::new();
    let mut size = 0;
    for item in send {
        let len = item.1.operation(&bulk_id(MAX_OPERATIONS)).to_string().len() + 1;
        let full = out.last().is_none_or(|c| {
            c.len() >= limits.max_operations || (size + len > budget && !c.is_empty())
        });
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        out.last_mut().expect("pushed above").push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_service_provider_config() {
        let config =
            json!({"bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576}});
        assert_eq!(
            limits(&config),
            Some(BulkLimits {
                max_operations: 1000,
                max_payload: 1048576
            })
        );
        assert_eq!(
            limits(&json!({"bulk": {"supported": false, "maxOperations": 10}})),
            None
        );
        assert_eq!(
            limits(&json!({"bulk": {"supported": "True", "maxOperations": 0}})),
            None
        );
        assert_eq!(limits(&json!({"patch": {"supported": true}})), None);
        let strings = json!({"bulk": {"supported": "true", "maxOperations": "50000"}});
        assert_eq!(
            limits(&strings).map(|l| l.max_operations),
            Some(MAX_OPERATIONS)
        );
    }

    #[test]
    fn requests_stay_within_the_servers_limits() {
        let add = |k: usize| {
            (
                k,
                Bulked::Add {
                    uid: format!("u{k}"),
                    gid: "g".into(),
                },
            )
        };
        let by_count = chunks(
            (0..7).map(add).collect(),
            BulkLimits {
                max_operations: 3,
                max_payload: 1 << 20,
            },
        );
        assert_eq!(by_count.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        let one = add(0)
            .1
            .operation(&bulk_id(MAX_OPERATIONS))
            .to_string()
            .len()
            + 1;
        let by_size = chunks(
            (0..7).map(add).collect(),
            BulkLimits {
                max_operations: 1000,
                max_payload: 1024 + 2 * one,
            },
        );
        assert_eq!(
            by_size.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 1]
        );
    }

    #[test]
    fn statuses_are_read_in_every_spelling() {
        for v in [
            json!({"status": "201"}),
            json!({"status": 201}),
            json!({"status": {"code": 201}}),
        ] {
            assert_eq!(answer_of(&v).map(|a| a.status), Some(StatusCode::CREATED));
        }
        assert!(answer_of(&json!({"status": "created"})).is_none());
        assert_eq!(
            last_segment("http://h/v2/Users/abc/").as_deref(),
            Some("abc")
        );
    }
}
