//! Commands of the `trustpath` binary that need more than a few lines of
//! output handling. Part of the binary, not of the library.

pub mod config;
pub mod exit;
pub mod keys;
pub mod log;
pub mod policy_eval;
pub mod policy_test;
pub mod progress;
pub mod replay;
pub mod store;
