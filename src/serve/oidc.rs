//! Sign-in with OpenID Connect: the authorization code flow with PKCE (RFC 7636), a
//! `state` bound to the browser that started it and a `nonce` bound to the ID token.
//!
//! The ID token is verified against the issuer's published keys (JWKS) for its
//! signature, issuer, audience, expiry and nonce; only then is its `email` trusted. An
//! email the issuer marks unverified (`email_verified: false`) is refused: anybody can
//! type any address into an account at most IdPs.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::connectors::Secret;

/// The relying party's settings.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer URL, e.g. `https://login.agency.example/realms/staff`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the issuer sends the browser back: `<public url>/callback`.
    pub redirect_url: String,
}

/// What sign-in failed on. Never holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot reach the OpenID Connect issuer at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the issuer's {what} answered {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("the issuer's {what} is not what OpenID Connect specifies: {message}")]
    Malformed { what: &'static str, message: String },
    #[error("the ID token is not valid: {0}")]
    Token(String),
    #[error("the ID token carries no email claim: ask the IdP admins to release `email`")]
    NoEmail,
    #[error("the IdP says {0} is not verified")]
    Unverified(String),
}

/// The issuer's endpoints, from its discovery document.
#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Who signed in, as the verified ID token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    /// `name`, else the email.
    pub name: String,
}

/// A discovered issuer.
pub struct Provider {
    cfg: OidcConfig,
    meta: Discovery,
    keys: RwLock<JwkSet>,
    http: reqwest::Client,
}

/// What the browser must bring back: kept server-side, keyed by `state`.
#[derive(Clone, Debug)]
pub struct LoginStart {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl LoginStart {
    /// Fresh random values for one sign-in.
    pub fn new() -> LoginStart {
        LoginStart {
            state: super::session::token(),
            nonce: super::session::token(),
            verifier: super::session::token(),
        }
    }
}

impl Default for LoginStart {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
    name: Option<String>,
}

impl Provider {
    /// Reads the issuer's discovery document and keys. The document's `issuer` must be
    /// the configured one (OpenID Connect Discovery §4.3), or a look-alike could serve
    /// another issuer's endpoints.
    pub async fn discover(cfg: OidcConfig, http: reqwest::Client) -> Result<Provider, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        let meta: Discovery = get_json(&http, &url, "discovery document").await?;
        if meta.issuer.trim_end_matches('/') != cfg.issuer.trim_end_matches('/') {
            return Err(OidcError::Malformed {
                what: "discovery document",
                message: format!(
                    "it names the issuer {:?}, not the configured {:?}",
                    meta.issuer, cfg.issuer
                ),
            });
        }
        let keys: JwkSet = get_json(&http, &meta.jwks_uri, "key set").await?;
        Ok(Provider {
            cfg,
            meta,
            keys: RwLock::new(keys),
            http,
        })
    }

