//! End-to-end tests of the `latchkey` binary, run as a user would: against git repositories
//! built in temp dirs with a fixed signature and time, with `--now` passed explicitly.

mod common;

mod apply;
mod ci;
mod conventions;
mod corpus;
mod example;
mod help;
mod image;
mod import;
mod ledger;
mod offboarding;
mod pending;
mod plan;
mod recertify;
mod review;
mod worktree;
