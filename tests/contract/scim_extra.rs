//! SCIM-only behaviours, against the real scim2-server and django-scim2. Retries are the
//! retry layer's (connectors::retry), run here as the apply engine runs them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use latchkey::connectors::scim::{MemberRemove, RemoveShape, ScimConfig, ScimConnector};
use latchkey::connectors::{Completeness, Connector, ErrorClass, Op, Secret};
use serde_json::Value;

use crate::peers::scim::ScimServer;
use crate::proxy::{Fault, FaultProxy, Rule};

fn connector(server: &ScimServer, page_size: usize, max_pages: usize) -> ScimConnector {
    let mut c = ScimConfig::new(&server.base);
    c.page_size = page_size;
    c.max_pages = max_pages;
    c.retry_base = Duration::from_millis(20);
    ScimConnector::new(c, Some(Secret::new(server.token.clone()))).expect("connector")
}

/// A server with more pages than `maxPages` allows yields a Partial read, never a short
/// Complete one; with room for every page the same read is Complete.
#[tokio::test]
async fn page_limit_guard_yields_partial() {
    let server = match ScimServer::start("guard") {
        Ok(s) => s,
        Err(why) => {
            crate::peers::unavailable("scim2-server", &why);
            return;
        }
    };
    let full = connector(&server, 3, 1000);
    for i in 0..10 {
        full.apply(&Op::CreateAccount {
            identity: format!("g{i}@client.example"),
            display_name: None,
        })
        .await
        .expect("create");
    }
    let snap = full.read().await.expect("read");
    assert_eq!(snap.completeness, Completeness::Complete);
    assert_eq!(snap.managed.len(), 10);

    let guarded = connector(&server, 3, 2);
    let snap = guarded.read().await.expect("read");
    match snap.completeness {
        Completeness::Partial(reason) => {
            assert!(reason.contains("maxPages"), "{reason}");
            assert_eq!(
                snap.managed.len(),
                6,
                "what was read is kept, marked partial"
            );
        }
        Completeness::Complete => panic!("a read stopped by the page guard is not Complete"),
    }
}

/// The server, or None when it cannot start and peers are optional (fails in CI).
fn start(tenant: &str) -> Option<ScimServer> {
    match ScimServer::start(tenant) {
        Ok(s) => Some(s),
        Err(why) => {
            crate::peers::unavailable("scim2-server", &why);
            None
        }
    }
}

/// A connector to `server` whose requests pass through `proxy`, with quick backoff so
/// only the server's Retry-After makes it wait.
fn via(server: &ScimServer, proxy: &FaultProxy, max_retries: u32) -> ScimConnector {
    let base = server.base.replace(
        &format!(":{}/", server.port),
        &format!(":{}/", proxy.addr.port()),
    );
    let mut c = ScimConfig::new(base);
    c.max_retries = max_retries;
    c.retry_base = Duration::from_millis(20);
    c.timeout = Duration::from_secs(10);
    ScimConnector::new(c, Some(Secret::new(server.token.clone()))).expect("connector")
}

