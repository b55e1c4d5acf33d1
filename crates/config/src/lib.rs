//! Postern's configuration: `gateway.toml`, layered and checked.
//!
//! [`load`] reads the main file, lays `gateway.d/*.toml` over it in name order
//! and then `POSTERN_<SECTION>__<KEY>` environment overrides, gives the result
//! types ([`Config`]) and checks that its pieces fit. Every error names the
//! file, line and column (or environment variable) it came from and, where
//! possible, the fix. Nothing here touches the network or Pingora, so `postern
//! check` and the gateway read configuration through exactly the same code.

pub mod diag;
pub mod duration;
mod load;
pub mod model;
pub mod size;
mod tree;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use load::{accepted_keys, load, Loaded};
pub use model::*;
