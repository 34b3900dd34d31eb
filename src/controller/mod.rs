//! The Kubernetes side: the `AccessRepository` resource, the operator, generated CRDs and
//! JSON Schemas, and the RBAC the operator needs.

pub mod generate;
pub mod resource;

pub use resource::{AccessRepository, AccessRepositorySpec, AccessRepositoryStatus};