fn upstream(server: &ScimServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// GET straight from the server, around the proxy and the connector.
async fn direct(server: &ScimServer, path_and_query: &str) -> Value {
    direct_call(server, reqwest::Method::GET, path_and_query, None).await
}

/// A request straight to the server; Null for an empty answer.
async fn direct_call(
    server: &ScimServer,
    method: reqwest::Method,
    path_and_query: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path_and_query}", server.base))
        .bearer_auth(&server.token);
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("direct request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn create(who: &str) -> Op {
    Op::CreateAccount {
        identity: who.into(),
        display_name: None,
    }
}

fn grant(who: &str, role: &str) -> Op {
    Op::AddEntitlement {
        identity: who.into(),
        entitlement: role.into(),
    }
}

/// The user `email` and the names of the groups holding it, as the server has them.
async fn on_server(server: &ScimServer, email: &str) -> Option<(Value, Vec<String>)> {
    let f = urlencoding::encode(&format!("userName eq \"{email}\"")).into_owned();
    let users = direct(server, &format!("/Users?filter={f}")).await;
    let user = users["Resources"].as_array()?.first()?.clone();
    let id = user["id"].as_str()?.to_string();
    // Every group, matched here: django-scim2 does not filter on members.value.
    let groups = direct(server, "/Groups?count=1000").await;
    let mut names: Vec<String> = groups["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| {
            g["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["value"] == id.as_str()))
        })
        .filter_map(|g| g["displayName"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Some((user, names))
}

/// `op` through the one retry layer, with the connector's policy, as the apply engine runs it.
async fn retried(c: &ScimConnector, op: &Op) -> Result<(), latchkey::connectors::ConnectorError> {
    let policy = c.retry().expect("scim has a retry policy");
    policy.run("apply", || c.apply(op)).await.0
}

async fn apply(c: &ScimConnector, op: Op) {
    if let Err(e) = retried(c, &op).await {
        panic!("{op:?} failed: {e} ({:?})", e.class);
    }
}

async fn create_and_grant(c: &ScimConnector, who: &str, role: &str) {
    apply(c, create(who)).await;
    apply(c, grant(who, role)).await;
}

/// Ids resolved by earlier changes are reused: a grant of a known role to a person
/// created in the same apply is one PATCH, with no filter lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_ids_are_reused() {
    let Some(server) = start("reuse") else {
        return;
    };
    let proxy = FaultProxy::start(
        upstream(&server),
        Fault {
            status: "500 Internal Server Error",
            retry_after: None,
            rule: Rule::First(0),
            after_forwarding: false,
        },
    )
    .await;
    let c = via(&server, &proxy, 0);
    create_and_grant(&c, "first@client.example", "shared-role").await;
    apply(&c, create("second@client.example")).await;
    let before = proxy.seen().len();
    apply(&c, grant("second@client.example", "shared-role")).await;
    let lines: Vec<String> = proxy.seen()[before..]
        .iter()
        .map(|(l, _)| l.clone())
        .collect();
    // The PATCH, and the read-back of the first PATCH add of this connector (scim2-server
    // answers 204, so only a read shows the member was added).
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with("PATCH ") && lines[0].contains("/Groups/"));
    assert!(lines[1].starts_with("GET ") && lines[1].contains("/Groups/"));
    // Proven once: the next add of this kind is one PATCH.
    apply(&c, create("third@client.example")).await;
    let before = proxy.seen().len();
    apply(&c, grant("third@client.example", "shared-role")).await;
    assert_eq!(
        proxy.seen().len() - before,
        1,
        "{:#?}",
        &proxy.seen()[before..]
    );
    // A read starts afresh for users, and fills in the roles it saw.
    c.read().await.expect("read");
    let before = proxy.seen().len();
    apply(&c, grant("first@client.example", "other-role")).await;
    apply(&c, grant("second@client.example", "other-role")).await;
    let lines: Vec<String> = proxy.seen()[before..]
        .iter()
        .map(|(l, _)| l.split('?').next().unwrap_or_default().to_string())
        .collect();
    let methods: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    // first: user lookup, group lookup, group POST; second: user lookup, PATCH.
    assert_eq!(
        methods,
        ["GET", "GET", "POST", "GET", "PATCH"],
        "{lines:#?}"
    );
}

/// Ids cached earlier that the server no longer knows (deleted and re-created elsewhere)
/// answer 404 and are resolved again: the change lands on the live objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cached_ids_are_resolved_again() {
    let Some(server) = start("stale") else {
        return;
    };
    let mut config = ScimConfig::new(&server.base);
    config.retry_base = Duration::from_millis(20);
    let c = ScimConnector::new(config, Some(Secret::new(server.token.clone()))).expect("connector");
    create_and_grant(&c, "one@client.example", "moving-role").await;
    apply(&c, create("two@client.example")).await;

    // Elsewhere: the role's group is deleted, and two's user deleted and re-created.
    let f = urlencoding::encode("displayName eq \"moving-role\"").into_owned();
    let groups = direct(&server, &format!("/Groups?filter={f}")).await;
    let gid = groups["Resources"][0]["id"]
        .as_str()
        .expect("group id")
        .to_string();
    direct_call(
        &server,
        reqwest::Method::DELETE,
        &format!("/Groups/{gid}"),
        None,
    )
    .await;
    let (old, _) = on_server(&server, "two@client.example").await.expect("two");
    let old_id = old["id"].as_str().expect("user id").to_string();
    direct_call(
        &server,
        reqwest::Method::DELETE,
        &format!("/Users/{old_id}"),
        None,
    )
    .await;
    direct_call(
        &server,
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "two@client.example",
            "externalId": "latchkey:two@client.example",
            "active": true,
        })),
    )
    .await;

    // The disable meets 404 on the cached user id and resolves the new one, which the
    // grant then uses. (A grant alone could not tell: servers accept a dangling member,
    // which is why user ids are only cached within one apply.)
    apply(
        &c,
        Op::DisableAccount {
            identity: "two@client.example".into(),
        },
    )
    .await;
    apply(&c, grant("two@client.example", "moving-role")).await;
    let (user, groups) = on_server(&server, "two@client.example").await.expect("two");
    assert_ne!(user["id"], old_id.as_str(), "the re-created user");
    assert_eq!(user["active"], false, "disabled through its new id");
    assert_eq!(groups, vec!["moving-role".to_string()], "in a live group");
}

