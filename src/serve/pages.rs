//! The page's HTML: server-rendered, escaped by maud, usable without JavaScript.
//!
//! Element ids and classes are part of the contract the browser tests drive
//! (`#sign-in`, `#clients`, `#people`, `#invite`, `.remove`, `#review`, `#confirm`,
//! `#refused`, `#done`, `#forbidden`).

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use super::oidc::Identity;
use crate::plan::render::{instant, relative};
use crate::plan::review::{self, Review};
use crate::trust::boundary::BoundaryReport;

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:.7rem 1.5rem;display:flex;align-items:center;gap:1rem}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:.9rem;opacity:.9}
main{max-width:70rem;margin:1.5rem auto;padding:0 1.5rem}
section{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:1rem 1.25rem;margin-bottom:1.25rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:.2rem 0 .8rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eceff2;vertical-align:top}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#5b6470}
.muted{color:#5b6470;font-size:.9rem}.tag{display:inline-block;background:#e8eef6;border-radius:3px;padding:0 .35rem;margin:0 .2rem .2rem 0;font-size:.85rem}
.gains{color:#11672f}.loses{color:#a3171a}.changes{color:#8a5a00}
form.change,form.expiry{display:flex;gap:.3rem;align-items:center;margin:0 0 .3rem}form.inline{display:inline}label{display:block;font-size:.85rem;color:#3b434d;margin:.4rem 0 .15rem}
input,select{font:inherit;padding:.3rem .4rem;border:1px solid #b9c1ca;border-radius:4px}
button{white-space:nowrap;font:inherit;padding:.35rem .8rem;border-radius:4px;border:1px solid #1f5fbf;background:#1f6fdf;color:#fff;cursor:pointer}
button.quiet{background:#fff;color:#1f5fbf}button.danger{background:#fff;color:#a3171a;border-color:#a3171a}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.2rem 1rem;align-items:end}
pre{background:#f3f5f7;padding:.6rem;border-radius:4px;overflow:auto;font-size:.85rem}
#refused,#forbidden{border-color:#e3a2a2;background:#fff6f6}#done{border-color:#9fd3ae;background:#f4fbf6}
";

/// The frame of every page: `who` signed in (with a sign-out form), or nobody.
pub fn layout(title: &str, who: Option<(&Identity, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · latchkey" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { "latchkey" }
                    span { "team access" }
                    @if let Some((who, csrf)) = who {
                        span.who { (who.name) " · " (who.email) }
                        form #sign-out method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Signed out.
pub fn signed_out() -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section {
                h1 { "Manage your team's access" }
                p { "Invite people, change their roles and end their access, within the limits your agency set. Every change is reviewed and recorded in git." }
                p { a #sign-in href="/login" { "Sign in" } }
            }
        },
    )
}

/// A client as the home page lists it.
pub struct ClientLink {
    pub name: String,
    pub display: String,
}

/// Signed in: the clients this person administers.
pub fn home(who: &Identity, csrf: &str, clients: &[ClientLink]) -> Markup {
    layout(
        "Your clients",
        Some((who, csrf)),
        html! {
            section {
                h1 { "Your clients" }
                @if clients.is_empty() {
                    p { "You administer no client. Ask the agency to add " code { (who.email) } " to a Client's admins." }
                } @else {
                    ul #clients {
                        @for c in clients {
                            li { a href={ "/clients/" (c.name) } { (c.display) } }
                        }
                    }
                }
            }
        },
    )
}

/// One of a person's grants, as the client page shows it.
pub struct GrantRow {
    pub role: String,
    pub starts: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    pub reason: Option<String>,
    pub review_due: Option<Timestamp>,
    /// Set by `for:` or `starts:`: the page does not edit its window.
    pub windowed: bool,
}

/// A person on the client page.
pub struct PersonRow {
    pub email: String,
    pub display_name: Option<String>,
    pub offboarded: bool,
    pub grants: Vec<GrantRow>,
}

/// A change waiting for review on the git host.
pub struct PendingRow {
    pub branch: String,
    pub subject: String,
    pub author: String,
    pub when: Timestamp,
}

/// What the client page shows.
pub struct ClientPage<'a> {
    pub name: &'a str,
    pub display: &'a str,
    pub allowed_roles: &'a [String],
    pub max_duration: Option<&'a str>,
    pub direct: bool,
    pub people: Vec<PersonRow>,
    pub pending: Vec<PendingRow>,
    pub revision: String,
    pub now: Timestamp,
}

/// The team of one client, and the forms that change it.
pub fn client(who: &Identity, csrf: &str, p: &ClientPage<'_>) -> Markup {
    let base = format!("/clients/{}", p.name);
    let window = |g: &GrantRow| -> String {
        let mut s = String::new();
        if let Some(t) = g.starts.filter(|t| *t > p.now) {
            s.push_str(&format!("from {} ", instant(t)));
        }
        match g.expires {
            Some(t) => s.push_str(&format!("until {} ({})", instant(t), relative(t, p.now))),
            None => s.push_str("no end"),
        }
        s
    };
    layout(
        p.display,
        Some((who, csrf)),
        html! {
            section {
                h1 { (p.display) }
                p.muted {
                    "Roles you may grant: "
                    @for r in p.allowed_roles { span.tag { (r) } }
                    @if let Some(d) = p.max_duration { " · longest grant " (d) }
                    " · changes "
                    @if p.direct { "are committed directly once they pass the checks" } @else { "open a pull request for the agency to merge" }
                    " · as of " code { (p.revision) }
                }
                p { a href={ (base) "/access" } { "Who had access when" } }
            }
            section {
                h2 { "People" }
                table #people {
                    thead { tr { th { "Person" } th { "Role" } th { "Window" } th { "Reason" } th { "Change" } } }
                    tbody {
                        @for person in &p.people {
                            @let n = person.grants.len().max(1);
                            @for (i, g) in person.grants.iter().enumerate() {
                                tr data-email=(person.email) {
                                    @if i == 0 {
                                        td rowspan=(n) {
                                            strong { (person.display_name.as_deref().unwrap_or(&person.email)) }
                                            br; span.muted { (person.email) }
                                            @if person.offboarded { br; span.tag { "offboarded" } }
                                            br; a.muted href={ (base) "/people/" (urlencoding::encode(&person.email)) "/history" } { "history" }
                                        }
                                    }
                                    td { span.tag { (g.role) } }
                                    td {
                                        (window(g))
                                        @if let Some(due) = g.review_due { br; span.muted { "review due " (instant(due)) } }
                                    }
                                    td { (g.reason.as_deref().unwrap_or("")) }
                                    td {
                                        @if !person.offboarded {
                                            form.change method="post" action={ (base) "/people/" (urlencoding::encode(&person.email)) "/role" } data-email=(person.email) data-role=(g.role) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="from" value=(g.role);
                                                select name="to" aria-label="new role" {
                                                    @for r in p.allowed_roles { @if *r != g.role { option value=(r) { (r) } } }
                                                }
                                                " " button.quiet type="submit" { "Change role" }
                                            }
                                            @if !g.windowed {
                                                form.expiry method="post" action={ (base) "/people/" (urlencoding::encode(&person.email)) "/expiry" } data-email=(person.email) data-role=(g.role) {
                                                    input type="hidden" name="csrf" value=(csrf);
                                                    input type="hidden" name="role" value=(g.role);
                                                    input type="date" name="expires" aria-label="ends on" value=(g.expires.map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default());
                                                    " " button.quiet type="submit" { "Set end" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                            @if person.grants.is_empty() {
                                tr data-email=(person.email) {
                                    td { strong { (person.display_name.as_deref().unwrap_or(&person.email)) } br; span.muted { (person.email) } }
                                    td colspan="4" { span.muted { "no grants" } }
                                }
                            }
                            @if !person.offboarded {
                                tr.actions {
                                    td colspan="5" {
                                        form.remove method="post" action={ (base) "/people/" (urlencoding::encode(&person.email)) "/remove" } data-email=(person.email) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="text" name="reason" placeholder="why (e.g. left the company)" aria-label="reason";
                                            " " button.danger type="submit" { "Remove " (person.email) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Invite a person" }
                form #invite method="post" action={ (base) "/invite" } {
                    input type="hidden" name="csrf" value=(csrf);
                    div.grid {
                        div { label for="email" { "Email" } input #email type="email" name="email" required; }
                        div { label for="display_name" { "Name" } input #display_name type="text" name="display_name"; }
                        div {
                            label for="role" { "Role" }
                            select #role name="role" { @for r in p.allowed_roles { option value=(r) { (r) } } }
                        }
                        div { label for="expires" { "Access ends on (00:00 UTC)" } input #expires type="date" name="expires"; }
                        div { label for="reason" { "Reason" } input #reason type="text" name="reason" placeholder="ticket or project"; }
                        div { button type="submit" { "Review" } }
                    }
                }
            }
            @if !p.pending.is_empty() {
                section #pending {
                    h2 { "Waiting for review" }
                    table {
                        thead { tr { th { "Change" } th { "By" } th { "When" } th { "Branch" } } }
                        tbody {
                            @for c in &p.pending {
                                tr { td { (c.subject) } td { (c.author) } td { (instant(c.when)) } td { code { (c.branch) } } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What a proposal shows before it is confirmed.
pub struct ReviewPage<'a> {
    pub client: &'a str,
    pub subject: &'a str,
    pub proposal: &'a str,
    pub review: &'a Review,
    pub boundary: &'a BoundaryReport,
    pub diff: &'a str,
    pub direct: bool,
    /// Set when the branch moved since the first review.
    pub note: Option<&'a str>,
}

/// The effective review of a proposed change, and the confirm form.
pub fn review_page(who: &Identity, csrf: &str, r: &ReviewPage<'_>) -> Markup {
    layout(
        "Review",
        Some((who, csrf)),
        html! {
            section #review {
                h1 { "Review: " (r.subject) }
                @if let Some(note) = r.note { p.changes { (note) } }
                p.muted { "Effective access if this change is merged now (" (instant(r.review.now)) "): " (review::tally(r.review.counts())) ". Within " (r.client) "'s boundaries: " (r.boundary.files.len()) " file(s) checked, no violation." }
                (deltas(r.review))
                details {
                    summary { "The file as it will be committed" }
                    pre { (r.diff) }
                }
            }
            section {
                form #confirm method="post" action={ "/proposals/" (r.proposal) "/confirm" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" {
                        @if r.direct { "Confirm and commit" } @else { "Confirm and open a pull request" }
                    }
                    " " a href={ "/clients/" (r.client) } { "Cancel" }
                }
            }
        },
    )
}

fn deltas(r: &Review) -> Markup {
    html! {
        @if r.deltas.is_empty() {
            p { "Nobody's effective access changes." }
        } @else {
            table.deltas {
                thead { tr { th { "Person" } th { "" } th { "System" } th { "Entitlement" } th { "Window" } th { "Why" } } }
                tbody {
                    @for d in &r.deltas {
                        tr class=(d.verb()) {
                            td { (d.identity) } td { strong { (d.verb()) } } td { (d.system) } td { code { (d.entitlement) } }
                            td { (d.when(r.now)) } td { (d.why()) }
                        }
                    }
                }
            }
        }
    }
}

/// Why a change was not made (422).
pub fn refused(who: &Identity, csrf: &str, client: &str, reasons: &[String]) -> Markup {
    layout(
        "Refused",
        Some((who, csrf)),
        html! {
            section #refused {
                h1 { "This change cannot be made" }
                ul { @for r in reasons { li { (r) } } }
                p { a href={ "/clients/" (client) } { "Back to the team" } }
            }
        },
    )
}

/// A confirmed change.
pub fn done(
    who: &Identity,
    csrf: &str,
    client: &str,
    subject: &str,
    commit: &str,
    branch: &str,
    pull_request: Result<Option<&str>, &str>,
) -> Markup {
    layout(
        "Done",
        Some((who, csrf)),
        html! {
            section #done data-commit=(commit) {
                h1 { (subject) }
                p { "Commit " code { (commit) } " on " code { (branch) } "." }
                @match pull_request {
                    Ok(Some(url)) => p { "Pull request: " a #pull-request href=(url) { (url) } ". It takes effect once the agency merges it." },
                    Ok(None) if branch.starts_with("latchkey/") => p { "The branch is pushed; open a pull request for it on the git host." },
                    Ok(None) => p { "It takes effect on the next reconcile." },
                    Err(e) => p.loses { "The branch is pushed, but the pull request was not opened: " (e) },
                }
                p { a href={ "/clients/" (client) } { "Back to the team" } }
            }
        },
    )
}

/// Not yours, or not a genuine form (403).
pub fn forbidden(who: Option<(&Identity, &str)>, why: &str) -> Markup {
    layout(
        "Forbidden",
        who,
        html! {
            section #forbidden {
                h1 { "Not allowed" }
                p { (why) }
                p { a href="/" { "Home" } }
            }
        },
    )
}

/// Something failed on the way (the page says what; the log has the rest).
pub fn failed(who: Option<(&Identity, &str)>, what: &str) -> Markup {
    layout(
        "Error",
        who,
        html! {
            section #refused {
                h1 { "Something failed" }
                p { (what) }
                p { "Nothing was changed. " a href="/" { "Home" } }
            }
        },
    )
}

/// One row of "who had access at T".
pub struct AccessRow {
    pub identity: String,
    pub system: String,
    pub entitlement: String,
    pub role: String,
    pub since: Timestamp,
    pub until: Option<Timestamp>,
}

/// The ledger's answer to "who had access to this client at T".
pub fn access(
    who: &Identity,
    csrf: &str,
    client: &str,
    at: Timestamp,
    rows: &[AccessRow],
) -> Markup {
    layout(
        "Access",
        Some((who, csrf)),
        html! {
            section #access {
                h1 { "Who had access to " (client) " at " (instant(at)) }
                form method="get" {
                    label for="at" { "At (a date or an RFC 3339 instant)" }
                    input #at type="text" name="at" value=(instant(at));
                    " " button.quiet type="submit" { "Show" }
                }
                @if rows.is_empty() { p { "Nobody, as the audit ledger records it." } } @else {
                    table {
                        thead { tr { th { "Person" } th { "System" } th { "Entitlement" } th { "Role" } th { "Since" } th { "Until" } } }
                        tbody {
                            @for a in rows {
                                tr { td { (a.identity) } td { (a.system) } td { code { (a.entitlement) } } td { (a.role) } td { (instant(a.since)) } td { (a.until.map(instant).unwrap_or_else(|| "no end".into())) } }
                            }
                        }
                    }
                }
                p { a href={ "/clients/" (client) } { "Back to the team" } }
            }
        },
    )
}

/// One ledger record of a person's history.
pub struct HistoryRow {
    pub time: Timestamp,
    pub system: String,
    pub change: String,
    pub entitlement: String,
    pub reason: String,
    pub result: String,
}

/// A person's history in this client, from the ledger.
pub fn history(
    who: &Identity,
    csrf: &str,
    client: &str,
    email: &str,
    rows: &[HistoryRow],
) -> Markup {
    layout(
        "History",
        Some((who, csrf)),
        html! {
            section #history {
                h1 { "History of " (email) " in " (client) }
                @if rows.is_empty() { p { "The audit ledger has no record of this person here yet." } } @else {
                    table {
                        thead { tr { th { "When" } th { "System" } th { "Change" } th { "Entitlement" } th { "Reason" } th { "Result" } } }
                        tbody {
                            @for r in rows {
                                tr { td { (instant(r.time)) } td { (r.system) } td { (r.change) } td { code { (r.entitlement) } } td { (r.reason) } td { (r.result) } }
                            }
                        }
                    }
                }
                p { a href={ "/clients/" (client) } { "Back to the team" } }
            }
        },
    )
}
