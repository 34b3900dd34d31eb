//! CLI conventions (issue 18, item 6): completions and a man page, colour that follows
//! NO_COLOR / CLICOLOR_FORCE and the terminal (in logs too), JSON logs, a closed pipe,
//! examples in every --help, plain git errors, RFC 3339 instants, `run --once`.

use std::io::Read;
use std::process::{Command, Stdio};

use clap::CommandFactory;

use crate::common::{Env, NOW, REPO, run_in};

const ESC: char = '\u{1b}';

/// The base repository with empty systems: its plan has changes (coloured on a terminal).
fn with_changes() -> Env {
    let env = Env::base();
    env.systems();
    env
}

/// The binary with no colour or log settings from the environment of the test runner.
fn latchkey(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    c.current_dir(env.dir.path())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG")
        .env_remove("LATCHKEY_LOG")
        .env("TERM", "xterm-256color")
        .env("XDG_CACHE_HOME", env.dir.path().join(".cache"));
    c
}

/// Runs `args` on a pseudo-terminal (util-linux `script`), returning what it showed.
fn on_terminal(env: &Env, no_color: bool, args: &[&str]) -> String {
    let line = std::iter::once(env!("CARGO_BIN_EXE_latchkey"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .env("XDG_CACHE_HOME", env.dir.path().join(".cache"))
        .stdin(Stdio::null());
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let out = script.output().expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_shows_on_a_terminal_unless_no_color() {
    let env = with_changes();
    let args = ["plan", REPO, "--rev", "main", "--now", NOW];
    let tty = on_terminal(&env, false, &args);
    assert!(tty.contains("+ dana@acme.example"), "{tty}");
    assert!(tty.contains(ESC), "a terminal shows colour: {tty:?}");
    let no_color = on_terminal(&env, true, &args);
    assert!(no_color.contains("+ dana@acme.example"), "{no_color}");
    assert!(!no_color.contains(ESC), "NO_COLOR: {no_color:?}");

    // Not a terminal: none, unless CLICOLOR_FORCE.
    let piped = latchkey(&env).args(args).output().unwrap();
    assert!(!String::from_utf8_lossy(&piped.stdout).contains(ESC));
    let forced = latchkey(&env)
        .args(args)
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&forced.stdout).contains(ESC));
}

#[test]
fn logs_carry_no_colour_when_redirected_and_are_json_on_request() {
    let env = with_changes();
    let run = ["run", REPO, "--once", "--now", NOW, "--log", "info"];
    let redirected = latchkey(&env).args(run).output().unwrap();
    let stderr = String::from_utf8_lossy(&redirected.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains(ESC), "{stderr:?}");
    let tty = on_terminal(&env, true, &run);
    assert!(tty.contains("INFO") && !tty.contains(ESC), "{tty:?}");
    let forced = latchkey(&env)
        .args(run)
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&forced.stderr).contains(ESC));

    let env = with_changes();
    let json = latchkey(&env)
        .args(run)
        .args(["--log-format", "json", "--format", "json"])
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&json.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "INFO"), "{stderr}");
    assert!(!stderr.contains(ESC));
}