/// 429 with `Retry-After: 1` on the first two requests: the change still lands, after
/// waiting the server's Retry-After each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_retried_after_retry_after() {
    let Some(server) = start("ratelimit") else {
        return;
    };
    let proxy = FaultProxy::start(
        upstream(&server),
        Fault {
            status: "429 Too Many Requests",
            retry_after: Some("1"),
            rule: Rule::First(2),
            after_forwarding: false,
        },
    )
    .await;
    let c = via(&server, &proxy, 4);
    let who = "limited@client.example";
    let started = Instant::now();
    create_and_grant(&c, who, "limited-role").await;
    let elapsed = started.elapsed();

    let seen = proxy.seen();
    // The user lookup three times (429, 429, answered), the POST of the user, the
    // group lookup and the POST of the group with its first member.
    assert_eq!(seen.len(), 6, "{seen:#?}");
    assert_eq!(proxy.faulted(), 2, "{seen:#?}");
    assert!(seen[..3].iter().all(|(line, _)| line.starts_with("GET ")));
    // Lower bound only: two waits of at least the Retry-After each.
    assert!(
        elapsed >= Duration::from_millis(1900),
        "waited {elapsed:?}, less than 2 x Retry-After"
    );
    let (user, groups) = on_server(&server, who)
        .await
        .expect("the user is on the server");
    assert_eq!(user["externalId"], "latchkey:limited@client.example");
    assert_eq!(groups, vec!["limited-role".to_string()]);
}

/// 503 with `Retry-After: 1` on a group POST: the change is retried as a whole (the one
/// retry layer retries changes, not requests), after the Retry-After, and the group is
/// created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_post_is_retried_without_duplicates() {
    let Some(server) = start("unavailable") else {
        return;
    };
    let proxy = FaultProxy::start(
        upstream(&server),
        Fault {
            status: "503 Service Unavailable",
            retry_after: Some("1"),
            rule: Rule::Every(4),
            after_forwarding: false,
        },
    )
    .await;
    let c = via(&server, &proxy, 4);
    let who = "flaky@client.example";
    let started = Instant::now();
    create_and_grant(&c, who, "flaky-role").await;
    let elapsed = started.elapsed();

    let seen = proxy.seen();
    let lines: Vec<(&str, bool)> = seen
        .iter()
        .map(|(l, f)| (l.split(' ').next().unwrap_or_default(), *f))
        .collect();
    // Create: user lookup, user POST. Grant: group lookup, group POST (503); again: group
    // lookup, group POST (201, with the member in its body: no read-back needed).
    assert_eq!(
        lines,
        [
            ("GET", false),
            ("POST", false),
            ("GET", false),
            ("POST", true),
            ("GET", false),
            ("POST", false)
        ],
        "{seen:#?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "waited {elapsed:?}, less than the Retry-After"
    );
    let (user, groups) = on_server(&server, who)
        .await
        .expect("the user is on the server");
    assert_eq!(user["active"], true);
    assert_eq!(groups, vec!["flaky-role".to_string()]);
    let f = urlencoding::encode("displayName eq \"flaky-role\"").into_owned();
    let same_name = direct(&server, &format!("/Groups?filter={f}")).await;
    assert_eq!(same_name["totalResults"], 1, "one group for the role");
}

