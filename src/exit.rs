//! The process's exit codes.

/// Exit codes are a contract (documented in docs/exit-codes.md, linked from
/// the README): 0 success, 1 a check or verification failed, 2 could not
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failed = 1,
    CouldNotRun = 2,
}
