//! The connector contract suite: one set of behaviours every connector must show against
//! its real server (started here on loopback by the peer harness).
//!
//! Each peer gets every applicable test under its own name (`sqlite::create_grant_revoke`,
//! `scim::dropped_connection_is_never_a_short_complete`, ...). A peer whose server binary
//! is missing is skipped with a notice, or fails when `LATCHKEY_REQUIRE_PEERS` is set (CI).

#[path = "../common/mod.rs"]
mod common;
mod ldap_batch;
mod ldap_case;
mod offboarding;
mod peers;
mod postgres_batch;
mod postgres_crash;
mod postgres_expiry;
mod postgres_grantor;
mod postgres_import;
mod postgres_race;
mod postgres_scope;
mod proxy;
mod scim_bulk;
mod scim_extra;
mod suite;
mod tls;

/// Generates one `#[tokio::test]` per suite function for a peer.
macro_rules! contract_tests {
    ($module:ident, $peer:ty, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::suite::init_log_capture();
                    let Some(fixture) = <$peer as crate::peers::Peer>::fixture().await else {
                        return;
                    };
                    crate::suite::$test(fixture.as_ref()).await;
                }
            )*
        }
    };
}

contract_tests!(
    sqlite,
    crate::peers::sqlite::SqlitePeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_marks_an_unmarked_account,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
    ]
);

contract_tests!(
    exec,
    crate::peers::exec::ExecPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_is_refused_without_a_marker,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
        credentials_absent_from_errors_and_logs,
    ]
);

contract_tests!(
    scim,
    crate::peers::scim::ScimPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_is_refused_without_a_marker,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

contract_tests!(
    django_scim,
    crate::peers::scim::DjangoScimPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

contract_tests!(
    postgres,
    crate::peers::postgres::PostgresPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_marks_an_unmarked_account,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

contract_tests!(
    sql_postgres,
    crate::peers::postgres::SqlPostgresPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_marks_an_unmarked_account,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

contract_tests!(
    ldap,
    crate::peers::ldap::LdapPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        adopt_marks_an_unmarked_account,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        a_failed_change_in_a_batch_fails_alone,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

// The same suite against servers that require TLS (sslmode=verify-full; StartTLS; ldaps).
contract_tests!(
    postgres_tls,
    crate::peers::postgres::PostgresTlsPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

// The same suite against servers that require TLS (sslmode=verify-full; StartTLS; ldaps).
contract_tests!(
    sql_postgres_tls,
    crate::peers::postgres::SqlPostgresTlsPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

// The same suite against servers that require TLS (sslmode=verify-full; StartTLS; ldaps).
contract_tests!(
    ldap_starttls,
    crate::peers::ldap::LdapStartTlsPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);

// The same suite against servers that require TLS (sslmode=verify-full; StartTLS; ldaps).
contract_tests!(
    ldaps,
    crate::peers::ldap::LdapsPeer,
    [
        create_grant_revoke,
        disable_and_enable,
        delete_account,
        idempotent_reapply,
        read_after_write_many,
        out_of_scope_untouched,
        concurrent_grants_of_a_new_role,
        native_expiry_set_and_cleared_or_refused,
        dropped_connection_is_never_a_short_complete,
        credentials_absent_from_errors_and_logs,
    ]
);
