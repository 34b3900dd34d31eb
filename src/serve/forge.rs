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
