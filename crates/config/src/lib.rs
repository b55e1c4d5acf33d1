//! Postern's configuration: `gateway.toml`, layered and checked.
//!
//! [`load`] reads the main file, lays `gateway.d/*.toml` over it in name order
//! and then `POSTERN_<SECTION>__<KEY>` environment overrides, gives the result
//! types ([`Config`]) and checks that its pieces fit. Every error names the
//! file, line and column (or environment variable) it came from and, where
//! possible, the fix. Nothing here touches the network or Pingora, so `postern
//! check` and the gateway read configuration through exactly the same code.

mod cross;
pub mod diag;
pub mod duration;
mod fields;
mod layers;
mod load;
pub mod model;
mod sections;
pub mod size;
#[cfg(test)]
mod testing;
mod tree;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use load::{accepted_keys, load, Loaded};
pub use model::*;
