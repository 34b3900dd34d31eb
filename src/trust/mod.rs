//! Delegated administration and trust (docs/trust.md): client boundaries on a change,
//! signed commits with per-path signers, and CODEOWNERS from the Client admins.

pub mod boundary;

pub use boundary::{BoundaryReport, ChangedFile, Owner, Violation};
pub mod signature;

pub use signature::{Refusal, Signers, TrustError};
pub mod codeowners;
