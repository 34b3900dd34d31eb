//! `ldap` only: the directory compares group names case-insensitively, and so does
//! latchkey, so a Role entitlement `Finance` on an existing group `finance` (or the other
//! way round) converges instead of being granted again on every run.

use latchkey::connectors::Op;
use latchkey::model::SystemSpec;

use crate::peers::Peer;
use crate::peers::ldap::LdapPeer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spelt_in_another_case_converges() {
    let Some(f) = LdapPeer::fixture().await else {
        return;
    };
    // The directory already has the group, spelt `Finance`.
    f.seed_unmanaged("owner@acme.example", "Finance").await;
    let system: SystemSpec =
        serde_yaml::from_str("type: ldap\nenvironment: staging\nconnection: {}\n").unwrap();
    let wanted = latchkey::load::entitlement(&system, "Finance", "acme");
    assert_eq!(wanted, "finance", "LDAP entitlements compare in lower case");
    let c = f.connector();
    let erin = "erin@acme.example".to_string();
    c.apply(&Op::CreateAccount {
        identity: erin.clone(),
        display_name: None,
    })
    .await
    .unwrap();
    c.apply(&Op::AddEntitlement {
        identity: erin.clone(),
        entitlement: wanted.clone(),
    })
    .await
    .unwrap();
    let read = c.read().await.unwrap();
    let account = read.managed.iter().find(|a| a.identity == erin).unwrap();
    assert!(
        account.entitlements.contains(&wanted),
        "read back as the plan spells it, so the next plan is empty: {:?}",
        account.entitlements
    );
    // One group: the grant joined the existing entry, not a second one.
    let owner = f.unmanaged_state("owner@acme.example").await.unwrap();
    assert!(owner.ends_with("|Finance"), "{owner}");
}