/// A 502 that arrives after the server made the change (the gateway gave up, the backend
/// committed): the retried POST meets 409 and the connector recognises its own user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_after_a_committed_post_is_not_a_failure() {
    let Some(server) = start("committed") else {
        return;
    };
    let proxy = FaultProxy::start(
        upstream(&server),
        Fault {
            status: "502 Bad Gateway",
            retry_after: None,
            // The user lookup gets through; the user POST is made, then answered 502.
            rule: Rule::Every(2),
            after_forwarding: true,
        },
    )
    .await;
    let c = via(&server, &proxy, 4);
    let who = "committed@client.example";
    retried(
        &c,
        &Op::CreateAccount {
            identity: who.into(),
            display_name: None,
        },
    )
    .await
    .expect("create succeeds although its POST was answered 502");
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|(line, faulted)| *faulted && line.starts_with("POST ")),
        "{seen:#?}"
    );
    let f = urlencoding::encode(&format!("userName eq \"{who}\"")).into_owned();
    let users = direct(&server, &format!("/Users?filter={f}")).await;
    assert_eq!(users["totalResults"], 1, "created once: {users}");
    assert_eq!(
        users["Resources"][0]["externalId"],
        format!("latchkey:{who}")
    );
}

/// A 429 that never ends: after the retry budget the change fails as Transient (retried
/// by the next apply), with a message that names the status and never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_rate_limit_is_transient_after_the_retry_budget() {
    crate::suite::init_log_capture();
    let Some(server) = start("persistent") else {
        return;
    };
    let proxy = FaultProxy::start(
        upstream(&server),
        Fault {
            status: "429 Too Many Requests",
            retry_after: Some("1"),
            rule: Rule::Always,
            after_forwarding: false,
        },
    )
    .await;
    let c = via(&server, &proxy, 2);
    let who = "never@client.example";
    let started = Instant::now();
    let err = retried(
        &c,
        &Op::CreateAccount {
            identity: who.into(),
            display_name: None,
        },
    )
    .await
    .expect_err("a server that always answers 429 cannot be written to");
    let elapsed = started.elapsed();
    assert_eq!(err.class, ErrorClass::Transient, "{err}");
    assert!(err.message.contains("429"), "names the status: {err}");
    assert!(err.message.contains("after 3 attempts"), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&server.token), "token leaked: {shown}");
    assert!(
        !crate::suite::captured_log().contains(&server.token),
        "token in logs"
    );
    // maxRetries 2: three attempts, two waits of at least the Retry-After.
    assert_eq!(proxy.seen().len(), 3, "{:#?}", proxy.seen());
    assert!(elapsed >= Duration::from_millis(1900), "waited {elapsed:?}");
    assert!(
        on_server(&server, who).await.is_none(),
        "nothing reached the server"
    );
}

/// django-scim2, or None when it cannot start and peers are optional (fails in CI).
fn start_django() -> Option<ScimServer> {
    match ScimServer::start_django() {
        Ok(s) => Some(s),
        Err(why) => {
            crate::peers::unavailable("django-scim2", &why);
            None
        }
    }
}

/// A proxy that only counts: it faults no request.
async fn counting_proxy(server: &ScimServer) -> FaultProxy {
    FaultProxy::start(
        upstream(server),
        Fault {
            status: "500 Internal Server Error",
            retry_after: None,
            rule: Rule::First(0),
            after_forwarding: false,
        },
    )
    .await
}

/// Request lines seen by the proxy since `from`, without their query strings.
fn lines_since(proxy: &FaultProxy, from: usize) -> Vec<String> {
    proxy.seen()[from..]
        .iter()
        .map(|(l, _)| l.split('?').next().unwrap_or_default().to_string())
        .collect()
}

