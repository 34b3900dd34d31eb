//! The plan: desired × actual × now → ordered changes, then guards. Pure and shared by
//! the CLI and the controller, so what `plan` prints is what `apply` does.

mod change;
mod desired;
mod diff;
mod guard;
pub mod proposed;
pub mod render;
pub mod review;

pub use change::{Change, Guard, Hold, OutOfScope, Plan, Reason, Refusal, SystemStatus};
pub use desired::{Desired, DesiredCache, EntKey, Source, WantedAccount};
pub use diff::{Inputs, Pending, PendingFailure, diff};
pub use guard::guard;
