#!/usr/bin/env python3
"""Create or update the one latchkey comment on a pull request (GitHub) or merge request
(GitLab), found by the marker latchkey's review starts with.

    upsert-comment.py github BODY_FILE --repo OWNER/NAME --number N
    upsert-comment.py gitlab BODY_FILE --project ID --number IID

GitHub reads the token from GITHUB_TOKEN and the API from GITHUB_API_URL (default
https://api.github.com); GitLab from LATCHKEY_NOTE_TOKEN and CI_API_V4_URL. Standard
library only, so it runs on any runner with python3. tests/cli/ci.rs runs it against a
fake of both APIs on loopback.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

MARKER = "<!-- latchkey-plan -->"
PER_PAGE = 100
# A pull request with more comments than this is not searched further (and gets a new one).
MAX_PAGES = 50


def call(method, url, headers, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:500]
        sys.exit(f"upsert-comment: {method} {url}: HTTP {e.code}: {detail}")
    except urllib.error.URLError as e:
        sys.exit(f"upsert-comment: {method} {url}: {e.reason}")


def find(list_url, headers):
    """The id of the first comment holding the marker, or None."""
    for page in range(1, MAX_PAGES + 1):
        sep = "&" if "?" in list_url else "?"
        items = call("GET", f"{list_url}{sep}per_page={PER_PAGE}&page={page}", headers)
        for item in items or []:
            if MARKER in (item.get("body") or ""):
                return item["id"]
        if not items or len(items) < PER_PAGE:
            return None
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("forge", choices=["github", "gitlab"])
    p.add_argument("body_file")
    p.add_argument("--repo", help="GitHub OWNER/NAME")
    p.add_argument("--project", help="GitLab project id")
    p.add_argument("--number", required=True, help="pull request number or merge request iid")
    args = p.parse_args()

    with open(args.body_file, encoding="utf-8") as f:
        body = f.read()
    # What latchkey did not write (an error it could not plan) still carries the marker,
    # so the next run finds and replaces it.
    if MARKER not in body:
        body = f"{MARKER}\n{body}"

    if args.forge == "github":
        if not args.repo:
            sys.exit("upsert-comment: github needs --repo OWNER/NAME")
        api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        headers = {
            "Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        base = f"{api}/repos/{args.repo}/issues"
        found = find(f"{base}/{args.number}/comments", headers)
        if found is None:
            call("POST", f"{base}/{args.number}/comments", headers, {"body": body})
            print(f"upsert-comment: created the comment on #{args.number}")
        else:
            call("PATCH", f"{base}/comments/{found}", headers, {"body": body})
            print(f"upsert-comment: updated comment {found} on #{args.number}")
    else:
        if not args.project:
            sys.exit("upsert-comment: gitlab needs --project ID")
        api = os.environ["CI_API_V4_URL"].rstrip("/")
        headers = {"PRIVATE-TOKEN": os.environ["LATCHKEY_NOTE_TOKEN"]}
        notes = f"{api}/projects/{args.project}/merge_requests/{args.number}/notes"
        found = find(f"{notes}?sort=asc&order_by=created_at", headers)
        if found is None:
            call("POST", notes, headers, {"body": body})
            print(f"upsert-comment: created the note on !{args.number}")
        else:
            call("PUT", f"{notes}/{found}", headers, {"body": body})
            print(f"upsert-comment: updated note {found} on !{args.number}")


if __name__ == "__main__":
    main()
