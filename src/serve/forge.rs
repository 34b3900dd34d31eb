//! Opening the pull request (GitHub) or merge request (GitLab) for a pushed branch.

use serde_json::json;

use crate::connectors::Secret;

/// Which git host's API opens the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ForgeKind {
    /// Only push the branch: a person opens the request (or the host does, on push).
    None,
    /// `POST /repos/{owner}/{repo}/pulls` (GitHub and GitHub Enterprise).
    Github,
    /// `POST /projects/{id}/merge_requests` (GitLab).
    Gitlab,
}

/// Where and as whom requests are opened.
#[derive(Clone, Debug)]
pub struct Forge {
    pub kind: ForgeKind,
    /// The API root: `https://api.github.com`, `https://gitlab.example/api/v4`.
    pub api: String,
    /// `owner/name` on GitHub; the project's path (`group/name`) or id on GitLab.
    pub project: String,
    pub token: Option<Secret>,
}

/// A request to merge `head` into `base`.
pub struct Request<'a> {
    pub head: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// Why the request was not opened; the branch is pushed either way.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("cannot reach {api}: {message}")]
    Unreachable { api: String, message: String },
    #[error("{api} refused to open the request ({status}): {body}")]
    Refused {
        api: String,
        status: u16,
        body: String,
    },
    #[error("{api} opened the request but its answer has no {field}")]
    Answer { api: String, field: &'static str },
}

impl Forge {
    /// Opens the request and returns its web address; `None` for [`ForgeKind::None`].
    pub async fn open(
        &self,
        http: &reqwest::Client,
        req: &Request<'_>,
    ) -> Result<Option<String>, ForgeError> {
        let api = self.api.trim_end_matches('/');
        let (url, body, field) = match self.kind {
            ForgeKind::None => return Ok(None),
            ForgeKind::Github => (
                format!("{api}/repos/{}/pulls", self.project),
                json!({"title": req.title, "head": req.head, "base": req.base, "body": req.body}),
                "html_url",
            ),
            ForgeKind::Gitlab => (
                format!(
                    "{api}/projects/{}/merge_requests",
                    urlencoding::encode(&self.project)
                ),
                json!({
                    "title": req.title,
                    "source_branch": req.head,
                    "target_branch": req.base,
                    "description": req.body,
                    "remove_source_branch": true,
                }),
                "web_url",
            ),
        };
        let mut call = http.post(&url).json(&body);
        if let Some(token) = &self.token {
            call = match self.kind {
                ForgeKind::Gitlab => call.header("PRIVATE-TOKEN", token.expose()),
                _ => call
                    .bearer_auth(token.expose())
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28"),
            };
        }
        let resp = call
            .header("User-Agent", "latchkey")
            .send()
            .await
            .map_err(|e| ForgeError::Unreachable {
                api: api.to_string(),
                message: crate::source::error_chain(&e),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ForgeError::Refused {
                api: api.to_string(),
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        answer[field]
            .as_str()
            .map(|u| Some(u.to_string()))
            .ok_or(ForgeError::Answer {
                api: api.to_string(),
                field,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, HeaderMap, serde_json::Value)>>>;

    /// A receiver on loopback answering every POST with `status` and `answer`.
    async fn receiver(status: StatusCode, answer: serde_json::Value) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                let answer = answer.clone();
                async move {
                    let json = serde_json::from_slice(&body).unwrap_or_default();
                    s.lock().unwrap().push((uri.to_string(), headers, json));
                    (status, axum::Json(answer))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn forge(kind: ForgeKind, api: &str) -> Forge {
        Forge {
            kind,
            api: api.to_string(),
            project: "agency/access".into(),
            token: Some(Secret::new("tok-3n-never-shown")),
        }
    }

    const REQ: Request<'static> = Request {
        head: "latchkey/acme/0123456789ab",
        base: "main",
        title: "acme: invite zoe@acme.example as client-viewer",
        body: "the review",
    };

    #[tokio::test]
    async fn github_and_gitlab_get_the_request_their_apis_document() {
        let http = reqwest::Client::new();
        let (api, seen) = receiver(
            StatusCode::CREATED,
            serde_json::json!({"html_url": "https://github.example/agency/access/pull/9"}),
        )
        .await;
        let url = forge(ForgeKind::Github, &api)
            .open(&http, &REQ)
            .await
            .unwrap();
        assert_eq!(
            url.as_deref(),
            Some("https://github.example/agency/access/pull/9")
        );
        let (path, headers, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(path, "/repos/agency/access/pulls");
        assert_eq!(headers["authorization"], "Bearer tok-3n-never-shown");
        assert_eq!(headers["x-github-api-version"], "2022-11-28");
        assert_eq!(body["head"], REQ.head);
        assert_eq!(body["base"], "main");
        assert_eq!(body["title"], REQ.title);

        let (api, seen) = receiver(
            StatusCode::CREATED,
            serde_json::json!({"web_url": "https://gitlab.example/agency/access/-/merge_requests/4"}),
        )
        .await;
        let url = forge(ForgeKind::Gitlab, &api)
            .open(&http, &REQ)
            .await
            .unwrap();
        assert_eq!(
            url.as_deref(),
            Some("https://gitlab.example/agency/access/-/merge_requests/4")
        );
        let (path, headers, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(path, "/projects/agency%2Faccess/merge_requests");
        assert_eq!(headers["private-token"], "tok-3n-never-shown");
        assert!(headers.get("authorization").is_none());
        assert_eq!(body["source_branch"], REQ.head);
        assert_eq!(body["target_branch"], "main");
        assert_eq!(body["description"], "the review");
    }

    #[tokio::test]
    async fn a_refusal_or_an_odd_answer_is_an_error_that_shows_no_token() {
        let http = reqwest::Client::new();
        let (api, _) = receiver(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"message": "A pull request already exists"}),
        )
        .await;
        let e = forge(ForgeKind::Github, &api)
            .open(&http, &REQ)
            .await
            .unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("422") && shown.contains("already exists"),
            "{shown}"
        );
        assert!(!shown.contains("tok-3n"), "{shown}");
        let (api, _) = receiver(StatusCode::CREATED, serde_json::json!({"id": 1})).await;
        let e = forge(ForgeKind::Gitlab, &api)
            .open(&http, &REQ)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ForgeError::Answer {
                    field: "web_url",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = forge(ForgeKind::Github, "http://127.0.0.1:9")
            .open(&http, &REQ)
            .await
            .unwrap_err();
        assert!(matches!(e, ForgeError::Unreachable { .. }), "{e:?}");
        // Without a forge, nothing is sent and nothing fails.
        assert_eq!(
            forge(ForgeKind::None, "").open(&http, &REQ).await.unwrap(),
            None
        );
    }
}
