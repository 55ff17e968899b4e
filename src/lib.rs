//! trustpath: a policy decision point for MCP authorization.
//!
//! The pipeline (see [`decide`]): authenticate the client's identity
//! document and proof, evaluate the organisation's Rego policy, trim the
//! result to what was requested, sign a short-lived grant, and append a
//! decision log entry before answering. ARCHITECTURE.md has the layers and
//! the code map.
//!
//! The public surface is what the `trustpath` binary and the integration
//! tests and benches drive: [`app`] to open and serve, [`config`], the
//! domain types in [`model`], the log's reading side ([`log`]: entries,
//! storage roles, queries, proofs, verification) with its engine in
//! [`store`], and the services the benches time one by one ([`identity`],
//! [`policy`], [`grant`], [`decide`], [`replay`]). HTTP handlers, the
//! writer thread, revocation and lifecycle plumbing are crate-private.

pub mod app;
pub mod canonical;
pub mod config;
pub mod decide;
pub mod digest;
pub(crate) mod disk;
pub mod grant;
pub mod identity;
pub mod input;
pub(crate) mod lifecycle;
pub mod log;
pub mod model;
pub mod policy;
pub mod progress;
pub mod replay;
pub mod retention;
pub(crate) mod revocation;
pub(crate) mod secret_file;
pub(crate) mod server;
pub mod sinks;
pub mod store;
pub mod telemetry;
pub mod text;
pub(crate) mod time;
pub(crate) mod tool_call;
pub mod trace_context;