/// django-scim2 (a real server, no shim) answers 501 to the RFC 7644 filtered remove
/// (`members[value eq "…"]`) and accepts the value-array remove Entra ID and Okta send, and
/// ignores `members` in a group POST. The grant still lands (added by PATCH after the
/// read-back showed the POST without it); the revocation falls back on the 501 once, is
/// never retried (a 501 is permanent: one attempt, not ~20), and the next one uses the
/// shape that worked straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_implemented_filtered_remove_falls_back_to_the_value_array_once() {
    let Some(server) = start_django() else {
        return;
    };
    let proxy = counting_proxy(&server).await;
    let c = via(&server, &proxy, 4);
    let (ann, ben) = ("ann@client.example", "ben@client.example");
    create_and_grant(&c, ann, "team").await;
    create_and_grant(&c, ben, "team").await;
    assert_eq!(on_server(&server, ann).await.expect("ann").1, ["team"]);
    assert_eq!(on_server(&server, ben).await.expect("ben").1, ["team"]);

    let revoke = |who: &str| Op::RemoveEntitlement {
        identity: who.into(),
        entitlement: "team".into(),
    };
    let policy = c.retry().expect("policy");
    let before = proxy.seen().len();
    let op = revoke(ann);
    let (result, attempts) = policy.run("apply", || c.apply(&op)).await;
    result.expect("revoked through the value-array shape");
    assert_eq!(attempts, 1, "nothing was retried");
    let patches: Vec<String> = lines_since(&proxy, before)
        .into_iter()
        .filter(|l| l.starts_with("PATCH "))
        .collect();
    assert_eq!(
        patches.len(),
        2,
        "the 501, then the value array: {patches:#?}"
    );
    assert_eq!(
        on_server(&server, ann).await.expect("ann").1,
        Vec::<String>::new()
    );
    assert_eq!(
        on_server(&server, ben).await.expect("ben").1,
        ["team"],
        "the other member stays"
    );

    let before = proxy.seen().len();
    apply(&c, revoke(ben)).await;
    let patches: Vec<String> = lines_since(&proxy, before)
        .into_iter()
        .filter(|l| l.starts_with("PATCH "))
        .collect();
    assert_eq!(patches.len(), 1, "the learned shape first: {patches:#?}");
    assert_eq!(
        on_server(&server, ben).await.expect("ben").1,
        Vec::<String>::new()
    );
}

/// `memberRemove: filtered` on a server that answers it 501: the revocation fails as
/// permanent after one request (no retry), names the setting, and the member stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_filtered_remove_on_a_501_server_fails_permanently_at_once() {
    let Some(server) = start_django() else {
        return;
    };
    let proxy = counting_proxy(&server).await;
    let mut config = via(&server, &proxy, 4).config().clone();
    config.member_remove = MemberRemove::Only(RemoveShape::Filtered);
    let c = ScimConnector::new(config, Some(Secret::new(server.token.clone()))).expect("connector");
    let who = "cal@client.example";
    create_and_grant(&c, who, "ops").await;
    let before = proxy.seen().len();
    let started = Instant::now();
    let op = Op::RemoveEntitlement {
        identity: who.into(),
        entitlement: "ops".into(),
    };
    let (result, attempts) = c
        .retry()
        .expect("policy")
        .run("apply", || c.apply(&op))
        .await;
    let err = result.expect_err("the server does not implement the filtered remove");
    assert_eq!(err.class, ErrorClass::Permanent, "{err}");
    assert_eq!(attempts, 1);
    assert!(err.message.contains("501"), "{err}");
    assert!(err.message.contains("connection.memberRemove"), "{err}");
    let patches = lines_since(&proxy, before)
        .into_iter()
        .filter(|l| l.starts_with("PATCH "))
        .count();
    assert_eq!(patches, 1, "one request, not ~20");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no backoff waits"
    );
    assert_eq!(on_server(&server, who).await.expect("cal").1, ["ops"]);
}
