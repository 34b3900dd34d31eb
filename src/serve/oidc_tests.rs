//! Sign-in fails closed against a hostile or broken issuer.
//!
//! Each test starts an issuer of its own on loopback (an axum server: discovery
//! document, key set, token endpoint) whose answers the test scripts, signs ID tokens
//! with a P-256 key generated in the test, and drives `Provider::discover` and
//! `Provider::finish` against it over HTTP. Every refusal is checked for its reason and
//! for the client secret in its Display and Debug forms.
//!
//! jsonwebtoken checks `exp` against the system clock, so the tokens' times are set
//! relative to it (never to a date).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

const CLIENT_ID: &str = "latchkey-self-service";
const CLIENT_SECRET: &str = "client-secret-4f1c9a7e0b";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const EMAIL: &str = "dana@acme.example";

/// A P-256 signing key of the issuer, named by its `kid`.
struct SigningKey {
    kid: String,
    pair: rcgen::KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_string(),
            pair: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("a P-256 key"),
        }
    }

    /// The public key as the issuer publishes it (RFC 7518 §6.2).
    fn jwk(&self) -> Value {
        // The uncompressed point: 0x04 || X || Y, 32 bytes each.
        let raw = self.pair.public_key_raw();
        assert_eq!((raw.len(), raw[0]), (65, 0x04));
        json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// An ES256 token over `claims`, its header naming this key.
    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// An ES256 token over `claims`, its header naming `kid` (whatever key that is).
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        let key = EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
    }
}

/// What the test issuer's token endpoint answers.
#[derive(Clone)]
enum TokenReply {
    /// 200 with this ID token.
    IdToken(String),
    /// This status and body.
    Raw(u16, String),
    /// 401 repeating the credentials the client sent, as a careless IdP might.
    EchoCredentials,
}

/// The issuer's scripted answers, and what it was sent.
struct Script {
    /// The `issuer` its discovery document names.
    issuer: String,
    keys: Vec<Value>,
    token: TokenReply,
    /// The last token request's form and Authorization header.
    token_form: Option<HashMap<String, String>>,
    token_auth: Option<String>,
}

#[derive(Clone)]
struct IssuerState {
    base: String,
    script: Arc<Mutex<Script>>,
    key_set_reads: Arc<AtomicUsize>,
}

/// An OpenID Connect issuer on loopback, stopped when dropped.
struct Issuer {
    url: String,
    state: IssuerState,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Issuer {
    /// Starts an issuer publishing `keys`, whose discovery document names itself.
    async fn start(keys: &[&SigningKey]) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let state = IssuerState {
            base: url.clone(),
            script: Arc::new(Mutex::new(Script {
                issuer: url.clone(),
                keys: keys.iter().map(|k| k.jwk()).collect(),
                token: TokenReply::Raw(500, "not scripted".into()),
                token_form: None,
                token_auth: None,
            })),
            key_set_reads: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(key_set))
            .route("/token", post(token))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the issuer serves");
        });
        Issuer { url, state, server }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.state.script.lock().expect("the script")
    }

    fn answer(&self, reply: TokenReply) {
        self.script().token = reply;
    }

    fn publish(&self, keys: &[&SigningKey]) {
        self.script().keys = keys.iter().map(|k| k.jwk()).collect();
    }

    fn key_set_reads(&self) -> usize {
        self.state.key_set_reads.load(Ordering::SeqCst)
    }

    fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer: self.url.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            redirect_url: REDIRECT.into(),
        }
    }

    /// The provider as `latchkey serve` builds it (same client settings).
    async fn provider(&self) -> Provider {
        Provider::discover(self.config(), http())
            .await
            .expect("the issuer is discovered")
    }

    /// Claims a correct ID token for `start` carries.
    fn claims(&self, start: &LoginStart) -> Value {
        json!({
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": "248289761001",
            "iat": now(),
            "exp": now() + 600,
            "nonce": start.nonce,
            "email": EMAIL,
            "email_verified": true,
            "name": "Dana Scully",
        })
    }
}

/// An issuer with one key (`k1` unless told), a provider that discovered it, and one sign-in.
struct Rig {
    key: SigningKey,
    issuer: Issuer,
    provider: Provider,
    start: LoginStart,
}

impl Rig {
    async fn new() -> Rig {
        Rig::with(SigningKey::new("k1")).await
    }

