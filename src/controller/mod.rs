//! Long-running controllers: `latchkey run` (a git remote) and, later, the operator.

pub mod http;
pub mod metrics;
pub mod run;
