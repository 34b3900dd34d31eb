//! Access reviews on examples/agency (`reviewEvery: 90d` on acme, Frank's grant reviewed
//! on 2026-11-02): `latchkey review` at chosen instants, an overdue review as a warning
//! in `validate` and `plan`, and under `overdueReview: revoke` as an expiry applied to the
//! example's SQLite portal with ledger reason `review-overdue`.

use crate::common::*;

/// The example's documents as committed by alex (the agency), with `edit` applied to
/// (path, text) first, and its systems seeded.
fn agency(edit: impl Fn(&str, String) -> String) -> Env {
    Env::agency_example("alex@northwind.example", edit)
}

const FRANKS_REVIEW: &str = "      reviewed: {at: 2026-11-02T09:00:00Z, by: dana@acme.example}\n";

/// The example with Frank's grant as granted, before its review was recorded.
fn unreviewed(path: &str, text: String) -> String {
    if path == "clients/acme/members.yaml" {
        let without = text.replace(FRANKS_REVIEW, "");
        assert_ne!(without, text);
        return without;
    }
    text
}

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// (identity, role, due, overdue, last reviewed by, granted by) of each listed grant.
fn rows(list: &serde_json::Value) -> Vec<String> {
    list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["grants"].as_array().unwrap())
        .map(|g| {
            format!(
                "{} {} {} overdue={} reviewed={} granted={}@{}",
                g["identity"].as_str().unwrap(),
                g["role"].as_str().unwrap(),
                g["due"].as_str().unwrap(),
                g["overdue"],
                g["reviewed"]["by"].as_str().unwrap_or("never"),
                g["grantedBy"].as_str().unwrap_or("-"),
                g["grantedAt"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

#[test]
fn review_lists_what_falls_due_and_what_is_overdue_with_who_granted_it() {
    let env = agency(unreviewed);
    // Dana records her review of Frank's grant: a commit of her own.
    let members = env
        .file_at(env.head(), "clients/acme/members.yaml")
        .unwrap();
    let reviewed = members.replace(
        "    - role: client-viewer\n",
        &format!("    - role: client-viewer\n{FRANKS_REVIEW}"),
    );
    env.commit_as(
        "dana@acme.example",
        &[("clients/acme/members.yaml", Some(&reviewed))],
        "review frank's access",
    );

    // At the commit, nothing falls due in the next 14 days.
    let out = env.run(&["review", REPO, "--rev", "main", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(": 0 grants\n"), "{}", out.stdout);

    // On 2027-02-01 Frank's review (due 90 days after Dana's) is overdue; the others,
    // never reviewed, fall due 90 days after the example was merged: within 30 days.
    let out = env.run(&[
        "review",
        REPO,
        "--rev",
        "main",
        "--now",
        "2027-02-01T00:00:00Z",
        "--within",
        "30d",
        "--client",
        "acme",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 2, "something due: {}", out.stderr);
    let list = json(&out);
    assert_eq!(list["clients"][0]["admins"][0], "dana@acme.example");
    let granted = "granted=alex@northwind.example@2026-11-20T12:00:00Z";
    assert_eq!(
        rows(&list),
        [
            format!(
                "alex@northwind.example agency-account-manager 2027-02-18T12:00:00Z overdue=false reviewed=never {granted}"
            ),
            format!(
                "dana@acme.example client-project 2027-02-18T12:00:00Z overdue=false reviewed=never {granted}"
            ),
            format!(
                "dana@acme.example client-finance 2027-02-18T12:00:00Z overdue=false reviewed=never {granted}"
            ),
            format!(
                "erin@acme.example client-finance 2027-02-18T12:00:00Z overdue=false reviewed=never {granted}"
            ),
            // The review did not make it Dana's grant: who granted it stays alex.
            format!(
                "frank@acme.example client-viewer 2027-01-31T09:00:00Z overdue=true reviewed=dana@acme.example {granted}"
            ),
        ]
    );

    // The default window (14 days) holds only the overdue one; markdown for the PR.
    let out = env.run(&[
        "review",
        REPO,
        "--rev",
        "main",
        "--now",
        "2027-02-01T00:00:00Z",
        "--format",
        "markdown",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(
            "## Access review: ACME Ltd (acme)\n\nFor the client's admins: dana@acme.example."
        ),
        "{}",
        out.stdout
    );
    let table: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(
        table,
        [
            "| Person | Role | Due | Last reviewed | Granted by | File |",
            "| frank@acme.example | client-viewer | overdue since 2027-01-31T09:00:00Z (15h ago) | 2026-11-02T09:00:00Z by dana@acme.example | by alex@northwind.example at 2026-11-20T12:00:00Z | clients/acme/members.yaml (grant 0) |",
        ]
    );

    // Another client with no reviewEvery: nothing; an unknown client: an error.
    let out = env.run(&[
        "review",
        REPO,
        "--client",
        "globex",
        "--now",
        "2027-02-01T00:00:00Z",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["review", REPO, "--client", "nobody", "--now", NOW]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no Client \"nobody\""),
        "{}",
        out.stderr
    );
}

const OVERDUE_WARNING: &str = "clients/acme/members.yaml:40:17: warning: the review of grant \"client-viewer\" was due at 2027-01-31T09:00:00Z (reviewEvery 90d)\n  help: review the grant and set reviewed: {at, by}\n";

#[test]
fn an_overdue_review_is_a_warning_in_validate_and_plan() {
    let env = agency(|_, t| t);
    let out = env.run(&[
        "validate",
        REPO,
        "--rev",
        "main",
        "--now",
        "2027-01-31T09:00:00Z",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("review"),
        "not yet overdue: {}",
        out.stderr
    );
    let out = env.run(&[
        "validate",
        REPO,
        "--rev",
        "main",
        "--now",
        "2027-02-01T00:00:00Z",
    ]);
    assert_eq!(out.code, 0, "a warning, not an error: {}", out.stderr);
    assert!(out.stderr.contains(OVERDUE_WARNING), "{}", out.stderr);
    // plan warns alike, and under `warn` Frank keeps his access.
    let out = env.run(&[
        "plan",
        REPO,
        "--rev",
        "main",
        "--now",
        "2027-02-01T00:00:00Z",
        "--format",
        "json",
    ]);
    assert!(out.stderr.contains(OVERDUE_WARNING), "{}", out.stderr);
    let plan = json(&out);
    let franks: Vec<_> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["identity"] == "frank@acme.example")
        .map(|c| format!("{} {} {}", c["op"], c["entitlement"], c["reason"]))
        .collect();
    assert!(
        !franks.iter().any(|c| c.contains("acme:viewer")),
        "{franks:?}"
    );
}

/// Frank's last review was on 2026-08-27T12:00Z: under `overdueReview: revoke` his grant
/// ends 90 days later, on 2026-11-25T12:00Z (after the commit, before the wall clock).
fn revoking(path: &str, text: String) -> String {
    match path {
        "latchkey.yaml" => text.replacen(
            "  expiredGrace: 7d\n",
            "  expiredGrace: 7d\n  overdueReview: revoke\n",
            1,
        ),
        "clients/acme/members.yaml" => text.replace(
            "reviewed: {at: 2026-11-02T09:00:00Z",
            "reviewed: {at: 2026-08-27T12:00:00Z",
        ),
        _ => text,
    }
}

#[test]
fn under_overdue_review_revoke_the_due_instant_revokes_with_reason_review_overdue() {
    let env = agency(revoking);
    let portal = env.path("portal.sqlite");
    // Before the due instant: Frank keeps acme:viewer, and the plan wakes at the deadline.
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(
        json(&out)["nextChange"],
        "2026-11-25T12:00:00Z",
        "{}",
        out.stderr
    );
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(roles(&portal).contains(&"frank@acme.example acme:viewer".to_string()));

    // After it: the review is overdue and the grant ends like an expiry.
    let after = "2026-11-26T00:00:00Z";
    let out = env.run(&["plan", REPO, "--now", after]);
    assert!(
        out.stdout.contains("review-overdue"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let out = env.run(&["apply", REPO, "--now", after]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("the grant ended then (Policy overdueReview: revoke)"),
        "{}",
        out.stderr
    );
    assert!(
        !roles(&portal).iter().any(|r| r.starts_with("frank@")),
        "{:?}",
        roles(&portal)
    );
    let records: Vec<String> = ledger_files(&env, env.head())
        .into_iter()
        .flat_map(|(_, rs)| rs)
        .filter(|r| r["identity"] == "frank@acme.example" && r["event"] == "change")
        .map(|r| brief(&r))
        .collect();
    assert!(
        records.contains(
            &"portal frank@acme.example revoke acme:viewer review-overdue applied".to_string()
        ),
        "{records:?}"
    );
    assert!(
        !records.iter().any(|r| r.contains("acme:viewer expired")),
        "{records:?}"
    );
}

/// When only expiries may run (the ledger's anchor does not verify), a review deadline
/// under `revoke` still fires, like an expiry.
#[test]
fn a_review_deadline_fires_when_only_expiries_may_run() {
    let env = agency(revoking);
    let portal = env.path("portal.sqlite");
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    env.commit(
        &[("audit/state.yaml", Some("lastAppliedCommit: [\n"))],
        "oops",
    );
    let out = env.run(&["apply", REPO, "--now", "2026-11-26T00:00:00Z"]);
    assert_eq!(out.code, 1, "refused but for expiries: {}", out.stderr);
    assert!(out.stderr.contains("cannot be built on"), "{}", out.stderr);
    assert!(
        !roles(&portal).iter().any(|r| r.starts_with("frank@")),
        "{:?}",
        roles(&portal)
    );
    let reasons: Vec<String> = ledger_files(&env, env.head())
        .into_iter()
        .flat_map(|(_, rs)| rs)
        .filter(|r| r["identity"] == "frank@acme.example" && r["change"] == "revoke")
        .filter(|r| r["entitlement"] == "acme:viewer")
        .map(|r| brief(&r))
        .collect();
    assert_eq!(
        reasons,
        ["portal frank@acme.example revoke acme:viewer review-overdue applied"]
    );
}
