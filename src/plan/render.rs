//! Plans as text (a terminal), Markdown (a PR comment) and JSON (machines).

use std::collections::BTreeMap;
use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use jiff::{SignedDuration, Timestamp};

use super::change::{Change, Plan};
use crate::connectors::{Completeness, Op};

/// The most characters a pull-request comment may hold on GitHub.
pub const COMMENT_LIMIT: usize = 65_536;

/// The first line of every Markdown plan and review: CI finds its own comment by it and
/// updates that one in place.
pub const PLAN_MARKER: &str = "<!-- latchkey-plan -->";

/// Text people typed (names, entitlements, reasons, error messages), made inert for a
/// Markdown table cell: it can add no column, no HTML, no link, code span or emphasis.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' | '`' | '*' | '_' | '[' | ']' | '\\' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code span of `s` (outside tables): backticks and line breaks, which would end it,
/// become `'` and spaces; inside it nothing else is interpreted.
pub fn code(s: &str) -> String {
    let inner: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    format!("`{inner}`")
}

/// Cuts a Markdown comment longer than `limit` at a line, closes a `<details>` left
/// open, and says how many table rows and list items were left out and how to see all.
pub fn fit_comment(mut s: String, limit: usize, see_all: &str) -> String {
    if s.len() <= limit {
        return s;
    }
    let mut room = limit.saturating_sub(600);
    while !s.is_char_boundary(room) {
        room -= 1;
    }
    let cut = s[..room].rfind('\n').map_or(0, |i| i + 1);
    let rest = s.split_off(cut);
    let left = rest
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| |") || l.starts_with("- "))
        .count();
    if s.matches("<details>").count() > s.matches("</details>").count() {
        s.push_str("\n</details>\n");
    }
    let _ = writeln!(
        s,
        "\n⚠️ **{left} rows left out** to keep this comment under {limit} characters. \
         To see all of it, run {}.",
        code(see_all)
    );
    s
}

