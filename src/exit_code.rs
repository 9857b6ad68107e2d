//! The process exit codes of SPEC §6, as named constants.

/// Every targeted host runs the new version and is registered.
pub const SUCCESS: i32 = 0;
/// The run completed; some hosts failed within `max_failures` and were reverted.
pub const HOSTS_FAILED: i32 = 1;
/// Usage or configuration error; nothing was touched.
pub const CONFIG: i32 = 2;
/// Preflight failed (unreachable host, host key mismatch, lock held, ...); nothing was changed.
pub const PREFLIGHT: i32 = 3;
/// The failure budget was exceeded; the run stopped and `on_failure` was applied.
pub const BUDGET_EXCEEDED: i32 = 4;
/// Interrupted; `tranche resume` continues.
pub const INTERRUPTED: i32 = 130;
