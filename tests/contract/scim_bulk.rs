//! `scim` only: where the server advertises Bulk (scim2-server does, RFC 7644 §3.7), a
//! batch's creates and grants go out as Bulk requests (issue 21), and a change that fails
//! inside one still fails alone, with the one-by-one path's error.

use latchkey::connectors::scim::{ScimConfig, ScimConnector};
use latchkey::connectors::{Connector, Op, Secret};

use crate::peers::scim::ScimServer;
use crate::proxy::RecordingProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_grants_go_in_bulk_and_a_failure_stays_its_own() {
    let server = match ScimServer::start("bulk") {
        Ok(s) => s,
        Err(why) => {
            crate::peers::unavailable("scim2-server", &why);
            return;
        }
    };
    let relay = RecordingProxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap()).await;
    let base = format!("http://{}/bulk/v2", relay.addr);
    let c = ScimConnector::new(
        ScimConfig::new(&base),
        Some(Secret::new(server.token.clone())),
    )
    .unwrap();
    // Someone else's user, unmarked: latchkey's create of it must fail, alone.
    let http = reqwest::Client::new();
    let seeded = http
        .post(format!("{}/Users", server.base))
        .bearer_auth(&server.token)
        .header("Content-Type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"owner@acme.example"}"#)
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success(), "{}", seeded.status());

    c.read().await.expect("read");
    assert!(c.batch_size() > 1, "the advertised Bulk makes batches");
    let people: Vec<String> = (0..30).map(|i| format!("p{i:02}@acme.example")).collect();
    let mut creates: Vec<Op> = people
        .iter()
        .map(|p| Op::CreateAccount {
            identity: p.clone(),
            display_name: Some("Person".into()),
        })
        .collect();
    creates.push(Op::CreateAccount {
        identity: "owner@acme.example".into(),
        display_name: None,
    });
    let created = c.apply_batch(&creates).await;
    let (last, rest) = created.split_last().unwrap();
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    let refused = last.as_ref().expect_err("another's user is left alone");
    assert!(
        refused.message.contains("not managed by latchkey"),
        "{}",
        refused.message
    );
    let grants: Vec<Op> = people
        .iter()
        .flat_map(|p| {
            ["acme-viewers", "acme-editors"].map(|g| Op::AddEntitlement {
                identity: p.clone(),
                entitlement: g.into(),
            })
        })
        .collect();
    let granted = c.apply_batch(&grants).await;
    assert!(granted.iter().all(Result::is_ok), "{granted:?}");

    assert_eq!(
        relay.count("POST /bulk/v2/Bulk "),
        2,
        "one Bulk request per batch"
    );
    assert_eq!(
        relay.count("PATCH /bulk/v2/Groups/"),
        0,
        "no grant went one by one"
    );
    assert_eq!(
        relay.count("POST /bulk/v2/Users "),
        0,
        "the refused create went by its look-up, not a second POST"
    );
    let snap = c.read().await.unwrap();
    assert_eq!(snap.managed.len(), 30);
    for a in &snap.managed {
        let held: Vec<&str> = a.entitlements.iter().collect();
        assert_eq!(held, ["acme-editors", "acme-viewers"], "{}", a.identity);
    }
}