/// `2026-12-15T18:00:00Z`: RFC 3339 in UTC, to the second, as people type it in grants.
pub fn instant(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `in 12d 4h`, `3h 5m ago`: coarse, two units at most.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let d: SignedDuration = t.duration_since(now);
    let secs = d.as_secs().unsigned_abs();
    let parts = [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut out = Vec::new();
    let mut rest = secs;
    for (unit, len) in parts {
        if rest >= len && out.len() < 2 {
            out.push(format!("{}{unit}", rest / len));
            rest %= len;
        } else if !out.is_empty() {
            break;
        }
    }
    let text = if out.is_empty() {
        "0s".to_string()
    } else {
        out.join(" ")
    };
    if d.is_negative() {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// "until 2026-12-15T18:00:00Z, in 12d 4h" / "expired 2026-11-20T00:00:00Z, 3d ago"; for a
/// native expiry, how far away it is.
fn window(c: &Change, now: Timestamp) -> String {
    if let Some(until) = c.expiry() {
        return until.map(|u| relative(u, now)).unwrap_or_default();
    }
    let Some(g) = &c.grant else {
        return String::new();
    };
    match g.expires {
        Some(e) if e <= now => format!("expired {}, {}", instant(e), relative(e, now)),
        Some(e) => format!("until {}, {}", instant(e), relative(e, now)),
        None => String::new(),
    }
}

fn what(c: &Change) -> String {
    match (c.entitlement(), c.expiry()) {
        (Some(e), _) => format!("{} {e}", c.verb()),
        (None, Some(Some(until))) => format!("{} {}", c.verb(), instant(until)),
        _ => c.verb().to_string(),
    }
}

/// The sign of a change: `+` gives, `-` takes away, `~` moves a native expiry.
fn sign(c: &Change) -> &'static str {
    if c.is_removal() {
        "-"
    } else if c.expiry().is_some() {
        "~"
    } else {
        "+"
    }
}

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const BOLD: Style = Style::new().bold();
const PLAIN: Style = Style::new();

/// The plan for a terminal; `color` adds ANSI colours.
/// What apply would refuse, and how to release it.
fn refusal_text(r: &super::Refusal) -> String {
    let what = if r.expiries_only {
        "apply would grant nothing and apply only expiries"
    } else {
        "apply would apply nothing"
    };
    let release = if r.release.is_empty() {
        String::new()
    } else {
        format!("; release with {} \"<reason>\"", r.release)
    };
    format!("{} check: {}; {what}{release}", r.check, r.message)
}

pub fn text(plan: &Plan, color: bool) -> String {
    // Every line of data goes through `paint`, which escapes it before adding colour.
    let paint = |code: Style, s: &str| {
        let s = escape_controls(s);
        if color {
            format!("{code}{s}{code:#}")
        } else {
            s.into_owned()
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(
            BOLD,
            &format!("Plan for {} at {}", plan.revision, instant(plan.now))
        )
    );
    for r in &plan.refusals {
        let _ = writeln!(
            out,
            "{}",
            paint(RED, &format!("REFUSED: {}", refusal_text(r)))
        );
    }
    for hold in &plan.holds {
        let state = if plan.override_reason.is_some() {
            "overridden"
        } else {
            "HELD"
        };
        let _ = writeln!(out, "{}", paint(RED, &format!("{state}: {}", hold.message)));
    }
    if let Some(r) = &plan.override_reason {
        let _ = writeln!(out, "{}", paint(PLAIN, &format!("override: {r}")));
    } else if !plan.holds.is_empty() {
        let _ = writeln!(
            out,
            "apply would apply nothing; release with --allow-mass-revoke \"<reason>\""
        );
    }
    for s in &plan.systems {
        for w in &s.warnings {
            let _ = writeln!(
                out,
                "{}",
                paint(YELLOW, &format!("warning: system {}: {w}", s.system))
            );
        }
        if let Some(e) = &s.error {
            let _ = writeln!(
                out,
                "{}",
                paint(RED, &format!("error: system {}: {e}", s.system))
            );
        } else if let Some(Completeness::Partial(why)) = &s.completeness {
            let _ = writeln!(
                out,
                "{}",
                paint(
                    YELLOW,
                    &format!(
                        "partial read of system {}: {why} (nothing is pruned there)",
                        s.system
                    )
                )
            );
        }
    }
    let mut by_system: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        by_system.entry(&c.system).or_default().push(c);
    }
    for (system, changes) in by_system {
        let _ = writeln!(out, "\n{}", paint(BOLD, system));
        for c in changes {
            let sign = sign(c);
            let code = match sign {
                "-" => RED,
                "~" => YELLOW,
                _ => GREEN,
            };
            let mut line = format!(
                "  {sign} {:<28} {:<32} {}",
                c.op.identity(),
                what(c),
                c.reason.as_str()
            );
            let w = window(c, plan.now);
            if !w.is_empty() {
                line.push_str(&format!("  ({w})"));
            }
            if let Some(e) = &c.retry {
                line.push_str(&format!("  (retry; last failed: {e})"));
            }
            let _ = writeln!(out, "{}", paint(code, line.trim_end()));
        }
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(
                YELLOW,
                "Drift (undeclared access left in place; set prune: true to revoke)"
            )
        );
        for c in &plan.drift {
            let line = format!("  ~ {:<12} {:<28} {}", c.system, c.op.identity(), what(c));
            let _ = writeln!(out, "{}", paint(PLAIN, &line));
        }
    }
    if !plan.out_of_scope.is_empty() {
        let _ = writeln!(
            out,
            "\nOut of scope (not managed by latchkey, never changed)"
        );
        for o in &plan.out_of_scope {
            let line = format!("  ! {:<12} {:<28} {}", o.system, o.identity, o.note);
            let _ = writeln!(out, "{}", paint(PLAIN, &line));
        }
    }
    let (adds, removes, expiries, adoptions) = counts(plan);
    let _ = writeln!(
        out,
        "\n{} change{}: {adds} to grant, {removes} to revoke{}; {} drift.",
        plan.changes.len(),
        if plan.changes.len() == 1 { "" } else { "s" },
        others(expiries, adoptions),
        plan.drift.len()
    );
    if let Some(n) = plan.next_change {
        let _ = writeln!(
            out,
            "Next time-driven change at {} ({}).",
            instant(n),
            relative(n, plan.now)
        );
    }
    out
}

/// `s` with control characters (ESC, NUL, CR, …; also newlines, since every caller
/// renders one line) written as `\u{1b}`: what a system returns never reaches a
/// terminal raw, where it could recolour or rewrite what is shown.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// (to grant, to revoke, native expiries to set, accounts to adopt).
fn counts(plan: &Plan) -> (usize, usize, usize, usize) {
    let removes = plan.changes.iter().filter(|c| c.is_removal()).count();
    let expiries = plan.changes.iter().filter(|c| c.expiry().is_some()).count();
    let adoptions = plan
        .changes
        .iter()
        .filter(|c| matches!(c.op, Op::AdoptAccount { .. }))
        .count();
    (
        plan.changes.len() - removes - expiries - adoptions,
        removes,
        expiries,
        adoptions,
    )
}

/// `, 2 expiries to set, 1 account to adopt`; nothing for none (most systems have no
/// native expiry, most plans adopt nothing). An adoption grants nothing by itself.
fn others(expiries: usize, adoptions: usize) -> String {
    let mut out = match expiries {
        0 => String::new(),
        1 => ", 1 expiry to set".into(),
        n => format!(", {n} expiries to set"),
    };
    match adoptions {
        0 => {}
        1 => out.push_str(", 1 account to adopt"),
        n => out.push_str(&format!(", {n} accounts to adopt")),
    }
    out
}

/// The plan as a PR comment: the hidden marker, the systems that could not be read (or
/// only in part), summary counts, then per client and system who gains and who loses
/// what, and until when. Everything people typed is escaped; the comment is kept under
/// [`COMMENT_LIMIT`].
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let (adds, removes, expiries, adoptions) = counts(plan);
    let _ = writeln!(out, "{PLAN_MARKER}");
    let _ = writeln!(out, "### latchkey plan for {}\n", code(&plan.revision));
    let failed: Vec<_> = plan.systems.iter().filter(|s| s.error.is_some()).collect();
    let partial: Vec<_> = plan
        .systems
        .iter()
        .filter_map(|s| match &s.completeness {
            Some(Completeness::Partial(why)) if s.error.is_none() => Some((s, why)),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            out,
            "> ❌ **{} of {} systems could not be read: nothing is planned for them, and this \
             plan says nothing about whether they match git.**",
            failed.len(),
            plan.systems.len()
        );
        for s in &failed {
            let _ = writeln!(
                out,
                "> - {}: {}",
                code(&s.system),
                md(s.error.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    if !partial.is_empty() {
        let _ = writeln!(
            out,
            "> ⚠️ **{} system{} read only in part: nothing is pruned there.**",
            partial.len(),
            if partial.len() == 1 { " was" } else { "s were" }
        );
        for (s, why) in &partial {
            let _ = writeln!(out, "> - {}: {}", code(&s.system), md(why));
        }
        out.push('\n');
    }
    for s in &plan.systems {
        for w in &s.warnings {
            let _ = writeln!(out, "> ⚠️ {}: {}\n", code(&s.system), md(w));
        }
    }
    let _ = writeln!(
        out,
        "**{} changes**: {adds} to grant, {removes} to revoke{}, {} drift, {} out of scope. Evaluated at {}.\n",
        plan.changes.len(),
        others(expiries, adoptions),
        plan.drift.len(),
        plan.out_of_scope.len(),
        instant(plan.now)
    );
    for r in &plan.refusals {
        let _ = writeln!(out, "> **Refused:** {}\n", refusal_text(r));
    }
    for hold in &plan.holds {
        let state = if plan.override_reason.is_some() {
            "Overridden"
        } else {
            "Held"
        };
        let _ = writeln!(out, "> **{state}:** {}\n", md(&hold.message));
    }
    let mut by_client: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        by_client
            .entry(c.client.clone().unwrap_or_else(|| "(shared)".into()))
            .or_default()
            .push(c);
    }
    for (client, changes) in by_client {
        let _ = writeln!(out, "#### {}\n", md(&client));
        let _ = writeln!(
            out,
            "| | Person | System | Change | Role | Reason | Until |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for c in changes {
            let sign = match sign(c) {
                "-" => "➖",
                "~" => "⏳",
                _ => "➕",
            };
            let role = c.grant.as_ref().map(|g| &*g.role).unwrap_or("");
            let until = c
                .expiry()
                .unwrap_or_else(|| c.grant.as_ref().and_then(|g| g.expires))
                .map(|e| format!("{} ({})", instant(e), relative(e, plan.now)))
                .unwrap_or_else(|| "–".into());
            // The Until column already shows a native expiry's instant.
            let change = if c.expiry().is_some() {
                c.verb().to_string()
            } else {
                what(c)
            };
            let _ = writeln!(
                out,
                "| {sign} | {} | {} | {} | {} | {}{} | {until} |",
                md(c.op.identity()),
                md(&c.system),
                md(&change),
                md(role),
                c.reason.as_str(),
                if c.retry.is_some() { " (retry)" } else { "" }
            );
        }
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Drift: {} undeclared entitlements left in place</summary>\n",
            plan.drift.len()
        );
        for c in &plan.drift {
            let _ = writeln!(
                out,
                "- {} {} on {}",
                md(c.op.identity()),
                md(&what(c)),
                md(&c.system)
            );
        }
        let _ = writeln!(out, "\n</details>\n");
    }
    if plan.changes.is_empty() {
        if failed.is_empty() && partial.is_empty() {
            let _ = writeln!(out, "No changes: the systems match git.");
        } else {
            let _ = writeln!(
                out,
                "No changes planned for what could be read; the systems above were not \
                 (fully) read."
            );
        }
    }
    // Data from the systems never reaches a reader's terminal or page raw.
    let out: String = out
        .lines()
        .map(|l| escape_controls(l).into_owned() + "\n")
        .collect();
    fit_comment(
        out,
        COMMENT_LIMIT,
        &format!(
            "latchkey plan --rev {} --now {} --format json",
            plan.revision,
            instant(plan.now)
        ),
    )
}

/// The plan as pretty JSON.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_characters_from_a_system_are_escaped() {
        assert_eq!(
            super::escape_controls("erin@acme.example"),
            "erin@acme.example"
        );
        assert_eq!(
            super::escape_controls("x\u{1b}[2Jy\0z\n"),
            "x\\u{1b}[2Jy\\u{0}z\\u{a}"
        );
    }

    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now: Timestamp = "2026-12-03T14:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-12-15T18:00:00Z".parse().unwrap();
        assert_eq!(relative(later, now), "in 12d 4h");
        assert_eq!(relative(now, later), "12d 4h ago");
        assert_eq!(instant(later), "2026-12-15T18:00:00Z");
    }

    #[test]
    fn typed_text_adds_no_column_and_no_html() {
        assert_eq!(
            md("{client}:reports | EU <b>bold</b>"),
            "{client}:reports \\| EU &lt;b&gt;bold&lt;/b&gt;"
        );
        assert_eq!(md("a_b *c* `d` [e](f)"), "a\\_b \\*c\\* \\`d\\` \\[e\\](f)");
    }

    #[test]
    fn a_long_comment_is_cut_at_a_line_and_closes_its_details() {
        let mut s = String::from("<details>\n\n| | a |\n|---|---|\n");
        for i in 0..1000 {
            s.push_str(&format!("| {i} | row |\n"));
        }
        let out = fit_comment(s, 5_000, "latchkey plan --format json");
        assert!(out.len() <= 5_000, "{}", out.len());
        assert!(out.contains("</details>"));
        assert!(out.contains("rows left out"), "{out}");
        assert!(out.ends_with("`latchkey plan --format json`.\n"), "{out}");
    }
}
