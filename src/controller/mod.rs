//! Long-running controllers: `latchkey run` over a git remote, and the Kubernetes
//! operator (the `AccessRepository` resource, generated CRDs and JSON Schemas, RBAC).

pub mod generate;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod operator_http;
pub mod rbac;
pub mod resource;
pub mod run;
pub mod status;

pub use resource::{AccessRepository, AccessRepositorySpec, AccessRepositoryStatus};
