//! `--help` texts teach the tool; they are snapshots so changes are reviewed.

use crate::common::run_in;

fn help(args: &[&str]) -> String {
    let out = run_in(&std::env::temp_dir(), args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

#[test]
fn top_level_help() {
    insta::assert_snapshot!("help", help(&["--help"]));
}

#[test]
fn validate_help() {
    insta::assert_snapshot!("help_validate", help(&["validate", "--help"]));
}

#[test]
fn plan_help() {
    insta::assert_snapshot!("help_plan", help(&["plan", "--help"]));
}

#[test]
fn apply_help() {
    insta::assert_snapshot!("help_apply", help(&["apply", "--help"]));
}

#[test]
fn who_help() {
    insta::assert_snapshot!("help_who", help(&["who", "--help"]));
}

#[test]
fn run_help() {
    insta::assert_snapshot!("help_run", help(&["run", "--help"]));
}

#[test]
fn completions_help() {
    insta::assert_snapshot!("help_completions", help(&["completions", "--help"]));
}

#[test]
fn man_help() {
    insta::assert_snapshot!("help_man", help(&["man", "--help"]));
}

#[test]
fn import_help() {
    insta::assert_snapshot!("help_import", help(&["import", "--help"]));
}
