//! The page's routes.
//!
//! Every POST passes three gates before it reads its form: a live session, an `Origin`
//! (when the browser sends one) that is the page's own, and the session's CSRF token.
//! A failure at any gate is a 403 and changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use jiff::Timestamp;
use maud::Markup;

use super::edit::{self, Action};
use super::forge;
use super::oidc::{Identity, LoginStart, Provider};
use super::pages;
use super::session::{self, COOKIE, LOGIN_COOKIE, Session};
use super::work::{self, Refusal, Workspace};
use super::{App, PROPOSAL_TTL, Proposal};
use crate::plan::review;
use crate::trust::boundary;

type Form = axum::extract::Form<HashMap<String, String>>;

/// Reviews one person may have waiting for confirmation at once.
const PROPOSALS_PER_PERSON: usize = 20;

/// The routes, with the headers every answer carries.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/clients/{client}", get(client_page))
        .route("/clients/{client}/access", get(access))
        .route("/clients/{client}/people/{email}/history", get(history))
        .route("/clients/{client}/invite", post(invite))
        .route("/clients/{client}/people/{email}/{action}", post(person))
        .route("/proposals/{id}/confirm", post(confirm))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// No script may run, nothing may frame the page, forms go only to the page itself, and
/// no answer is cached (they show who has access).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    res
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

impl App {
    async fn provider(&self) -> Result<&Provider, super::oidc::OidcError> {
        self.oidc
            .get_or_try_init(|| Provider::discover(self.cfg.oidc.clone(), self.http.clone()))
            .await
    }

    /// The signed-in session the request's cookie names.
    fn session(&self, jar: &CookieJar) -> Option<(String, Session)> {
        let id = jar.get(COOKIE)?.value().to_string();
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let s = sessions.get(&id, Instant::now())?.clone();
        Some((id, s))
    }

    /// A POST from a page of ours: the Origin, when sent, is ours, and the form holds
    /// the session's token.
    fn genuine(&self, s: &Session, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
        let ours = self.cfg.public_url.origin().ascii_serialization();
        let origin_ok = headers
            .get(header::ORIGIN)
            .is_none_or(|o| o.to_str().is_ok_and(|o| o == ours));
        origin_ok && session::csrf_ok(s, form.get("csrf").map(String::as_str))
    }
}

/// Runs `f` on the workspace off the async threads.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Workspace) -> T + Send + 'static,
) -> T {
    let work = app.work.clone();
    tokio::task::spawn_blocking(move || {
        // A panic mid-request leaves only caches behind: the next request reloads.
        let mut w = work.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    })
    .await
    .expect("a workspace task does not panic")
}

fn page(status: StatusCode, m: Markup) -> Response {
    (status, m).into_response()
}

fn forbidden(who: Option<(&Identity, &str)>, why: &str) -> Response {
    page(StatusCode::FORBIDDEN, pages::forbidden(who, why))
}

/// 503 for a signed-in person: what failed on the way (git, the ledger); nothing changed.
fn unavailable(s: &Session, what: &str) -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::failed(Some((&s.who, &s.csrf)), what),
    )
}

