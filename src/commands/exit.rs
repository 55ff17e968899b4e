//! Exit codes: one meaning each, the same for every command (README,
//! "Exit codes").

use std::process::ExitCode;

// 0: the command did what was asked, and every check passed.
/// A check found something: a policy test failed or the policies do not
/// compile, a replay gate tripped (or evaluated nothing), the log did not
/// verify, a probed server is not healthy.
pub const FOUND: u8 = 1;
/// The command line or the configuration is wrong (clap's own errors
/// use 2 as well).
pub const USAGE: u8 = 2;
/// The work could not be done: a store, a file, the network.
pub const FAILED: u8 = 3;

/// A mistake in how the command was called, named with its flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A usage error, as an `anyhow` error the exit code can tell apart.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// A check that found something: already reported, just the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Found(pub String);

/// The exit code for an error that ended a command.
pub fn of_error(e: &anyhow::Error) -> ExitCode {
    use trustpath::app::AppError;
    use trustpath::config::ConfigError;
    let usage = e.chain().any(|cause| {
        cause.is::<Usage>()
            || cause.is::<ConfigError>()
            || cause
                .downcast_ref::<AppError>()
                .is_some_and(|a| matches!(a, AppError::Config(_)))
    });
    let found = e.chain().any(|cause| cause.is::<Found>());
    ExitCode::from(if usage {
        USAGE
    } else if found {
        FOUND
    } else {
        FAILED
    })
}