#[test]
fn run_once_prints_a_summary_and_json_on_request() {
    let env = with_changes();
    let head = env.head();
    let out = env.run(&["run", REPO, "--once", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "applied main@sha1:{head}: 11 of 11 changes; next change at 2026-11-25T12:00:00Z\n"
        )
    );
    assert!(!out.stderr.contains("Applied {"), "{}", out.stderr);

    let env = with_changes();
    let out = env.run(&["run", REPO, "--once", "--now", NOW, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "applied");
    assert_eq!(v["changes"], 11);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["nextChange"], "2026-11-25T12:00:00Z");
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let env = Env::base();
    env.systems();
    // Enough members that the JSON plan is far larger than a pipe's buffer.
    let mut members = String::new();
    for i in 0..1500 {
        members.push_str(&format!(
            "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: m{i}}}\n\
             spec: {{email: m{i}@acme.example, client: acme, grants: [{{role: viewer}}]}}\n"
        ));
    }
    env.commit(&[("clients/acme/many.yaml", Some(&members))], "many");
    let mut child = latchkey(&env)
        .args([
            "plan", REPO, "--rev", "main", "--now", NOW, "--format", "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // `| head -c 10`
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(&first[..1], b"{");
    assert_eq!(stderr, "", "no panic, no message");
    assert_eq!(status.code(), Some(141), "as a shell shows SIGPIPE");
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [
        ("bash", Some(["bash", "-n"])),
        ("zsh", None),
        ("fish", None),
    ] {
        let out = run_in(dir.path(), &["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["validate", "staged", "completions", "log-format"] {
            assert!(out.stdout.contains(word), "{shell} completes {word}");
        }
        let path = dir.path().join(format!("latchkey.{shell}"));
        std::fs::write(&path, &out.stdout).unwrap();
        // Syntax-checked by the shell itself where it is installed (bash always is).
        if let Some([sh, flag]) = check {
            let ok = Command::new(sh).arg(flag).arg(&path).status().unwrap();
            assert!(ok.success(), "{shell} script parses");
        }
        for (sh, flag) in [("zsh", "-n"), ("fish", "--no-execute")] {
            if sh == shell && which(sh) {
                let ok = Command::new(sh).arg(flag).arg(&path).status().unwrap();
                assert!(ok.success(), "{shell} script parses");
            }
        }
    }
    let bad = run_in(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.code, 1);
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_man_page_for_the_tool_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(".ie"), "{}", &out.stdout[..200]);
    assert!(out.stdout.contains(".TH latchkey 1"), "roff title");
    assert!(out.stdout.contains("validate"));
    let pages = dir.path().join("man1");
    let out = run_in(dir.path(), &["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for page in [
        "latchkey.1",
        "latchkey-validate.1",
        "latchkey-who.1",
        "latchkey-audit-verify.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page}");
    }
}

/// Every command's --help (and the tool's) ends with examples of it.
#[test]
fn every_help_ends_with_examples() {
    fn visit(cmd: &mut clap::Command, path: String, missing: &mut Vec<String>) {
        let help = cmd.render_long_help().to_string();
        let examples = help.rfind("\nExamples:\n");
        let tail_ok = examples.is_some_and(|i| {
            help[i..]
                .lines()
                .skip(2)
                .take(1)
                .any(|l| l.trim_start().starts_with("latchkey") || l.contains("latchkey "))
        });
        if !tail_ok {
            missing.push(path.clone());
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            let sub = cmd.find_subcommand_mut(&name).unwrap();
            visit(sub, format!("{path} {name}"), missing);
        }
    }
    let mut cli = latchkey::cli::Cli::command();
    cli.build();
    let mut missing = Vec::new();
    visit(&mut cli, "latchkey".into(), &mut missing);
    assert!(missing.is_empty(), "no examples at the end of: {missing:?}");
}

#[test]
fn git_errors_are_plain() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "nowhere"][..],
        &["validate", "nowhere", "--rev", "main"],
        &["apply", "nowhere", "--dry-run"],
    ] {
        let out = run_in(dir.path(), args);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr
                .starts_with("error: cannot open repository nowhere: "),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("class=") && !out.stderr.contains("code="),
            "{}",
            out.stderr
        );
    }
    let env = Env::base();
    let out = env.run(&["plan", REPO, "--rev", "no-such-branch"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: revision \"no-such-branch\" not found in access"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("class="), "{}", out.stderr);
}

#[test]
fn now_is_offered_only_where_it_means_something() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["validate", "plan", "apply", "run", "check"] {
        let out = run_in(dir.path(), &[cmd, "--help"]);
        assert!(out.stdout.contains("--now <TIME>"), "{cmd}");
    }
    for cmd in [
        &["who"][..],
        &["history"],
        &["audit", "verify"],
        &["codeowners"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run_in(dir.path(), &args);
        assert_eq!(out.code, 0, "{cmd:?}");
        assert!(!out.stdout.contains("--now"), "{cmd:?}");
    }
}

#[test]
fn who_at_accepts_now_and_dates() {
    let env = Env::base();
    for at in [
        "now",
        "2026-03-15",
        "2026-03-15T12:00:00Z",
        "2026-03-15T13:00:00+01:00",
    ] {
        let out = env.run(&["who", REPO, "--rev", "main", "--at", at]);
        assert_eq!(out.code, 0, "{at}: {}", out.stderr);
        assert!(out.stdout.starts_with("Access at "), "{at}: {}", out.stdout);
    }
    let out = env.run(&["who", REPO, "--rev", "main", "--at", "2026-03-15"]);
    assert_eq!(
        out.stdout,
        "Access at 2026-03-15T00:00:00Z (0 entitlements)\n"
    );
    let out = env.run(&[
        "who",
        REPO,
        "--rev",
        "main",
        "--at",
        "2026-03-15T13:00:00+01:00",
    ]);
    assert_eq!(
        out.stdout,
        "Access at 2026-03-15T12:00:00Z (0 entitlements)\n"
    );
    let out = env.run(&["who", REPO, "--at", "last tuesday"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("a date (2026-03-15), an RFC 3339 instant"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_json_and_format_json_are_one() {
    let env = Env::base();
    // At the corpus's own instant: from the wall clock, its grant that expired on
    // 2026-11-25 is "expired more than 7d ago" (a warning) once December comes.
    let a = env.run(&["validate", REPO, "--rev", "main", "--now", NOW, "--json"]);
    let b = env.run(&[
        "validate", REPO, "--rev", "main", "--now", NOW, "--format", "json",
    ]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, "[]\n");
}
