//! The statements of the shared-tier sync state: the applied position in
//! the shared invalidation log and the outbox of unshared invalidations.

use super::*;

/// A position in a shared invalidation log: a Redis stream id (ms, seq).
pub type LogId = (u64, u64);

/// The log position this root has applied for `scope`: (epoch, id).
pub fn sync_position(c: &Connection, scope: &str) -> rusqlite::Result<Option<(String, LogId)>> {
    c.prepare_cached("SELECT epoch, pos_ms, pos_seq FROM redis_sync WHERE scope = ?1")?
        .query_row([scope], |r| {
            let (ms, seq): (i64, i64) = (r.get(1)?, r.get(2)?);
            Ok((r.get(0)?, (ms.max(0) as u64, seq.max(0) as u64)))
        })
        .optional()
}

/// Records that `scope`'s log has been applied up to `id` of `epoch`.
/// Without `reset`, only moves forward within the stored epoch (a process
/// still on an older epoch never overwrites a newer one); with `reset` (a
/// reconcile), replaces whatever was there.
pub fn set_sync_position(
    c: &Connection,
    scope: &str,
    epoch: &str,
    id: LogId,
    reset: bool,
) -> rusqlite::Result<()> {
    let (ms, seq) = (
        id.0.min(i64::MAX as u64) as i64,
        id.1.min(i64::MAX as u64) as i64,
    );
    if reset {
        c.prepare_cached(
            "INSERT INTO redis_sync(scope, epoch, pos_ms, pos_seq) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(scope) DO UPDATE SET epoch = excluded.epoch, \
             pos_ms = excluded.pos_ms, pos_seq = excluded.pos_seq",
        )?
        .execute(params![scope, epoch, ms, seq])?;
    } else {
        c.prepare_cached(
            "UPDATE redis_sync SET pos_ms = ?3, pos_seq = ?4 WHERE scope = ?1 AND epoch = ?2 \
             AND (pos_ms < ?3 OR (pos_ms = ?3 AND pos_seq < ?4))",
        )?
        .execute(params![scope, epoch, ms, seq])?;
    }
    Ok(())
}

/// Queues an invalidation for the shared tier; returns its sequence number.
pub fn outbox_push(
    c: &Connection,
    scope: &str,
    pattern: &str,
    now: Millis,
) -> rusqlite::Result<i64> {
    c.prepare_cached("INSERT INTO redis_outbox(scope, pattern, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![scope, pattern, now])?;
    Ok(c.last_insert_rowid())
}

/// The oldest `limit` queued invalidations of `scope`, in order: (seq, pattern).
pub fn outbox_peek(
    c: &Connection,
    scope: &str,
    limit: i64,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut st = c.prepare_cached(
        "SELECT seq, pattern FROM redis_outbox WHERE scope = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![scope, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// One queued invalidation: (pattern, created_at).
pub fn outbox_row(c: &Connection, seq: i64) -> rusqlite::Result<Option<(String, Millis)>> {
    c.prepare_cached("SELECT pattern, created_at FROM redis_outbox WHERE seq = ?1")?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Removes a published invalidation from the outbox.
pub fn outbox_remove(c: &Connection, seq: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM redis_outbox WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

/// Invalidations queued and not yet shared (every scope).
pub fn outbox_len(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT count(*) FROM redis_outbox")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}
