//! Fixed bounds every layer agrees on.

/// No blob is larger than this (`cache.max_value_size` is validated against
/// it), so a row claiming more is damaged and is never allocated for. A
/// fixed bound, not the config's: a process with a lower `max_value_size`
/// must not mistake another process's legitimate large value for corruption.
pub const MAX_BLOB_BYTES: u64 = 4 << 30;

/// Changes kept in the index's change log; a process whose hot map falls
/// further behind forgets its whole map.
pub const CHANGE_WINDOW: i64 = 65_536;
