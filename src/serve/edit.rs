//! The edits an administrator makes on the page, as new text for one file under
//! `clients/<client>/`.
//!
//! An edit rewrites only the document it changes; every other byte of the file (the
//! other people, comments, the header) stays as written. A file is split at its `---`
//! lines, and the split is used only when it yields exactly the documents the YAML
//! parser sees, each with the person it should hold: a layout the split would misread
//! is refused, with the file to edit in git instead, never guessed at.

use jiff::Timestamp;

use crate::model::{ApiVersion, Envelope, Grant, Kind, MemberSpec, Metadata, identity};

/// What an administrator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new person with one grant.
    Invite {
        email: String,
        display_name: Option<String>,
        role: String,
        expires: Option<Timestamp>,
        reason: Option<String>,
    },
    /// One of a person's grants, to another role.
    ChangeRole {
        email: String,
        from: String,
        to: String,
        reason: Option<String>,
    },
    /// Sets, moves or clears (`None`) the end of one of a person's grants.
    SetExpiry {
        email: String,
        role: String,
        expires: Option<Timestamp>,
        reason: Option<String>,
    },
    /// Offboards the person: `offboarded: true`, kept in git for the record, revoked on
    /// every system once merged.
    Remove {
        email: String,
        reason: Option<String>,
    },
}

impl Action {
    /// The person the action is about.
    pub fn email(&self) -> &str {
        match self {
            Action::Invite { email, .. }
            | Action::ChangeRole { email, .. }
            | Action::SetExpiry { email, .. }
            | Action::Remove { email, .. } => email,
        }
    }

    /// The reason the administrator gave, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Action::Invite { reason, .. }
            | Action::ChangeRole { reason, .. }
            | Action::SetExpiry { reason, .. }
            | Action::Remove { reason, .. } => reason.as_deref(),
        }
    }

    /// A commit subject: `acme: invite zoe@acme.example as client-finance`.
    pub fn subject(&self, client: &str) -> String {
        match self {
            Action::Invite { email, role, .. } => {
                format!("{client}: invite {email} as {role}")
            }
            Action::ChangeRole {
                email, from, to, ..
            } => {
                format!("{client}: {email} from {from} to {to}")
            }
            Action::SetExpiry {
                email,
                role,
                expires: Some(t),
                ..
            } => format!(
                "{client}: {email}'s {role} ends {}",
                crate::plan::render::instant(*t)
            ),
            Action::SetExpiry {
                email,
                role,
                expires: None,
                ..
            } => format!("{client}: {email}'s {role} without end"),
            Action::Remove { email, .. } => format!("{client}: offboard {email}"),
        }
    }
}

/// Why an edit cannot be made; each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{email} is already on the team; change their grants instead")]
    AlreadyMember { email: String },
    #[error("{email} is declared for the client {client}; ask the agency to move them")]
    ElsewhereDeclared { email: String, client: String },
    #[error(
        "{email} is declared in {file}, outside the client's folder: the agency manages that file"
    )]
    OutsideFolder { email: String, file: String },
    #[error("{email} is not on this client's team")]
    NotMember { email: String },
    #[error("{email} holds no {role} grant")]
    NoSuchGrant { email: String, role: String },
    #[error("{email} already holds {role}")]
    AlreadyHolds { email: String, role: String },
    #[error("{email} is already offboarded")]
    AlreadyOffboarded { email: String },
    #[error(
        "{email} has no {role} grant the page can change: it has a `for:` or `starts:` window; edit {file} in git"
    )]
    Windowed {
        email: String,
        role: String,
        file: String,
    },
    #[error("{file} is laid out in a way the page cannot edit safely ({why}); edit it in git")]
    Layout { file: String, why: String },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{email:?} is not an email address")]
    BadEmail { email: String },
}

/// A person's document as the page found it: the file and the document's index in it.
#[derive(Clone, Debug)]
pub struct Found<'a> {
    pub file: &'a str,
    pub doc: usize,
    pub name: &'a str,
    pub spec: &'a MemberSpec,
}

/// The file an invite is added to, and a Member name no one else uses.
pub struct NewPerson<'a> {
    /// The client's file that holds most of its members, or `clients/<client>/members.yaml`.
    pub file: &'a str,
    /// Its current text (empty when it does not exist yet).
    pub text: &'a str,
    pub name: String,
}

