//! SCIM-only behaviours, against the real scim2-server.

use std::time::Duration;

use latchkey::connectors::scim::{ScimConfig, ScimConnector};
use latchkey::connectors::{Completeness, Connector, Op, Secret};

use crate::peers::scim::ScimServer;

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