/// Adds a `Set-Cookie` for `name` (an empty value with `max_age` 0 clears it).
fn set_cookie(res: &mut Response, name: &str, value: &str, max_age: std::time::Duration) {
    if let Ok(v) = HeaderValue::from_str(&session::cookie(name, value, max_age)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

async fn home(State(app): State<Arc<App>>, jar: CookieJar) -> Response {
    let Some((_, s)) = app.session(&jar) else {
        return page(StatusCode::OK, pages::signed_out());
    };
    let email = s.who.email.clone();
    let clients = blocking(&app, move |w| {
        w.tip_to_show(Timestamp::now())
            .map(|tip| work::clients_of(&tip.loaded.catalog, &email))
    })
    .await;
    match clients {
        Ok(c) => page(StatusCode::OK, pages::home(&s.who, &s.csrf, &c)),
        Err(e) => unavailable(&s, &crate::source::error_chain(&e)),
    }
}

async fn login(State(app): State<Arc<App>>) -> Response {
    let provider = match app.provider().await {
        Ok(p) => p,
        Err(e) => {
            app.metrics.sign_in("issuer-unreachable");
            tracing::warn!(error = %e, "sign-in: the issuer is not available");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::failed(None, &format!("Sign-in is not available: {e}")),
            );
        }
    };
    let start = LoginStart::new();
    let url = provider.authorize_url(&start);
    let state = start.state.clone();
    app.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .start_login(start, Instant::now());
    let mut res = see_other(&url);
    set_cookie(&mut res, LOGIN_COOKIE, &state, session::LOGIN_TTL);
    res
}

async fn callback(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(err) = q.get("error") {
        app.metrics.sign_in("refused-by-issuer");
        let detail = q.get("error_description").map(String::as_str).unwrap_or("");
        return forbidden(None, &format!("The sign-in was refused: {err} {detail}"));
    }
    let (Some(state), Some(code)) = (q.get("state"), q.get("code")) else {
        return forbidden(None, "The sign-in answer has no code; sign in again.");
    };
    // The state must come back to the browser that asked for it (no login CSRF).
    if jar.get(LOGIN_COOKIE).map(|c| c.value()) != Some(state.as_str()) {
        app.metrics.sign_in("state-mismatch");
        return forbidden(None, "This sign-in was not started here; sign in again.");
    }
    let start = app
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take_login(state, Instant::now());
    let Some(start) = start else {
        app.metrics.sign_in("expired");
        return forbidden(
            None,
            "The sign-in expired or was used already; sign in again.",
        );
    };
    let who = match app.provider().await {
        Ok(p) => p.finish(code, &start).await,
        Err(e) => Err(e),
    };
    let who = match who {
        Ok(w) => w,
        Err(e) => {
            app.metrics.sign_in("invalid");
            tracing::warn!(error = %e, "sign-in refused");
            return forbidden(None, &format!("The sign-in was refused: {e}"));
        }
    };
    tracing::info!(email = %who.email, "signed in");
    app.metrics.sign_in("ok");
    let id = app
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .open(who, Instant::now());
    let mut res = see_other("/");
    set_cookie(&mut res, COOKIE, &id, session::SESSION_TTL);
    set_cookie(&mut res, LOGIN_COOKIE, "", std::time::Duration::ZERO);
    res
}

async fn logout(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let Some((id, s)) = app.session(&jar) else {
        return see_other("/");
    };
    if !app.genuine(&s, &headers, &form) {
        return forbidden(
            Some((&s.who, &s.csrf)),
            "This form did not come from this page.",
        );
    }
    app.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .close(&id);
    let mut res = see_other("/");
    set_cookie(&mut res, COOKIE, "", std::time::Duration::ZERO);
    res
}

/// A client page's frame: the session, and the tip when `email` may see `client`.
/// `fresh` fetches first (the ledger's answers must not lag the branch); otherwise a
/// fetch a few seconds old is good enough to show the team.
async fn with_client<F>(
    app: &Arc<App>,
    jar: &CookieJar,
    client: String,
    fresh: bool,
    f: F,
) -> Response
where
    F: FnOnce(&mut Workspace, &work::Tip, &Session) -> Response + Send + 'static,
{
    let Some((_, s)) = app.session(jar) else {
        return see_other("/");
    };
    blocking(app, move |w| {
        let now = Timestamp::now();
        let tip = if fresh {
            w.tip(now, std::time::Duration::ZERO)
        } else {
            w.tip_to_show(now)
        };
        let tip = match tip {
            Ok(t) => t,
            Err(e) => return unavailable(&s, &crate::source::error_chain(&e)),
        };
        if !work::admin_of(&tip.loaded.catalog, &client, &s.who.email) {
            return forbidden(
                Some((&s.who, &s.csrf)),
                &format!("{} does not administer the client {client:?}.", s.who.email),
            );
        }
        f(w, &tip, &s)
    })
    .await
}

async fn client_page(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    Path(client): Path<String>,
) -> Response {
    let name = client.clone();
    with_client(&app, &jar, client, false, move |w, tip, s| {
        let c = &tip.loaded.catalog.clients[&name];
        let view = pages::ClientPage {
            name: &name,
            display: c.spec.display_name.as_deref().unwrap_or(&name),
            allowed_roles: &c.spec.allowed_roles,
            max_duration: c.spec.max_grant_duration.as_deref(),
            direct: c.spec.direct_commits,
            people: w.people(tip, &name),
            pending: w.pending(tip, &name),
            revision: tip.rev.display(),
            now: Timestamp::now(),
        };
        page(StatusCode::OK, pages::client(&s.who, &s.csrf, &view))
    })
    .await
}

async fn access(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    Path(client): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let at = match q.get("at").map(|a| crate::cli::parse_instant_or_date(a)) {
        None => Timestamp::now(),
        Some(Ok(t)) => t,
        Some(Err(e)) => return page(StatusCode::BAD_REQUEST, pages::failed(None, &e)),
    };
    let name = client.clone();
    with_client(&app, &jar, client, true, move |w, tip, s| {
        match w.access_at(tip, &name, at) {
            Ok(rows) => page(
                StatusCode::OK,
                pages::access(&s.who, &s.csrf, &name, at, &rows),
            ),
            Err(e) => unavailable(s, &e),
        }
    })
    .await
}

async fn history(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    Path((client, email)): Path<(String, String)>,
) -> Response {
    let name = client.clone();
    with_client(&app, &jar, client, true, move |w, tip, s| {
        match w.history(tip, &name, &email) {
            Ok(rows) => page(
                StatusCode::OK,
                pages::history(&s.who, &s.csrf, &name, &email, &rows),
            ),
            Err(e) => unavailable(s, &e),
        }
    })
    .await
}

/// A form field, trimmed; `None` when empty. Longer than 500 characters, or holding a
/// control character (a line break would start new lines in the commit message, where
/// trailers are read), is refused.
fn field(form: &HashMap<String, String>, name: &str) -> Result<Option<String>, String> {
    let v = form.get(name).map(|v| v.trim()).unwrap_or("");
    if v.chars().count() > 500 {
        return Err(format!("{name} is longer than 500 characters"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!(
            "{name} holds a line break or another control character"
        ));
    }
    Ok((!v.is_empty()).then(|| v.to_string()))
}

fn required(form: &HashMap<String, String>, name: &'static str) -> Result<String, String> {
    field(form, name)?.ok_or_else(|| edit::EditError::Empty { what: name }.to_string())
}

/// An end typed as a date (`2026-12-20`: its start, UTC) or an RFC 3339 instant; it
/// must be in the future (to end access now, remove the person or the grant).
fn end(form: &HashMap<String, String>, now: Timestamp) -> Result<Option<Timestamp>, String> {
    let Some(v) = field(form, "expires")? else {
        return Ok(None);
    };
    let t = crate::cli::parse_instant_or_date(&v)?;
    if t <= now {
        return Err(format!(
            "the end {v} is not in the future; to end access now, remove the person"
        ));
    }
    Ok(Some(t))
}

async fn invite(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(client): Path<String>,
    form: Form,
) -> Response {
    act(app, jar, headers, client, form, "invite", |f, now| {
        Ok(Action::Invite {
            email: edit::check_email(&required(f, "email")?).map_err(|e| e.to_string())?,
            display_name: field(f, "display_name")?,
            role: required(f, "role")?,
            expires: end(f, now)?,
            reason: field(f, "reason")?,
        })
    })
    .await
}

/// Turns a form into the action it asks for, at the instant given.
type BuildAction =
    Box<dyn FnOnce(&HashMap<String, String>, Timestamp) -> Result<Action, String> + Send>;

/// `POST /clients/{client}/people/{email}/{action}`: `role` (change a grant's role),
/// `expiry` (set, move or clear its end) or `remove` (offboard).
async fn person(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    headers: HeaderMap,
    Path((client, email, action)): Path<(String, String, String)>,
    form: Form,
) -> Response {
    let (kind, build): (&'static str, BuildAction) = match action.as_str() {
        "role" => (
            "change-role",
            Box::new(move |f, _| {
                Ok(Action::ChangeRole {
                    email,
                    from: required(f, "from")?,
                    to: required(f, "to")?,
                    reason: field(f, "reason")?,
                })
            }),
        ),
        "expiry" => (
            "set-expiry",
            Box::new(move |f, now| {
                Ok(Action::SetExpiry {
                    email,
                    role: required(f, "role")?,
                    expires: end(f, now)?,
                    reason: field(f, "reason")?,
                })
            }),
        ),
        "remove" => (
            "remove",
            Box::new(move |f, _| {
                Ok(Action::Remove {
                    email,
                    reason: field(f, "reason")?,
                })
            }),
        ),
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    act(app, jar, headers, client, form, kind, build).await
}

/// The gates, then the proposal: the commit is made and reviewed, and the review shown
/// with the form that confirms it.
async fn act(
    app: Arc<App>,
    jar: CookieJar,
    headers: HeaderMap,
    client: String,
    axum::extract::Form(form): Form,
    kind: &'static str,
    build: impl FnOnce(&HashMap<String, String>, Timestamp) -> Result<Action, String>,
) -> Response {
    let Some((_, s)) = app.session(&jar) else {
        app.metrics.action(kind, "forbidden");
        return forbidden(None, "Sign in first.");
    };
    let me = Some((&s.who, s.csrf.as_str()));
    if !app.genuine(&s, &headers, &form) {
        app.metrics.action(kind, "forbidden");
        tracing::warn!(email = %s.who.email, client, "a form without this session's token was refused");
        return forbidden(me, "This form did not come from this page.");
    }
    let now = Timestamp::now();
    let action = match build(&form, now) {
        Ok(a) => a,
        Err(reason) => {
            app.metrics.action(kind, "refused");
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::refused(&s.who, &s.csrf, &client, &[reason]),
            );
        }
    };
    propose_and_show(&app, &s, client, action, kind, None).await
}

/// Proposes `action` and answers with its review, or why it was refused.
async fn propose_and_show(
    app: &Arc<App>,
    s: &Session,
    client: String,
    action: Action,
    kind: &'static str,
    note: Option<&str>,
) -> Response {
    let who = s.who.clone();
    let (c, a) = (client.clone(), action.clone());
    let proposed = blocking(app, move |w| w.propose(&c, &a, &who, Timestamp::now())).await;
    let p = match proposed {
        Ok(p) => p,
        Err(r) => return refusal(app, s, &client, kind, r),
    };
    app.metrics.action(kind, "proposed");
    let id = session::token();
    let body = review::markdown(
        &p.review,
        &boundary::markdown(&p.boundary),
        "latchkey check --base <branch> --head <this branch>",
    );
    {
        let mut all = app.proposals.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut all, &s.who.email);
        all.insert(
            id.clone(),
            Proposal {
                email: s.who.email.clone(),
                client: client.clone(),
                action,
                commit: p.commit,
                base: p.base,
                created: Instant::now(),
                subject: p.subject.clone(),
                body,
            },
        );
    }
    let view = pages::ReviewPage {
        client: &client,
        subject: &p.subject,
        proposal: &id,
        review: &p.review,
        boundary: &p.boundary,
        diff: &p.diff,
        direct: p.direct,
        note,
    };
    let status = if note.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    page(status, pages::review_page(&s.who, &s.csrf, &view))
}

/// Drops expired reviews, and the oldest of `email`'s beyond [`PROPOSALS_PER_PERSON`]
/// less one (room for the next): one session cannot grow the map without bound.
fn make_room(all: &mut HashMap<String, Proposal>, email: &str) {
    all.retain(|_, p| p.created.elapsed() < PROPOSAL_TTL);
    let mut theirs: Vec<(Instant, String)> = all
        .iter()
        .filter(|(_, p)| p.email == email)
        .map(|(id, p)| (p.created, id.clone()))
        .collect();
    if theirs.len() >= PROPOSALS_PER_PERSON {
        theirs.sort();
        for (_, id) in &theirs[..=theirs.len() - PROPOSALS_PER_PERSON] {
            all.remove(id);
        }
    }
}

fn refusal(app: &App, s: &Session, client: &str, kind: &str, r: Refusal) -> Response {
    let me = Some((&s.who, s.csrf.as_str()));
    match r {
        Refusal::Forbidden(why) => {
            app.metrics.action(kind, "forbidden");
            forbidden(me, &why)
        }
        Refusal::Invalid(reasons) => {
            app.metrics.action(kind, "refused");
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::refused(&s.who, &s.csrf, client, &reasons),
            )
        }
        Refusal::Failed(what) => {
            app.metrics.action(kind, "failed");
            tracing::warn!(client, error = %what, "an action failed");
            unavailable(s, &what)
        }
    }
}

