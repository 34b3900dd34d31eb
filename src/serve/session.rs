//! Sessions and CSRF tokens, kept in memory.
//!
//! The cookie holds only a random session id (256 bits); who the session is, its CSRF
//! token and its end are kept here, so signing out ends it everywhere and nothing in
//! the cookie can be edited into more access. A restart signs everybody out, which
//! fails closed. The cookie is `Secure`, `HttpOnly` and `SameSite=Lax`: Lax keeps the
//! cookie off cross-site POSTs, and the per-session CSRF token on every form stops the
//! same-site ones (another port of the same host is the same site).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::oidc::{Identity, LoginStart};

/// The session cookie's name. `__Host-` makes the browser refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`: no other host can set or shadow it.
pub const COOKIE: &str = "__Host-latchkey";
/// The cookie that ties a sign-in's `state` to the browser that started it.
pub const LOGIN_COOKIE: &str = "__Host-latchkey-login";

/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long a sign-in may take at the IdP.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in progress at once; beyond this the oldest are dropped, so unauthenticated
/// requests cannot grow memory without bound.
const MAX_LOGINS: usize = 10_000;

/// A random token: 32 bytes from the OS, hex.
pub fn token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

/// A signed-in administrator.
#[derive(Clone, Debug)]
pub struct Session {
    pub who: Identity,
    /// Every form of this session carries it.
    pub csrf: String,
    ends: Instant,
}

/// Sessions and sign-ins in progress.
#[derive(Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    logins: HashMap<String, (LoginStart, Instant)>,
}

impl Sessions {
    /// Remembers a sign-in started now.
    pub fn start_login(&mut self, start: LoginStart, now: Instant) {
        self.logins
            .retain(|_, (_, at)| now.duration_since(*at) < LOGIN_TTL);
        if self.logins.len() >= MAX_LOGINS
            && let Some(oldest) = self
                .logins
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            self.logins.remove(&oldest);
        }
        self.logins.insert(start.state.clone(), (start, now));
    }

    /// The sign-in `state` names, once: a replayed callback finds nothing.
    pub fn take_login(&mut self, state: &str, now: Instant) -> Option<LoginStart> {
        let (start, at) = self.logins.remove(state)?;
        (now.duration_since(at) < LOGIN_TTL).then_some(start)
    }

    /// A new session for `who`; returns its id (the cookie's value).
    pub fn open(&mut self, who: Identity, now: Instant) -> String {
        self.by_id.retain(|_, s| s.ends > now);
        let id = token();
        self.by_id.insert(
            id.clone(),
            Session {
                who,
                csrf: token(),
                ends: now + SESSION_TTL,
            },
        );
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Instant) -> Option<&Session> {
        self.by_id.get(id).filter(|s| s.ends > now)
    }

    /// Ends a session.
    pub fn close(&mut self, id: &str) {
        self.by_id.remove(id);
    }
}

/// True when a form's token is the session's, compared in constant time (MACs of both
/// under a fixed key: equal length, no early exit).
pub fn csrf_ok(session: &Session, sent: Option<&str>) -> bool {
    let Some(sent) = sent else { return false };
    let tag = |v: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(b"latchkey-csrf").expect("any key length");
        m.update(v.as_bytes());
        m.finalize().into_bytes()
    };
    tag(sent) == tag(&session.csrf)
}

/// The `Set-Cookie` value for a session id (empty with `max_age` 0 to clear it).
pub fn cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity {
            email: "dana@acme.example".into(),
            name: "Dana".into(),
        }
    }

    #[test]
    fn a_session_ends_on_time_and_on_sign_out() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let id = s.open(who(), t0);
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_some());
        assert!(s.get(&id, t0 + SESSION_TTL).is_none());
        assert!(s.get("not-an-id", t0).is_none());
        s.close(&id);
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn a_sign_in_is_taken_once_and_only_in_time() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let a = LoginStart::new();
        let state = a.state.clone();
        s.start_login(a, t0);
        assert!(s.take_login(&state, t0).is_some());
        assert!(s.take_login(&state, t0).is_none(), "a replayed callback");
        let b = LoginStart::new();
        let late = b.state.clone();
        s.start_login(b, t0);
        assert!(s.take_login(&late, t0 + LOGIN_TTL).is_none());
    }

    #[test]
    fn only_the_sessions_own_token_passes() {
        let mut s = Sessions::default();
        let id = s.open(who(), Instant::now());
        let session = s.get(&id, Instant::now()).unwrap().clone();
        assert!(csrf_ok(&session, Some(&session.csrf)));
        assert!(!csrf_ok(&session, None));
        assert!(!csrf_ok(&session, Some("")));
        assert!(!csrf_ok(&session, Some(&token())));
        let other = s.open(who(), Instant::now());
        let other = s.get(&other, Instant::now()).unwrap();
        assert!(!csrf_ok(&session, Some(&other.csrf)));
    }
}
