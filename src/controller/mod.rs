//! The Kubernetes side: the `AccessRepository` resource, the operator, generated CRDs and
//! JSON Schemas, and the RBAC the operator needs.

pub mod generate;
pub mod leader;
pub mod operator;
pub mod operator_http;
pub mod rbac;
pub mod resource;
pub mod status;

pub use resource::{AccessRepository, AccessRepositorySpec, AccessRepositoryStatus};