    /// The issuer's authorization URL for one sign-in.
    pub fn authorize_url(&self, start: &LoginStart) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(start.verifier.as_bytes()));
        let mut url = url::Url::parse(&self.meta.authorization_endpoint)
            .unwrap_or_else(|_| url::Url::parse("http://invalid/").expect("a valid URL"));
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_url)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &start.state)
            .append_pair("nonce", &start.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Trades the code for tokens and verifies the ID token.
    pub async fn finish(&self, code: &str, start: &LoginStart) -> Result<Identity, OidcError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.cfg.redirect_url.as_str()),
            ("code_verifier", start.verifier.as_str()),
        ];
        let resp = self
            .http
            .post(&self.meta.token_endpoint)
            .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(&self.meta.token_endpoint, &e))?;
        // A token endpoint may repeat the credentials it was sent (as given, or as the
        // Basic header) in its error, and the refusal is shown on the sign-in page and
        // logged: the secret is blotted out of what is kept of the answer.
        let secret = self.cfg.client_secret.expose();
        let basic = STANDARD.encode(format!("{}:{secret}", self.cfg.client_id));
        let answer: TokenAnswer = read_json(resp, "token endpoint", &[&basic, secret]).await?;
        let id_token = answer.id_token.ok_or_else(|| OidcError::Malformed {
            what: "token endpoint",
            message: "no id_token in the answer".into(),
        })?;
        let claims = self.verify(&id_token).await?;
        if claims.nonce.as_deref() != Some(start.nonce.as_str()) {
            return Err(OidcError::Token("its nonce is not this sign-in's".into()));
        }
        let email = claims.email.ok_or(OidcError::NoEmail)?;
        let verified = match &claims.email_verified {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            // Some IdPs send the string "true".
            Some(serde_json::Value::String(s)) => s == "true",
            Some(_) => false,
        };
        if !verified {
            return Err(OidcError::Unverified(email));
        }
        Ok(Identity {
            name: claims.name.unwrap_or_else(|| email.clone()),
            email,
        })
    }

    /// Checks the token's signature with the issuer's key named by its `kid` (the key
    /// set is read again once when the key is unknown: the issuer rotated), then its
    /// issuer, audience and expiry.
    async fn verify(&self, token: &str) -> Result<Claims, OidcError> {
        // `alg: none` fails here: jsonwebtoken knows no such algorithm.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Token(format!("its header cannot be read ({e})")))?;
        // Asymmetric algorithms only: `none` and HMAC with a public key are the classic
        // forgeries.
        const ALLOWED: [Algorithm; 6] = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ];
        if !ALLOWED.contains(&header.alg) {
            return Err(OidcError::Token(format!(
                "it is signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let mut key = self.key(header.kid.as_deref()).await;
        if key.is_none() {
            let fresh: JwkSet = get_json(&self.http, &self.meta.jwks_uri, "key set").await?;
            *self.keys.write().await = fresh;
            key = self.key(header.kid.as_deref()).await;
        }
        let key = key.ok_or_else(|| {
            OidcError::Token("no key of the issuer matches its key id".to_string())
        })?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.meta.issuer.as_str()]);
        v.set_audience(&[self.cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 60;
        Ok(jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(refusal)?
            .claims)
    }

    async fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        let jwk = match kid {
            Some(kid) => keys.find(kid)?,
            // Without a key id, only an issuer with one key is unambiguous.
            None if keys.keys.len() == 1 => &keys.keys[0],
            None => return None,
        };
        DecodingKey::from_jwk(jwk).ok()
    }
}

/// Why jsonwebtoken refused a token, in words for the sign-in page (its own Display
/// is the bare variant name, e.g. `InvalidAudience`).
fn refusal(e: jsonwebtoken::errors::Error) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    OidcError::Token(match e.kind() {
        ErrorKind::InvalidSignature => "its signature is not by the issuer's key".into(),
        ErrorKind::InvalidAlgorithm => "its algorithm does not fit the issuer's key".into(),
        ErrorKind::InvalidIssuer => "it was issued by another issuer".into(),
        ErrorKind::InvalidAudience => "it was issued to another client".into(),
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        _ => e.to_string(),
    })
}

fn unreachable(url: &str, e: &reqwest::Error) -> OidcError {
    OidcError::Unreachable {
        url: url.to_string(),
        message: crate::source::error_chain(e),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    what: &'static str,
) -> Result<T, OidcError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    read_json(resp, what, &[]).await
}

/// Reads a JSON answer; an error quotes the answer with each of `hide` replaced by
/// `***` (before it is shortened, so no part of one is left at the cut).
async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &'static str,
    hide: &[&str],
) -> Result<T, OidcError> {
    let blot = |mut text: String| {
        for h in hide.iter().filter(|h| !h.is_empty()) {
            text = text.replace(h, "***");
        }
        text
    };
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        return Err(OidcError::Status {
            what,
            status: status.as_u16(),
            body: blot(String::from_utf8_lossy(&body).into_owned())
                .chars()
                .take(300)
                .collect(),
        });
    }
    // serde_json's message can quote a string of the answer.
    serde_json::from_slice(&body).map_err(|e| OidcError::Malformed {
        what,
        message: blot(e.to_string()),
    })
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
