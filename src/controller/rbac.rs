//! The Kubernetes API calls the operator and the `kubernetes` connector make, as RBAC
//! rules. The Helm chart's roles are tested against this list (tests/chart.rs), so a
//! new API call without a chart change fails the build instead of a production run.

/// One (API group, resource, verbs) the code needs. `""` is the core group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Needed only in the operator's own namespace (a Role, not a ClusterRole).
    pub own_namespace: bool,
}

const fn rule(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Rule {
    Rule {
        group,
        resource,
        verbs,
        own_namespace: false,
    }
}

/// Every rule the code needs, and nothing more.
pub const REQUIRED: &[Rule] = &[
    // The Controller's watcher (list + watch) and the status patch (server-side apply).
    rule(
        "latchkey.dev",
        "accessrepositories",
        &["get", "list", "watch"],
    ),
    rule("latchkey.dev", "accessrepositories/status", &["patch"]),
    // `systemsSecretRef`.
    rule("", "secrets", &["get"]),
    // kube-runtime's Recorder creates Events and patches repeated ones into a series.
    rule("events.k8s.io", "events", &["create", "patch"]),
    // The `kubernetes` connector.
    rule(
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["list", "create", "delete"],
    ),
    // Binding a role needs `bind` on it unless the operator holds its permissions itself.
    rule("rbac.authorization.k8s.io", "clusterroles", &["bind"]),
    rule("rbac.authorization.k8s.io", "roles", &["bind"]),
    // Leader election.
    Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        own_namespace: true,
    },
];
