//! `ldap` only: a batch is one bound connection (issue 21), its identities' changes run
//! concurrently on it, and people joining and leaving one group at once never lose each
//! other's membership (the last member's removal adds the placeholder in the same modify).

use latchkey::connectors::ldap::LdapConnector;
use latchkey::connectors::{Connector, Op, Secret};

use crate::peers::ldap::{LdapFixture, Mode};
use crate::proxy::RecordingProxy;

fn person(i: usize) -> String {
    format!("p{i:02}@acme.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_bound_connection_and_concurrent_members_are_kept() {
    let Some(f) = LdapFixture::start(Mode::Plain) else {
        return;
    };
    let relay = RecordingProxy::start(format!("127.0.0.1:{}", f.port).parse().unwrap()).await;
    let c = LdapConnector::new(
        f.config(Mode::Plain, relay.addr.port()),
        Secret::new(f.password.clone()),
    );
    let creates: Vec<Op> = (0..41)
        .map(|i| Op::CreateAccount {
            identity: person(i),
            display_name: Some(format!("Person {i}")),
        })
        .collect();
    let joins: Vec<Op> = (0..40)
        .map(|i| Op::AddEntitlement {
            identity: person(i),
            entitlement: "devs".into(),
        })
        .collect();
    // Everyone leaves the group while the 41st joins it, all in one batch.
    let mut churn: Vec<Op> = (0..40)
        .map(|i| Op::RemoveEntitlement {
            identity: person(i),
            entitlement: "devs".into(),
        })
        .collect();
    churn.push(Op::AddEntitlement {
        identity: person(40),
        entitlement: "devs".into(),
    });
    for batch in [&creates, &joins, &churn] {
        let results = c.apply_batch(batch).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    assert_eq!(
        relay.connections(),
        3,
        "one connection per batch, not per change"
    );
    let snap = c.read().await.unwrap();
    let holders: Vec<&str> = snap
        .managed
        .iter()
        .filter(|a| a.entitlements.contains("devs"))
        .map(|a| a.identity.as_str())
        .collect();
    assert_eq!(
        holders,
        [person(40).as_str()],
        "the newcomer's membership survived the leavers"
    );
    assert_eq!(snap.managed.len(), 41);
}
