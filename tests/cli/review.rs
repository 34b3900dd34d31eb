//! `latchkey plan --base --head`: the effective-access review of a change, one snapshot
//! per kind of edit, escaping and the comment's size limit. Every run passes `--now`.

use crate::common::*;

fn base_file(path: &str) -> String {
    std::fs::read_to_string(corpus().join("base").join(path)).unwrap()
}

/// Commits `edits` on top of the base corpus and reviews the change at `now`:
/// (exit code, text, markdown).
fn review_at(edits: &[(&str, Option<&str>)], now: &str) -> (i32, String, String) {
    let env = Env::base();
    let base = env.head().to_string();
    let head = env.commit(edits, "change").to_string();
    let args = ["plan", REPO, "--now", now, "--base", &base, "--head", &head];
    let text = env.run(&args);
    assert_eq!(text.stderr, "");
    let md = env.run(&[&args[..], &["--format", "markdown"]].concat());
    assert_eq!(md.code, text.code, "{}", md.stderr);
    // No system was contacted, and none was created.
    for db in ["portal.sqlite", "staging.sqlite", "shop.sqlite"] {
        assert!(!env.path(db).exists(), "{db}");
    }
    (text.code, text.stdout, md.stdout)
}

fn review(edits: &[(&str, Option<&str>)]) -> (i32, String, String) {
    review_at(edits, NOW)
}

const ROLES: &str = "roles/roles.yaml";
const MEMBERS: &str = "clients/acme/members.yaml";

/// Regression (issue 16): a Role edit was invisible to the review ("0 access changes").
#[test]
fn a_role_widened_shows_everyone_it_reaches_gaining() {
    let roles = base_file(ROLES).replace(
        "    portal: [\"{client}:viewer\"]\n",
        "    portal: [\"{client}:viewer\", \"{client}:admin\"]\n",
    );
    let (code, text, md) = review(&[(ROLES, Some(&roles))]);
    assert_eq!(code, 2, "{text}");
    // erin holds viewer for acme, and so does sam (an agency member) for acme.
    assert!(text.contains("erin@acme.example"), "{text}");
    assert!(text.contains("sam@studio.example"), "{text}");
    insta::assert_snapshot!("review_role_widened", text);
    insta::assert_snapshot!("review_role_widened_markdown", md);
}

#[test]
fn a_role_narrowed_shows_who_loses_and_why() {
    let roles = base_file(ROLES).replace(
        "    portal: [\"{client}:viewer\", \"{client}:finance\"]\n",
        "    portal: [\"{client}:finance\"]\n",
    );
    let (code, text, _) = review(&[(ROLES, Some(&roles))]);
    assert_eq!(code, 2, "{text}");
    insta::assert_snapshot!("review_role_narrowed", text);
}

#[test]
fn a_system_removed_shows_every_entitlement_on_it_lost() {
    let policy = base_file("latchkey.yaml");
    let start = policy
        .find("kind: System\nmetadata:\n  name: staging")
        .unwrap();
    let start = policy[..start].rfind("---\n").unwrap();
    let end = start + 4 + policy[start + 4..].find("---\n").unwrap();
    let without = format!("{}{}", &policy[..start], &policy[end..]);
    // UAT moves from the staging store to the portal.
    let roles = base_file(ROLES).replace(
        "    staging: [\"{client}:tester\"]\n",
        "    portal: [\"{client}:tester\"]\n",
    );
    let (code, text, _) = review(&[("latchkey.yaml", Some(&without)), (ROLES, Some(&roles))]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("system removed"), "{text}");
    insta::assert_snapshot!("review_system_removed", text);
}

#[test]
fn a_client_allowed_roles_shrunk_says_the_head_is_invalid_first() {
    let client = base_file("clients/acme/client.yaml").replace(
        "allowedRoles: [viewer, finance, tester]",
        "allowedRoles: [viewer, finance]",
    );
    let (code, text, md) = review(&[("clients/acme/client.yaml", Some(&client))]);
    assert_eq!(code, 1, "{text}");
    insta::assert_snapshot!("review_allowed_roles_shrunk", text);
    assert!(
        md.starts_with(
            "<!-- latchkey-plan -->\n### latchkey: access changes in this PR\n\n> ❌ **The head revision is invalid (1 error)"
        ),
        "{md}"
    );
    insta::assert_snapshot!("review_allowed_roles_shrunk_markdown", md);
}