    /// The issuer publishing `key`.
    async fn with(key: SigningKey) -> Rig {
        let issuer = Issuer::start(&[&key]).await;
        let provider = issuer.provider().await;
        Rig {
            key,
            issuer,
            provider,
            start: LoginStart::new(),
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

async fn discovery(State(s): State<IssuerState>) -> Json<Value> {
    let issuer = s.script.lock().expect("the script").issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "jwks_uri": format!("{}/jwks", s.base),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn key_set(State(s): State<IssuerState>) -> Json<Value> {
    s.key_set_reads.fetch_add(1, Ordering::SeqCst);
    let keys = s.script.lock().expect("the script").keys.clone();
    Json(json!({ "keys": keys }))
}

async fn token(
    State(s): State<IssuerState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut script = s.script.lock().expect("the script");
    script.token_form = Some(form);
    script.token_auth = auth.clone();
    match script.token.clone() {
        TokenReply::IdToken(t) => Json(json!({
            "access_token": "opaque-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": t,
        }))
        .into_response(),
        TokenReply::Raw(status, body) => (
            StatusCode::from_u16(status).expect("a status"),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        TokenReply::EchoCredentials => {
            let auth = auth.unwrap_or_default();
            let decoded = auth
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (
                StatusCode::UNAUTHORIZED,
                format!(
                    "invalid_client: Authorization: {auth} (client_id:client_secret = {decoded})"
                ),
            )
                .into_response()
        }
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Asserts `result` is a refusal whose message says `reason`, and that neither its
/// Display nor its Debug form holds the client secret.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, OidcError>, reason: &str) -> OidcError {
    let err = match result {
        Ok(v) => panic!("accepted ({v:?}); expected a refusal saying {reason:?}"),
        Err(e) => e,
    };
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        display.contains(reason),
        "the refusal {display:?} does not say {reason:?}"
    );
    for shown in [&display, &debug] {
        assert!(
            !shown.contains(CLIENT_SECRET),
            "the error shows the client secret: {shown}"
        );
    }
    err
}

/// Has the token endpoint hand out `token`, and finishes the sign-in.
async fn finish_with(
    issuer: &Issuer,
    provider: &Provider,
    start: &LoginStart,
    token: String,
) -> Result<Identity, OidcError> {
    finish_on(issuer, provider, start, TokenReply::IdToken(token)).await
}

/// Finishes with a correct token for `start` signed by `key`.
async fn finish_signed(
    issuer: &Issuer,
    provider: &Provider,
    start: &LoginStart,
    key: &SigningKey,
) -> Result<Identity, OidcError> {
    finish_with(issuer, provider, start, key.sign(&issuer.claims(start))).await
}

/// Has the token endpoint answer `reply`, and finishes the sign-in.
async fn finish_on(
    issuer: &Issuer,
    provider: &Provider,
    start: &LoginStart,
    reply: TokenReply,
) -> Result<Identity, OidcError> {
    issuer.answer(reply);
    provider.finish("the-code", start).await
}

/// A change to a token's claims.
type Edit = fn(&mut serde_json::Map<String, Value>);

fn edited(mut claims: Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    edit(claims.as_object_mut().expect("claims are an object"));
    claims
}

/// A JWS with any header, its signature given as is (for `alg` forgeries).
fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    format!(
        "{}.{}.{}",
        part(header),
        part(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn a_correct_token_signs_in_and_the_code_is_traded_with_the_verifier() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;

    let who = finish_signed(&issuer, &provider, &start, &key)
        .await
        .expect("a correct token is accepted");
    assert_eq!(
        who,
        Identity {
            email: EMAIL.into(),
            name: "Dana Scully".into()
        }
    );

    let (form, auth) = {
        let s = issuer.script();
        (
            s.token_form.clone().expect("a token request"),
            s.token_auth.clone(),
        )
    };
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "the-code");
    assert_eq!(form["redirect_uri"], REDIRECT);
    assert_eq!(form["code_verifier"], start.verifier);
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_eq!(auth, Some(format!("Basic {basic}")));

    // Without `name` the email stands in; "true" as a string is how some IdPs say it.
    let plain = edited(issuer.claims(&start), |c| {
        c.remove("name");
        c.insert("email_verified".into(), json!("true"));
    });
    let who = finish_with(&issuer, &provider, &start, key.sign(&plain))
        .await
        .expect("a token without name is accepted");
    assert_eq!(who.name, EMAIL);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_issuers_kid_is_refused() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;
    let impostor = SigningKey::new("k1");

    let token = impostor.sign(&issuer.claims(&start));
    refused(
        finish_with(&issuer, &provider, &start, token).await,
        "its signature is not by the issuer's key",
    );

    // A valid signature over other claims, spliced onto these claims.
    let genuine = key.sign(&issuer.claims(&start));
    let evil = edited(issuer.claims(&start), |c| {
        c.insert("email".into(), json!("mallory@evil.example"));
    });
    let forged_claims = impostor.sign(&evil);
    let mut parts: Vec<&str> = forged_claims.split('.').collect();
    parts[2] = genuine.rsplit('.').next().expect("a signature");
    refused(
        finish_with(&issuer, &provider, &start, parts.join(".")).await,
        "its signature is not by the issuer's key",
    );
}

#[tokio::test]
async fn alg_none_and_hmac_keyed_with_the_public_key_are_refused() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;
    let claims = issuer.claims(&start);

    for alg in ["none", "None", "NONE"] {
        let token = forged(
            &json!({"alg": alg, "typ": "JWT", "kid": "k1"}),
            &claims,
            b"",
        );
        refused(
            finish_with(&issuer, &provider, &start, token).await,
            "the ID token is not valid: its header cannot be read (JSON error: unknown variant",
        );
    }

    // The classic confusion: HMAC keyed with what the issuer publishes, in every form a
    // verifier might hand to HMAC.
    let raw = key.pair.public_key_raw().to_vec();
    let pem = key.pair.public_key_pem().into_bytes();
    let der = rcgen::PublicKeyData::subject_public_key_info(&key.pair);
    let jwk = serde_json::to_vec(&key.jwk()).expect("json");
    for secret in [raw, pem, der, jwk] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("k1".into());
            let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
                .expect("an HMAC token");
            refused(
                finish_with(&issuer, &provider, &start, token).await,
                &format!("it is signed with {alg:?}, which is not accepted"),
            );
        }
    }

    // An ES256 token verified as RS256: the header's alg must fit the key.
    let es = key.sign(&claims);
    let (_, rest) = es.split_once('.').expect("a JWS");
    let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
    refused(
        finish_with(&issuer, &provider, &start, format!("{rs_header}.{rest}")).await,
        "its algorithm does not fit the issuer's key",
    );
}

#[tokio::test]
async fn wrong_issuer_audience_expiry_or_no_subject_is_refused() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;
    let cases: [(&str, Edit); 7] = [
        ("it was issued by another issuer", |c| {
            c.insert("iss".into(), json!("https://login.evil.example"));
        }),
        ("it has no `iss` claim", |c| {
            c.remove("iss");
        }),
        ("it was issued to another client", |c| {
            c.insert("aud".into(), json!("another-client"));
        }),
        ("it was issued to another client", |c| {
            c.insert("aud".into(), json!(["another-client", "a-third"]));
        }),
        ("it has no `aud` claim", |c| {
            c.remove("aud");
        }),
        // Two minutes ago: beyond the minute of leeway.
        ("it has expired", |c| {
            c.insert("exp".into(), json!(now() - 120));
        }),
        ("it has no `sub` claim", |c| {
            c.remove("sub");
        }),
    ];
    for (reason, edit) in cases {
        let token = key.sign(&edited(issuer.claims(&start), edit));
        refused(finish_with(&issuer, &provider, &start, token).await, reason);
    }
    let no_exp = key.sign(&edited(issuer.claims(&start), |c| {
        c.remove("exp");
    }));
    refused(
        finish_with(&issuer, &provider, &start, no_exp).await,
        "it has no `exp` claim",
    );

    // Within the leeway (a clock a little behind the issuer's) still signs in, so the
    // expiry case above fails for its expiry and not for something else.
    let lately = key.sign(&edited(issuer.claims(&start), |c| {
        c.insert("exp".into(), json!(now() - 20));
    }));
    finish_with(&issuer, &provider, &start, lately)
        .await
        .expect("an expiry within the leeway is accepted");
    // The audience may be a list holding us.
    let listed = key.sign(&edited(issuer.claims(&start), |c| {
        c.insert("aud".into(), json!([CLIENT_ID]));
    }));
    finish_with(&issuer, &provider, &start, listed)
        .await
        .expect("an audience list naming the client is accepted");
}

#[tokio::test]
async fn a_nonce_not_this_sign_ins_or_none_is_refused() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;
    let other = LoginStart::new();