/// The text of `file` after `action`, for a person already declared in it (`found`).
pub fn edit_existing(text: &str, found: &Found<'_>, action: &Action) -> Result<String, EditError> {
    let mut spec = found.spec.clone();
    let email = found.spec.email.clone();
    if spec.offboarded {
        return Err(EditError::AlreadyOffboarded { email });
    }
    let windowed = |g: &Grant| g.valid_for.is_some() || g.starts.is_some();
    match action {
        Action::Invite { .. } => return Err(EditError::AlreadyMember { email }),
        Action::ChangeRole {
            from, to, reason, ..
        } => {
            if spec
                .grants
                .iter()
                .any(|g| *g.role == **to && g.client.is_none())
            {
                return Err(EditError::AlreadyHolds {
                    email,
                    role: to.clone(),
                });
            }
            let g = own_grant(&mut spec, &email, from)?;
            g.role = to.as_str().into();
            // A new role is a new grant: its last review was of the old one.
            g.reviewed = None;
            if let Some(r) = reason {
                g.reason = Some(r.as_str().into());
            }
        }
        Action::SetExpiry {
            role,
            expires,
            reason,
            ..
        } => {
            let file = found.file.to_string();
            let g = own_grant(&mut spec, &email, role)?;
            if windowed(g) {
                return Err(EditError::Windowed {
                    email,
                    role: role.clone(),
                    file,
                });
            }
            g.expires = expires.map(|t| crate::plan::render::instant(t).into());
            if let Some(r) = reason {
                g.reason = Some(r.as_str().into());
            }
        }
        Action::Remove { .. } => spec.offboarded = true,
    }
    let docs = split(text, found.file)?;
    let Some(span) = docs.get(found.doc) else {
        return Err(layout(found.file, "a document the parser sees is missing"));
    };
    // The split must put this person in the document the loader found them in.
    let parsed: Option<Envelope<MemberSpec>> = serde_yaml::from_str(&text[span.clone()]).ok();
    if parsed
        .as_ref()
        .is_none_or(|e| e.metadata.name != found.name || e.spec != *found.spec)
    {
        return Err(layout(
            found.file,
            "its `---` lines do not separate the documents",
        ));
    }
    // Comment lines at the head of the document (the file's header, a note on the
    // person) stay; the document's content is written anew.
    let head: usize = text[span.clone()]
        .split_inclusive('\n')
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        .map(str::len)
        .sum();
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..span.start + head]);
    out.push_str(&document(found.name, spec));
    out.push_str(&text[span.end..]);
    Ok(out)
}

/// The text of the client's file after inviting a person who is in no file yet.
pub fn add_person(new: &NewPerson<'_>, client: &str, action: &Action) -> Result<String, EditError> {
    let Action::Invite {
        email,
        display_name,
        role,
        expires,
        reason,
    } = action
    else {
        return Err(EditError::NotMember {
            email: action.email().to_string(),
        });
    };
    let spec = MemberSpec {
        email: email.clone(),
        display_name: display_name.clone(),
        client: client.to_string(),
        offboarded: false,
        grants: vec![Grant {
            role: role.as_str().into(),
            client: None,
            expires: expires.map(|t| crate::plan::render::instant(t).into()),
            valid_for: None,
            starts: None,
            reason: reason.as_deref().map(Into::into),
            reviewed: None,
        }],
    };
    let mut out = new.text.to_string();
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("---\n");
    }
    out.push_str(&document(&new.name, spec));
    Ok(out)
}

/// A Member name for `email` that is not in `taken`: the address's local part in
/// lower case, letters, digits and `-` only, with `-2`, `-3`… when it is taken.
pub fn member_name(email: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let mut base: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base = base.trim_matches('-').to_string();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    if base.is_empty() {
        base = "person".into();
    }
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken(n))
        .expect("some suffix is free")
}

/// Checks what a form typed for an email: one `@`, something either side, no spaces.
pub fn check_email(email: &str) -> Result<String, EditError> {
    let e = email.trim();
    let ok = e.split('@').count() == 2
        && e.split('@').all(|p| !p.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(e.to_string())
    } else {
        Err(EditError::BadEmail { email: e.into() })
    }
}

