//! Exit statuses of `portwatch.exe` and the error every subcommand returns.

use std::fmt;

/// Done; for `stress`, a clean run.
pub const SUCCESS: u8 = 0;
/// The operation failed, or `stress` found a problem.
pub const FAILED: u8 = 1;
/// The command line is wrong (clap's own status).
pub const USAGE: u8 = 2;
/// Refused before doing anything: not elevated, test signing off, not
/// Windows.
pub const REFUSED: u8 = 3;
/// `\\.\PortWatch` does not exist: the driver is not installed (or bound
/// to no adapter, so not loaded).
pub const NOT_INSTALLED: u8 = 4;

/// Why a subcommand stopped: a message for stderr and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of the statuses above.
    pub code: u8,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl Failure {
    /// A failure with status [`FAILED`].
    pub fn failed(message: impl Into<String>) -> Self {
        Failure { code: FAILED, message: message.into() }
    }

    /// A refusal (status [`REFUSED`]).
    pub fn refused(message: impl Into<String>) -> Self {
        Failure { code: REFUSED, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