    // A token issued to another sign-in (a replay, or an injected code).
    let replayed = key.sign(&issuer.claims(&other));
    refused(
        finish_with(&issuer, &provider, &start, replayed).await,
        "its nonce is not this sign-in's",
    );
    for edit in [
        (|c| {
            c.remove("nonce");
        }) as Edit,
        |c| {
            c.insert("nonce".into(), json!(""));
        },
        |c| {
            c.insert("nonce".into(), Value::Null);
        },
    ] {
        let token = key.sign(&edited(issuer.claims(&start), edit));
        refused(
            finish_with(&issuer, &provider, &start, token).await,
            "its nonce is not this sign-in's",
        );
    }
}

#[tokio::test]
async fn a_missing_or_unverified_email_is_refused() {
    let Rig {
        key,
        issuer,
        provider,
        start,
    } = Rig::new().await;

    let no_email = key.sign(&edited(issuer.claims(&start), |c| {
        c.remove("email");
    }));
    let err = refused(
        finish_with(&issuer, &provider, &start, no_email).await,
        "carries no email claim",
    );
    assert!(matches!(err, OidcError::NoEmail), "{err:?}");

    for verified in [
        json!(false),
        json!("false"),
        json!("no"),
        json!(0),
        json!({}),
    ] {
        let token = key.sign(&edited(issuer.claims(&start), |c| {
            c.insert("email_verified".into(), verified.clone());
        }));
        let err = refused(
            finish_with(&issuer, &provider, &start, token).await,
            &format!("the IdP says {EMAIL} is not verified"),
        );
        assert!(
            matches!(err, OidcError::Unverified(_)),
            "{verified}: {err:?}"
        );
    }
}