/// The grant of `spec` for `role` on its own client.
fn own_grant<'a>(
    spec: &'a mut MemberSpec,
    email: &str,
    role: &str,
) -> Result<&'a mut Grant, EditError> {
    spec.grants
        .iter_mut()
        .find(|g| *g.role == *role && g.client.is_none())
        .ok_or_else(|| EditError::NoSuchGrant {
            email: email.to_string(),
            role: role.to_string(),
        })
}

/// A Member document as YAML, ending in a newline.
fn document(name: &str, spec: MemberSpec) -> String {
    let env = Envelope {
        api_version: ApiVersion,
        kind: Kind::Member,
        metadata: Metadata {
            name: name.to_string(),
            labels: Default::default(),
            annotations: Default::default(),
        },
        spec,
    };
    serde_yaml::to_string(&env).expect("a Member serialises")
}

fn layout(file: &str, why: &str) -> EditError {
    EditError::Layout {
        file: file.to_string(),
        why: why.to_string(),
    }
}

/// The byte range of each document of `text`, as the YAML parser counts them (an empty
/// document counts too), each without its `---` line. Refuses directives (`%YAML`) and
/// `...` end markers, which the split does not follow.
fn split(text: &str, file: &str) -> Result<Vec<std::ops::Range<usize>>, EditError> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    // A `---` before any content (blank and comment lines aside) opens the first
    // document; every later one ends the document before it.
    let mut opened = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.starts_with('%') || bare == "..." {
            return Err(layout(file, "it has YAML directives or `...` markers"));
        }
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if marker {
            if bare != "---" {
                return Err(layout(file, "a `---` line holds content"));
            }
            if opened {
                spans.push(start..offset);
            }
            opened = true;
            start = offset + line.len();
        } else if !bare.trim().is_empty() && !bare.trim_start().starts_with('#') {
            opened = true;
        }
        offset += line.len();
    }
    spans.push(start..text.len());
    let expected = serde_yaml::Deserializer::from_str(text).count();
    if spans.len() != expected {
        return Err(layout(
            file,
            "its `---` lines do not match the documents the YAML parser reads",
        ));
    }
    Ok(spans)
}