#[test]
fn a_policy_max_grant_duration_lowered_says_the_head_is_invalid() {
    let policy = base_file("latchkey.yaml").replace("    staging: 30d\n", "    staging: 5d\n");
    let (code, text, _) = review(&[("latchkey.yaml", Some(&policy))]);
    assert_eq!(code, 1, "{text}");
    insta::assert_snapshot!("review_max_grant_duration_lowered", text);
}

#[test]
fn a_member_removed_and_one_offboarded_say_so() {
    let members = base_file(MEMBERS);
    let erin = members.find("---\n").unwrap();
    let dana_only = members[..erin].replacen(
        "  client: acme\n",
        "  client: acme\n  offboarded: true\n",
        1,
    );
    let (code, text, _) = review(&[(MEMBERS, Some(&dana_only))]);
    assert_eq!(code, 2, "{text}");
    insta::assert_snapshot!("review_removed_and_offboarded", text);
}

/// Regression (issue 16): a `for: 14d` grant on a PR commit made 30 days before the
/// review was shown as "until … (16d ago)"; apply counts it from the merge.
#[test]
fn a_for_grant_on_a_month_old_commit_counts_from_the_merge() {
    let zed = "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: zed\nspec:\n  \
               email: zed@acme.example\n  client: acme\n  grants:\n    \
               - {role: tester, for: 14d, reason: JIRA-42 checkout UAT}\n";
    // The commit is made at 2026-11-20T12:00:00Z; the review runs 30 days later.
    let (code, text, md) = review_at(
        &[("clients/acme/zed.yaml", Some(zed))],
        "2026-12-20T12:00:00Z",
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("14d from merge"), "{text}");
    assert!(!text.contains("ago"), "{text}");
    assert!(text.contains("JIRA-42 checkout UAT"), "{text}");
    insta::assert_snapshot!("review_for_grant_from_merge", text);
    insta::assert_snapshot!("review_for_grant_from_merge_markdown", md);
}

#[test]
fn typed_text_is_escaped_in_the_markdown() {
    let roles = base_file(ROLES).replace(
        "    portal: [\"{client}:viewer\"]\n",
        "    portal: [\"{client}:viewer\", \"{client}:reports | EU <b>bold</b>\"]\n",
    );
    let members = base_file(MEMBERS).replace(
        "    - role: viewer\n",
        "    - role: viewer\n      reason: \"`TICKET-1` | *urgent* [link](http://x)\"\n",
    );
    let (code, _, md) = review(&[(ROLES, Some(&roles)), (MEMBERS, Some(&members))]);
    assert_eq!(code, 2, "{md}");
    assert!(!md.contains("<b>"), "{md}");
    assert!(
        md.contains("acme:reports \\| EU &lt;b&gt;bold&lt;/b&gt;"),
        "{md}"
    );
    // Every row of a table has as many cells as its header.
    for table in md.split("\n\n").filter(|b| b.starts_with("| ")) {
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        let mut lines = table.lines();
        let header = cells(lines.next().unwrap());
        for l in lines {
            assert_eq!(cells(l), header, "{l}");
        }
    }
    insta::assert_snapshot!("review_escaped_markdown", md);
}

/// Regression (issue 16): a 600-person PR made a 119,039-character comment, which
/// GitHub rejects (the limit is 65,536).
#[test]
fn a_two_thousand_person_change_stays_under_the_comment_limit() {
    let mut members = String::new();
    for i in 0..2000 {
        members.push_str(&format!(
            "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: p{i}\n\
             spec:\n  email: person{i}@acme.example\n  client: acme\n  grants:\n    \
             - {{role: finance, reason: onboarding wave 3}}\n"
        ));
    }
    let (code, text, md) = review(&[("clients/acme/wave.yaml", Some(&members))]);
    assert_eq!(code, 2);
    assert!(
        text.contains("4000 gains, 0 losses"),
        "{}",
        &text[text.len() - 200..]
    );
    assert!(md.len() < 65_536, "{}", md.len());
    assert!(md.contains("**4000 gains, 0 losses, 0 changed windows** for 2000 people."));
    assert!(md.contains("| acme | 4000 | 0 | 0 |"), "{md}");
    let note = md.lines().last().unwrap();
    assert!(note.contains("rows left out"), "{note}");
    assert!(note.contains("--format json"), "{note}");
    assert!(md.matches("<details>").count() == md.matches("</details>").count());
}