#[tokio::test]
async fn discovery_naming_another_issuer_or_failing_is_refused() {
    let key = SigningKey::new("k1");
    let issuer = Issuer::start(&[&key]).await;
    for named in [
        "https://login.evil.example".to_string(),
        format!("{}/realms/other", issuer.url),
        String::new(),
    ] {
        issuer.script().issuer = named.clone();
        let err = refused(
            Provider::discover(issuer.config(), http())
                .await
                .map(|_| ()),
            &format!("it names the issuer {named:?}, not the configured"),
        );
        assert!(
            matches!(
                err,
                OidcError::Malformed {
                    what: "discovery document",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        issuer.key_set_reads(),
        0,
        "a refused discovery document's key set is not read"
    );

    // A trailing slash is the same issuer.
    issuer.script().issuer = format!("{}/", issuer.url);
    Provider::discover(issuer.config(), http())
        .await
        .expect("the issuer with a trailing slash is discovered");

    // Nobody home.
    let gone = OidcConfig {
        issuer: "http://127.0.0.1:9".into(),
        ..issuer.config()
    };
    refused(
        Provider::discover(gone, http()).await.map(|_| ()),
        "cannot reach the OpenID Connect issuer",
    );
}

#[tokio::test]
async fn an_unknown_kid_reads_the_key_set_once_more_then_accepts_the_rotated_key() {
    let Rig {
        key: old,
        issuer,
        provider,
        start,
    } = Rig::with(SigningKey::new("2024-old")).await;
    let rotated = SigningKey::new("2025-new");
    assert_eq!(issuer.key_set_reads(), 1, "discovery reads the key set");

    // The old key still works and costs no read.
    finish_signed(&issuer, &provider, &start, &old)
        .await
        .expect("the known key signs in");
    assert_eq!(issuer.key_set_reads(), 1);

    // The issuer rotates: the new kid is unknown to us until the set is read again.
    issuer.publish(&[&rotated]);
    let who = finish_signed(&issuer, &provider, &start, &rotated)
        .await
        .expect("the rotated key is accepted");
    assert_eq!(who.email, EMAIL);
    assert_eq!(issuer.key_set_reads(), 2, "one read for the rotation");

    // And it is kept: the next token costs no read.
    finish_signed(&issuer, &provider, &start, &rotated)
        .await
        .expect("the rotated key is kept");
    assert_eq!(issuer.key_set_reads(), 2);

    // A kid the issuer never published: one read, then refused.
    let stranger = SigningKey::new("never-published");
    refused(
        finish_signed(&issuer, &provider, &start, &stranger).await,
        "no key of the issuer matches its key id",
    );
    assert_eq!(issuer.key_set_reads(), 3, "exactly one more read, no loop");

    // The retired key is gone with the rotation, its kid unknown now.
    refused(
        finish_signed(&issuer, &provider, &start, &old).await,
        "no key of the issuer matches its key id",
    );
    assert_eq!(issuer.key_set_reads(), 4);

    // A published kid whose key did not sign: no read (the kid is known), refused.
    refused(
        finish_with(
            &issuer,
            &provider,
            &start,
            stranger.sign_as("2025-new", &issuer.claims(&start)),
        )
        .await,
        "its signature is not by the issuer's key",
    );
    assert_eq!(issuer.key_set_reads(), 4);
}

#[tokio::test]
async fn a_failing_or_empty_token_endpoint_is_an_error() {
    let Rig {
        issuer,
        provider,
        start,
        ..
    } = Rig::new().await;

    for status in [400, 401, 500, 503] {
        let reply = TokenReply::Raw(status, r#"{"error":"invalid_grant"}"#.into());
        let err = refused(
            finish_on(&issuer, &provider, &start, reply).await,
            &format!("the issuer's token endpoint answered {status}"),
        );
        assert!(err.to_string().contains("invalid_grant"), "{err}");
    }
    for (body, reason) in [
        (
            r#"{"access_token":"a","token_type":"Bearer"}"#,
            "no id_token",
        ),
        (r#"{"id_token":null}"#, "no id_token"),
        (r#"{"id_token":42}"#, "invalid type"),
        ("<html>oops</html>", "is not what OpenID Connect specifies"),
        ("", "is not what OpenID Connect specifies"),
    ] {
        refused(
            finish_on(
                &issuer,
                &provider,
                &start,
                TokenReply::Raw(200, body.into()),
            )
            .await,
            reason,
        );
    }
    refused(
        finish_on(
            &issuer,
            &provider,
            &start,
            TokenReply::Raw(200, r#"{"id_token":"not.a.jwt"}"#.into()),
        )
        .await,
        "the ID token is not valid: its header cannot be read",
    );
}

/// Regression: a token endpoint that repeats the client's credentials in its error put
/// the client secret into the refusal, which the sign-in page shows to the visitor.
#[tokio::test]
async fn a_token_endpoint_echoing_the_credentials_does_not_leak_the_secret() {
    let Rig {
        issuer,
        provider,
        start,
        ..
    } = Rig::new().await;

    let err = refused(
        finish_on(&issuer, &provider, &start, TokenReply::EchoCredentials).await,
        "the issuer's token endpoint answered 401",
    );
    // Nor in the Basic form, which is the secret in base64.
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&basic), "{shown}");
        assert!(
            shown.contains("invalid_client"),
            "the rest is kept: {shown}"
        );
    }

    // The answer is shortened for the message: a secret at the cut leaves no prefix.
    for pad in [280, 290, 299] {
        let body = format!("{}{CLIENT_SECRET}", "x".repeat(pad));
        let err = refused(
            finish_on(&issuer, &provider, &start, TokenReply::Raw(401, body)).await,
            "the issuer's token endpoint answered 401",
        );
        assert!(!err.to_string().contains(&CLIENT_SECRET[..6]), "{err}");
    }

    // A 200 that is not JSON of the right shape: serde quotes the string it found.
    refused(
        finish_on(
            &issuer,
            &provider,
            &start,
            TokenReply::Raw(200, format!("\"{CLIENT_SECRET}\"")),
        )
        .await,
        "is not what OpenID Connect specifies",
    );
}

#[tokio::test]
async fn the_authorization_url_carries_the_s256_challenge_state_and_nonce() {
    let Rig {
        issuer, provider, ..
    } = Rig::new().await;
    let query = |start: &LoginStart| -> (url::Url, HashMap<String, String>) {
        let url = url::Url::parse(&provider.authorize_url(start)).expect("a URL");
        let pairs = url.query_pairs().into_owned().collect();
        (url, pairs)
    };

    // RFC 7636 Appendix B's example, computed by its authors.
    let rfc = LoginStart {
        state: "the-state".into(),
        nonce: "the-nonce".into(),
        verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
    };
    let (url, q) = query(&rfc);
    assert_eq!(
        url.as_str().split('?').next(),
        Some(format!("{}/authorize", issuer.url).as_str())
    );
    assert_eq!(
        q["code_challenge"],
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], "the-state");
    assert_eq!(q["nonce"], "the-nonce");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert!(
        q["scope"].split(' ').any(|s| s == "openid"),
        "{}",
        q["scope"]
    );
    assert!(
        !q.contains_key("code_verifier") && !url.as_str().contains(&rfc.verifier),
        "the verifier stays with us"
    );
    assert!(!url.as_str().contains(CLIENT_SECRET));

    // A fresh sign-in: base64url without padding of SHA-256 of its verifier.
    let start = LoginStart::new();
    let (_, q) = query(&start);
    let challenge = &q["code_challenge"];
    assert_eq!(challenge.len(), 43, "32 bytes unpadded: {challenge}");
    assert!(
        challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "base64url alphabet, no padding: {challenge}"
    );
    assert_eq!(
        URL_SAFE_NO_PAD.decode(challenge).expect("base64url"),
        Sha256::digest(start.verifier.as_bytes()).to_vec()
    );
    assert_eq!(q["state"], start.state);
    assert_eq!(q["nonce"], start.nonce);
    assert_ne!(start.state, start.nonce);
}