/// True when two emails name one person.
pub fn same_person(a: &str, b: &str) -> bool {
    identity(a) == identity(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# ACME's team. ACME's admins may change this file.
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: dana
spec:
  email: dana@acme.example
  client: acme
  grants:
    - role: client-project
---
# Erin keeps her comment.
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: erin
spec:
  email: erin@acme.example
  client: acme
  grants:
    - role: client-finance
    - role: client-staging-admin
      expires: 2026-12-15T18:00:00Z
      reason: UAT
";

    fn spec_of(text: &str, doc: usize) -> (String, MemberSpec) {
        let de = serde_yaml::Deserializer::from_str(text).nth(doc).unwrap();
        let env: Envelope<MemberSpec> = serde::Deserialize::deserialize(de).unwrap();
        (env.metadata.name, env.spec)
    }

    fn edit(text: &str, doc: usize, action: Action) -> Result<String, EditError> {
        let (name, spec) = spec_of(text, doc);
        let found = Found {
            file: "clients/acme/members.yaml",
            doc,
            name: &name,
            spec: &spec,
        };
        edit_existing(text, &found, &action)
    }

    #[test]
    fn an_edit_rewrites_only_its_document() {
        let out = edit(
            FILE,
            1,
            Action::SetExpiry {
                email: "erin@acme.example".into(),
                role: "client-finance".into(),
                expires: Some("2026-12-20T00:00:00Z".parse().unwrap()),
                reason: None,
            },
        )
        .unwrap();
        let (_, erin) = spec_of(&out, 1);
        assert_eq!(
            erin.grants[0].expires.as_deref(),
            Some("2026-12-20T00:00:00Z")
        );
        assert_eq!(erin.grants[1].reason.as_deref(), Some("UAT"));
        // Dana's document, the header comment and the separator are byte for byte.
        let cut = FILE.find("---\n").unwrap() + 4;
        assert_eq!(&out[..cut], &FILE[..cut]);
        assert_eq!(spec_of(&out, 0), spec_of(FILE, 0));
    }

    #[test]
    fn removing_offboards_and_keeps_the_person_for_the_record() {
        let out = edit(
            FILE,
            0,
            Action::Remove {
                email: "dana@acme.example".into(),
                reason: None,
            },
        )
        .unwrap();
        let (_, dana) = spec_of(&out, 0);
        assert!(dana.offboarded);
        assert_eq!(dana.grants.len(), 1);
        assert!(out.starts_with("# ACME's team."), "{out}");
        assert!(out.contains("# Erin keeps her comment."));
    }

    #[test]
    fn a_role_change_drops_the_old_review_and_refuses_a_role_held() {
        let out = edit(
            FILE,
            1,
            Action::ChangeRole {
                email: "erin@acme.example".into(),
                from: "client-finance".into(),
                to: "client-viewer".into(),
                reason: Some("moved to reporting".into()),
            },
        )
        .unwrap();
        let (_, erin) = spec_of(&out, 1);
        assert_eq!(&*erin.grants[0].role, "client-viewer");
        assert_eq!(erin.grants[0].reason.as_deref(), Some("moved to reporting"));
        let held = edit(
            FILE,
            1,
            Action::ChangeRole {
                email: "erin@acme.example".into(),
                from: "client-finance".into(),
                to: "client-staging-admin".into(),
                reason: None,
            },
        );
        assert!(
            matches!(held, Err(EditError::AlreadyHolds { .. })),
            "{held:?}"
        );
    }

    #[test]
    fn an_invite_appends_a_document_and_leaves_the_file_as_it_was() {
        let new = NewPerson {
            file: "clients/acme/members.yaml",
            text: FILE,
            name: member_name("Zoe.Quinn+x@acme.example", &|n| n == "zoe-quinn-x"),
        };
        assert_eq!(new.name, "zoe-quinn-x-2");
        let action = Action::Invite {
            email: "zoe@acme.example".into(),
            display_name: Some("Zoe: \"the new hire\"".into()),
            role: "client-finance".into(),
            expires: Some("2026-12-20T00:00:00Z".parse().unwrap()),
            reason: Some("# not a comment".into()),
        };
        let out = add_person(&new, "acme", &action).unwrap();
        assert!(out.starts_with(FILE));
        let (name, zoe) = spec_of(&out, 2);
        assert_eq!(name, "zoe-quinn-x-2");
        assert_eq!(zoe.display_name.as_deref(), Some("Zoe: \"the new hire\""));
        assert_eq!(zoe.grants[0].reason.as_deref(), Some("# not a comment"));
        assert_eq!(zoe.client, "acme");
        // Into a file that does not exist yet: one document, no separator.
        let empty = NewPerson { text: "", ..new };
        let out = add_person(&empty, "acme", &action).unwrap();
        assert!(out.starts_with("apiVersion:"), "{out}");
    }

    #[test]
    fn a_layout_the_split_would_misread_is_refused() {
        // A block scalar holding a `---`-looking line.
        let odd = FILE.replacen("      reason: UAT\n", "      reason: |\n        --- x\n", 1);
        for text in [
            format!("%YAML 1.2\n---\n{FILE}"),
            odd,
            FILE.replace("---\n", "--- # sep\n"),
        ] {
            let docs = serde_yaml::Deserializer::from_str(&text).count();
            let r = edit(
                &text,
                docs - 1,
                Action::Remove {
                    email: "erin@acme.example".into(),
                    reason: None,
                },
            );
            if let Ok(out) = &r {
                // Accepted only when the edit is exactly right.
                let (_, erin) = spec_of(out, docs - 1);
                assert!(erin.offboarded, "{text}");
                assert_eq!(spec_of(out, 0), spec_of(&text, 0));
            } else {
                assert!(matches!(r, Err(EditError::Layout { .. })), "{r:?}");
            }
        }
        // A leading `---` opens the first document.
        let lead = format!("---\n{FILE}");
        let out = edit(
            &lead,
            0,
            Action::Remove {
                email: "dana@acme.example".into(),
                reason: None,
            },
        )
        .unwrap();
        assert!(spec_of(&out, 0).1.offboarded);
        assert!(out.starts_with("---\n"));
    }

    #[test]
    fn emails_are_checked_and_names_are_safe() {
        assert!(check_email("a@b.example").is_ok());
        for bad in ["", "a", "a@", "@b", "a@b@c", "a b@c", "a\n@b"] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(member_name("--@x", &|_| false), "person");
        assert_eq!(member_name("O'Brien@x", &|_| false), "o-brien");
    }
}
