//! The container image (issue 18, item 5). No image can be built here (no container
//! daemon, no registry to pull the build image from), so the test checks what decides
//! whether the image works: its runtime stage is `FROM scratch` and copies only the root
//! that scripts/image-rootfs.sh collects, and the binary runs in exactly that root,
//! assembled from the test binary by the same script and the same COPY lines, as the
//! image's user, chrooted so that nothing of this machine is in reach.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Env, NOW};

fn source(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in source("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        let (body, more) = match t.strip_suffix('\\') {
            Some(b) => (b.trim(), true),
            None => (t, false),
        };
        match out.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(body);
            }
            _ => out.push(body.to_string()),
        }
        open = more;
    }
    out
}

/// The instructions of the last stage (the image).
fn runtime_stage() -> Vec<String> {
    let all = instructions();
    let from = all.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    all[from..].to_vec()
}

/// (source under the build stage's /rootfs, destination, --chown) of each runtime COPY.
fn copies() -> Vec<(String, String, Option<String>)> {
    runtime_stage()
        .iter()
        .filter(|i| i.starts_with("COPY "))
        .map(|i| {
            let words: Vec<&str> = i.split_whitespace().skip(1).collect();
            assert!(
                words.contains(&"--from=build"),
                "copies only from the build stage: {i}"
            );
            let chown = words
                .iter()
                .find_map(|w| w.strip_prefix("--chown="))
                .map(str::to_string);
            let paths: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| !w.starts_with("--"))
                .collect();
            assert_eq!(paths.len(), 2, "{i}");
            let src = paths[0]
                .strip_prefix("/rootfs")
                .unwrap_or_else(|| panic!("copies only the collected root: {i}"));
            (src.to_string(), paths[1].to_string(), chown)
        })
        .collect()
}

#[test]
fn the_runtime_stage_is_scratch_the_collected_root_and_a_non_root_user() {
    let stage = runtime_stage();
    assert_eq!(stage[0], "FROM scratch AS runtime");
    assert!(
        instructions()
            .iter()
            .any(|i| i.contains("sh scripts/image-rootfs.sh target/release/latchkey /rootfs")),
        "the build stage collects the root with the script this test runs"
    );
    let user = stage.iter().find_map(|i| i.strip_prefix("USER ")).unwrap();
    assert_eq!(user, "65532:65532");
    // The chart runs the pod as that user, with that cache folder.
    let deployment = source("charts/latchkey/templates/deployment.yaml");
    assert!(deployment.contains("runAsUser: 65532"));
    assert!(deployment.contains("mountPath: /var/cache/latchkey"));
    assert!(
        stage
            .iter()
            .any(|i| i.contains("LATCHKEY_CACHE_DIR=/var/cache/latchkey"))
    );
    assert!(stage.contains(&r#"ENTRYPOINT ["/usr/local/bin/latchkey"]"#.to_string()));
    assert!(!copies().is_empty());

    // OCI labels, and the name the chart pulls.
    let labels = stage.iter().find(|i| i.starts_with("LABEL ")).unwrap();
    for key in [
        "title",
        "source",
        "version",
        "revision",
        "licenses",
        "description",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{key}=")),
            "{key}"
        );
    }
    assert!(labels.contains("org.opencontainers.image.licenses=\"Apache-2.0\""));
    let values: serde_yaml::Value =
        serde_yaml::from_str(&source("charts/latchkey/values.yaml")).unwrap();
    let repository = values["image"]["repository"].as_str().unwrap();
    let path = repository.strip_prefix("ghcr.io/").unwrap();
    assert!(
        labels.contains(&format!(
            "org.opencontainers.image.source=\"https://github.com/{path}\""
        )),
        "ghcr.io links {repository} to the repository its source label names"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(stage.contains(&format!("ARG VERSION={version}")));
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&source("charts/latchkey/Chart.yaml")).unwrap();
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version),
        "the chart's default tag"
    );
    let release = source(".github/workflows/release.yml");
    assert!(release.contains(&format!("tags: {repository}:${{{{ env.VERSION }}}}")));
}

/// Assembles the image's root from the test binary: the script, then each COPY.
fn image_root(work: &Path) -> PathBuf {
    let collected = work.join("rootfs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image-rootfs.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_latchkey"))
        .arg(&collected)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = work.join("root");
    for (src, dest, chown) in copies() {
        let from = collected.join(src.trim_start_matches('/'));
        let to = root.join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(&to).unwrap();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(&to)
            .status()
            .unwrap();
        assert!(ok.success());
        if let Some(owner) = chown {
            let ok = Command::new("chown")
                .arg("-R")
                .arg(owner)
                .arg(&to)
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
    root
}

/// The image's ENV, as `chroot` passes it on.
fn image_env() -> Vec<(String, String)> {
    runtime_stage()
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(|e| e.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Runs latchkey in `root` as the image's user, with the image's environment only.
fn in_image(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg("/usr/local/bin/latchkey")
        .args(args)
        .env_clear()
        // Docker's default PATH (an image from scratch sets none); it also finds chroot.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(image_env())
        .env("NO_COLOR", "1")
        .output()
        .expect("chroot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_runs_with_only_what_the_image_holds() {
    // chroot needs root. CI runs as root, and must run this.
    let root_user = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root_user {
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_PEERS").is_none(),
            "the image's runtime check needs root (chroot)"
        );
        eprintln!("skipped: the image's runtime check needs root (chroot)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = image_root(work.path());

    let (code, out, err) = in_image(&root, &["--version"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("latchkey {}\n", env!("CARGO_PKG_VERSION")));

    // A repository and the embedded systems placed in the image, as a volume would be.
    let env = Env::base();
    env.systems();
    let srv = root.join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(env.path("access"))
        .arg(&srv)
        .status()
        .unwrap();
    assert!(ok.success());
    // A volume the image's user owns: libgit2, like git, refuses a repository owned by
    // someone else (see docs/ci.md).
    let ok = Command::new("chown")
        .args(["-R", "65532:65532"])
        .arg(srv.join("access"))
        .status()
        .unwrap();
    assert!(ok.success());
    // chroot starts in /, where the Systems' relative SQLite paths then point.
    for db in ["portal.sqlite", "staging.sqlite", "shop.sqlite"] {
        std::fs::copy(env.path(db), root.join(db)).unwrap();
    }

    let (code, _, err) = in_image(
        &root,
        &["validate", "/srv/access", "--rev", "main", "--now", NOW],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(": valid (3 systems"), "{err}");
    // A remote is mirrored into the cache folder, written as the image's user; the
    // SQLite systems are read: libgit2, the TLS libraries and SQLite all load.
    let (code, out, err) = in_image(
        &root,
        &[
            "plan",
            "file:///srv/access",
            "--rev",
            "main",
            "--now",
            NOW,
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 2, "changes: {err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!plan["changes"].as_array().unwrap().is_empty());
    assert!(
        root.join("var/cache/latchkey")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );

    // The check can fail: without one library the image would not start.
    let libssl = walk(&root)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libssl.so"))
        })
        .expect("the binary links libssl");
    std::fs::remove_file(&libssl).unwrap();
    let (code, _, err) = in_image(&root, &["--version"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("error while loading shared libraries"),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