async fn confirm(
    State(app): State<Arc<App>>,
    jar: CookieJar,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Form(form): Form,
) -> Response {
    let Some((_, s)) = app.session(&jar) else {
        return forbidden(None, "Sign in first.");
    };
    let me = Some((&s.who, s.csrf.as_str()));
    if !app.genuine(&s, &headers, &form) {
        app.metrics.action("confirm", "forbidden");
        return forbidden(me, "This form did not come from this page.");
    }
    let p = {
        let mut all = app.proposals.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(&id) {
            Some(p) if p.email == s.who.email && p.created.elapsed() < PROPOSAL_TTL => {
                all.remove(&id)
            }
            _ => None,
        }
    };
    let Some(p) = p else {
        return forbidden(
            me,
            "This review is not yours, or it expired; make the change again.",
        );
    };
    let kind = "confirm";
    let (client, commit, base) = (p.client.clone(), p.commit, p.base);
    let email = s.who.email.clone();
    let published = blocking(&app, move |w| {
        let branch = w.branch().to_string();
        w.publish(&client, &email, commit, base, Timestamp::now())
            .map(|r| (r, branch))
    })
    .await;
    let (published, target) = match published {
        Ok(x) => x,
        Err(r) => return refusal(&app, &s, &p.client, kind, r),
    };
    let Some(published) = published else {
        // The branch moved: the same action, reviewed again on the new tip.
        app.metrics.action(kind, "moved");
        return propose_and_show(
            &app,
            &s,
            p.client,
            p.action,
            kind,
            Some("The branch moved since your review: this is the review on its new tip. Confirm again if it is still what you want."),
        )
        .await;
    };
    app.metrics.action(kind, "committed");
    tracing::info!(email = %s.who.email, client = %p.client, commit = %commit, branch = %published.branch, "change published");
    let pr = if published.direct {
        Ok(None)
    } else {
        app.cfg
            .forge
            .open(
                &app.http,
                &forge::Request {
                    head: &published.branch,
                    base: &target,
                    title: &p.subject,
                    body: &p.body,
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the pull request was not opened");
                e.to_string()
            })
    };
    let pr_ref = match &pr {
        Ok(u) => Ok(u.as_deref()),
        Err(e) => Err(e.as_str()),
    };
    let status = if pr.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    page(
        status,
        pages::done(
            &s.who,
            &s.csrf,
            &p.client,
            &p.subject,
            &commit.to_string(),
            &published.branch,
            pr_ref,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fields_are_trimmed_bounded_and_single_line() {
        let f = form(&[
            ("reason", "  ticket ACME-7 "),
            ("empty", "   "),
            ("long", &"x".repeat(501)),
            ("nl", "ok\n\nLatchkey-Run: forged"),
            ("nul", "a\0b"),
        ]);
        assert_eq!(
            field(&f, "reason").unwrap().as_deref(),
            Some("ticket ACME-7")
        );
        assert_eq!(field(&f, "empty").unwrap(), None);
        assert_eq!(field(&f, "missing").unwrap(), None);
        assert!(field(&f, "long").unwrap_err().contains("500"));
        assert!(field(&f, "nl").unwrap_err().contains("line break"));
        assert!(field(&f, "nul").is_err());
        assert!(
            required(&f, "empty")
                .unwrap_err()
                .contains("must not be empty")
        );
    }

    #[test]
    fn a_person_keeps_a_bounded_number_of_reviews_open() {
        let proposal = |email: &str, age: u64| Proposal {
            email: email.into(),
            client: "acme".into(),
            action: Action::Remove {
                email: "x@acme.example".into(),
                reason: None,
            },
            commit: git2::Oid::ZERO_SHA1,
            base: git2::Oid::ZERO_SHA1,
            created: Instant::now() - std::time::Duration::from_secs(age),
            subject: String::new(),
            body: String::new(),
        };
        let mut all = HashMap::new();
        for i in 0..PROPOSALS_PER_PERSON as u64 {
            all.insert(format!("dana-{i}"), proposal("dana@acme.example", 100 + i));
        }
        all.insert("hank".into(), proposal("hank@globex.example", 600));
        all.insert("stale".into(), proposal("dana@acme.example", 7200));
        make_room(&mut all, "dana@acme.example");
        assert!(!all.contains_key("stale"), "expired");
        let max = PROPOSALS_PER_PERSON as u64 - 1;
        assert!(!all.contains_key(&format!("dana-{max}")), "the oldest goes");
        assert_eq!(
            all.values()
                .filter(|p| p.email == "dana@acme.example")
                .count(),
            PROPOSALS_PER_PERSON - 1
        );
        assert!(all.contains_key("hank"), "another person's stay");
    }

    #[test]
    fn an_end_is_a_date_or_an_instant_in_the_future() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let at = |v: &str| end(&form(&[("expires", v)]), now);
        assert_eq!(
            at("2026-12-20").unwrap(),
            Some("2026-12-20T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            at("2026-12-03T09:30:00+01:00").unwrap(),
            Some("2026-12-03T08:30:00Z".parse().unwrap())
        );
        assert_eq!(at("").unwrap(), None);
        assert!(at("2026-12-02").unwrap_err().contains("not in the future"));
        assert!(at("next week").is_err());
        assert!(
            at("9999-12-31").is_err(),
            "past the latest instant latchkey accepts"
        );
    }
}
