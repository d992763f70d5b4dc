//! Batched bookkeeping for the read path and the statistics built from it.
//!
//! A get must not become a write transaction. Accesses (hits, last access)
//! and counter deltas collect in memory and are written in one transaction
//! when the batch window (`cache.access_flush`) has passed or the batch is
//! large, on `flush()`, and on drop. LRU order in the index is therefore
//! exact up to one batch window. Counters live in the index, so every
//! process on a root sees the same totals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use crate::base::clock::Millis;
use crate::base::error::Result;
pub use crate::base::names::{self, Tier};
use crate::disk::index::{self, totals, Index};

mod figures;

pub use figures::{ClassStats, Measured, QuotaStats, RedisStats, RefreshAheadStats, TtlEvidence};

/// Batches above this many distinct keys are flushed early.
const MAX_PENDING: usize = 4096;

/// Distinct (tier, class) tallies kept before further ones go straight to
/// the named counters (classes come from the config, so a handful).
const MAX_TALLIES: usize = 32;

#[derive(Debug, Default)]
struct Pending {
    since: Option<Millis>,
    access: HashMap<String, Access, ahash::RandomState>,
    counters: HashMap<String, i64>,
    /// Hits (`Some(tier)`) and misses (`None`) per class, found by a linear
    /// scan: a read neither formats nor hashes a counter name. Folded into
    /// `counters` by [`Pending::fold`] before anything reads them.
    tallies: Vec<(Option<Tier>, Box<str>, i64)>,
}

impl Pending {
    fn tally(&mut self, tier: Option<Tier>, class: &str) {
        if let Some(t) = self
            .tallies
            .iter_mut()
            .find(|(t, c, _)| *t == tier && **c == *class)
        {
            t.2 += 1;
        } else if self.tallies.len() < MAX_TALLIES {
            self.tallies.push((tier, class.into(), 1));
        } else {
            *self.counters.entry(tally_name(tier, class)).or_default() += 1;
        }
    }

    /// Moves the tallies into the named counters.
    fn fold(&mut self) {
        for (tier, class, n) in self.tallies.drain(..) {
            *self.counters.entry(tally_name(tier, &class)).or_default() += n;
        }
    }
}

fn tally_name(tier: Option<Tier>, class: &str) -> String {
    match tier {
        Some(tier) => format!("hits|{}|{class}", tier.as_str()),
        None => format!("misses|{class}"),
    }
}

#[derive(Debug, Clone, Copy)]
struct Access {
    hits: u64,
    last: Millis,
    /// Whether `last_access` (indexed, so costly to update) must move.
    move_lru: bool,
}

/// Collects accesses and counter deltas until the next flush.
#[derive(Debug)]
pub(crate) struct Recorder {
    pending: Mutex<Pending>,
    /// Held from taking a batch until it is committed (or put back), and by
    /// readers of the totals: a batch is always either pending or persisted
    /// to them, never neither (the flusher runs on its own thread).
    flushing: Mutex<()>,
    window_ms: Millis,
    /// A read moves `last_access` only when the stored one is this old.
    lru_ms: Millis,
}

impl Recorder {
    pub(crate) fn new(window_ms: Millis, lru_precision_ms: Millis) -> Recorder {
        Recorder {
            pending: Mutex::new(Pending::default()),
            flushing: Mutex::new(()),
            window_ms,
            lru_ms: lru_precision_ms.max(window_ms),
        }
    }

    /// Records a read of `key` at `now` and, if `hit` is given, a hit of
    /// that tier and class (one lock for both); says whether a flush is due.
    /// `stored_access` is the entry's last access as the index had it: when
    /// it is within `lru_precision` (at least the batch window) of `now`,
    /// the flush only adds hits and leaves the indexed `last_access` alone:
    /// LRU order is exact to that precision, and a hot key moves in the
    /// `entries_by_access` index once per precision instead of once per
    /// window.
    pub(crate) fn access(
        &self,
        key: &str,
        hit: Option<(Tier, &str)>,
        stored_access: Option<Millis>,
        now: Millis,
    ) -> bool {
        let mut guard = self.lock();
        let p = &mut *guard;
        if let Some((tier, class)) = hit {
            p.tally(Some(tier), class);
        }
        let move_lru = stored_access.is_none_or(|a| now.saturating_sub(a) >= self.lru_ms);
        match p.access.get_mut(key) {
            Some(a) => {
                a.hits += 1;
                a.last = a.last.max(now);
                a.move_lru |= move_lru;
            }
            None => {
                p.access.insert(
                    key.to_owned(),
                    Access {
                        hits: 1,
                        last: now,
                        move_lru,
                    },
                );
            }
        }
        Self::due(p, now, self.window_ms)
    }

    /// Counts a miss of `class` (allocation-free once the class has been
    /// seen); says whether a flush is due.
    pub(crate) fn miss(&self, class: &str, now: Millis) -> bool {
        let mut p = self.lock();
        p.tally(None, class);
        Self::due(&mut p, now, self.window_ms)
    }

    /// Adds `delta` to counter `name`; says whether a flush is due.
    pub(crate) fn count(&self, name: String, delta: i64, now: Millis) -> bool {
        let mut p = self.lock();
        *p.counters.entry(name).or_default() += delta;
        Self::due(&mut p, now, self.window_ms)
    }

    fn due(p: &mut Pending, now: Millis, window: Millis) -> bool {
        let since = *p.since.get_or_insert(now);
        now - since >= window || p.access.len() >= MAX_PENDING
    }

    /// Runs `f` (a read of the persisted totals) with no batch in flight,
    /// giving it the unflushed deltas: each delta is counted exactly once.
    pub(crate) fn with_pending<T>(&self, f: impl FnOnce(HashMap<String, i64>) -> T) -> T {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        f(self.pending_counters())
    }

    /// Unflushed counter deltas, for statistics that include this process.
    pub(crate) fn pending_counters(&self) -> HashMap<String, i64> {
        let mut p = self.lock();
        p.fold();
        p.counters.clone()
    }

    /// Writes everything pending in one transaction. With `wait == false`
    /// it gives up (keeping the batch) if this process's writer is busy.
    pub(crate) fn flush(&self, idx: &Index, wait: bool) -> Result<()> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = std::mem::take(&mut *self.lock());
        batch.fold();
        if batch.access.is_empty() && batch.counters.is_empty() {
            return Ok(());
        }
        let write = |tx: &rusqlite::Transaction<'_>| -> Result<()> {
            for (key, a) in &batch.access {
                let r = if a.move_lru {
                    index::record_access(tx, key, a.hits, a.last)
                } else {
                    index::record_hits(tx, key, a.hits)
                };
                r.map_err(|e| idx.wrap(e))?;
            }
            for (name, delta) in &batch.counters {
                index::bump(tx, name, *delta).map_err(|e| idx.wrap(e))?;
            }
            index::trim_changes(tx, crate::base::limits::CHANGE_WINDOW).map_err(|e| idx.wrap(e))?;
            Ok(())
        };
        let result = if wait {
            Some(idx.write(write))
        } else {
            idx.try_write(write)
        };
        match result {
            Some(Ok(())) => Ok(()),
            other => {
                // Put the batch back so nothing is lost; the next flush retries.
                let mut p = self.lock();
                for (k, b) in batch.access {
                    let a = p.access.entry(k).or_insert(Access { hits: 0, ..b });
                    a.hits += b.hits;
                    a.last = a.last.max(b.last);
                    a.move_lru |= b.move_lru;
                }
                for (k, d) in batch.counters {
                    *p.counters.entry(k).or_default() += d;
                }
                p.since = p.since.or(batch.since);
                other.unwrap_or(Ok(()))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A snapshot of the cache's figures, shared by every process on the root.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Entries in the index.
    pub entries: u64,
    /// Encoded blob bytes (inline and files).
    pub stored_bytes: u64,
    /// Uncompressed bytes of every entry (shared content counted per key).
    pub logical_bytes: u64,
    /// Size of the SQLite index.
    pub index_bytes: u64,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 without reads.
    pub hit_rate: f64,
    /// Hits by tier.
    pub hits_by_tier: BTreeMap<String, u64>,
    /// Upstream calls a cache hit or a shared (single-flight) call made unnecessary.
    pub upstream_calls_avoided: u64,
    /// Upstream requests by outcome (200, 304, error).
    pub upstream_requests: BTreeMap<String, u64>,
    /// Body bytes not transferred thanks to 304s.
    pub bytes_saved_by_304: u64,
    /// Blobs that failed verification (quarantined).
    pub corrupt_blobs: u64,
    /// Entries evicted.
    pub evicted_entries: u64,
    /// Bytes freed by eviction.
    pub evicted_bytes: u64,
    /// Signals the staleness guard judged.
    pub guard_checks: u64,
    /// Signals it refused.
    pub ttl_violations: u64,
    /// Per-class figures.
    pub by_class: BTreeMap<String, ClassStats>,
    /// The shared Redis tier.
    pub redis: RedisStats,
    /// The request quota of the current window: this root's count, plus,
    /// with Redis, the instances' shared count.
    pub quota: QuotaStats,
    /// The daemon's refresh-ahead of hot keys.
    pub refresh_ahead: RefreshAheadStats,
    /// Measured TTLs: what revalidations found, per class and per feed.
    pub measured: Measured,
}

fn rate(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Stats {
    /// Builds statistics from persisted counters plus unflushed deltas.
    pub(crate) fn from_counters(
        counters: impl IntoIterator<Item = (String, i64)>,
        index_bytes: u64,
    ) -> Stats {
        let mut s = Stats {
            index_bytes,
            ..Stats::default()
        };
        let mut merged: BTreeMap<String, i64> = BTreeMap::new();
        for (k, v) in counters {
            *merged.entry(k).or_default() += v;
        }
        for (name, v) in merged {
            let v = v.max(0) as u64;
            let parts: Vec<&str> = name.split('|').collect();
            match parts.as_slice() {
                [totals::ENTRIES] => s.entries = v,
                [totals::STORED_BYTES] => s.stored_bytes = v,
                [totals::LOGICAL_BYTES] => s.logical_bytes = v,
                [names::CORRUPT_BLOBS] => s.corrupt_blobs = v,
                [names::EVICTED_BYTES] => s.evicted_bytes = v,
                [names::EVICTED_ENTRIES] => s.evicted_entries = v,
                [names::BYTES_SAVED_304] => s.bytes_saved_by_304 = v,
                ["hits", tier, class] => {
                    s.hits += v;
                    *s.hits_by_tier.entry(tier.to_string()).or_default() += v;
                    *s.by_class
                        .entry(class.to_string())
                        .or_default()
                        .hits
                        .entry(tier.to_string())
                        .or_default() += v;
                }
                ["misses", class] => {
                    s.misses += v;
                    s.by_class.entry(class.to_string()).or_default().misses += v;
                }
                ["guard_checks", class] => {
                    s.guard_checks += v;
                    s.by_class
                        .entry(class.to_string())
                        .or_default()
                        .guard_checks += v;
                }
                ["ttl_violations", class] => {
                    s.ttl_violations += v;
                    s.by_class
                        .entry(class.to_string())
                        .or_default()
                        .ttl_violations += v;
                }
                ["upstream", outcome] => {
                    *s.upstream_requests.entry(outcome.to_string()).or_default() += v;
                }
                ["avoided", _] => s.upstream_calls_avoided += v,
                ["measure", scope @ ("class" | "feed"), rest @ .., what] if !rest.is_empty() => {
                    let map = if *scope == "class" {
                        &mut s.measured.classes
                    } else {
                        &mut s.measured.feeds
                    };
                    let e = map.entry(rest.join("|")).or_default();
                    match *what {
                        "changed" => e.changed += v,
                        "unchanged" => e.unchanged += v,
                        "intervals" => e.intervals += v,
                        "interval_ms" => e.interval_sum_ms += v,
                        _ => {}
                    }
                }
                ["refresh_ahead", what] => match *what {
                    "refreshed" => s.refresh_ahead.refreshed += v,
                    "failed" => s.refresh_ahead.failed += v,
                    "misses_avoided" => s.refresh_ahead.misses_avoided += v,
                    _ => {}
                },
                ["redis", what] => {
                    let r = &mut s.redis;
                    match *what {
                        "misses" => r.misses += v,
                        "backfills" => r.backfills += v,
                        "writes" => r.writes += v,
                        "errors" => r.errors += v,
                        "leases_won" => r.leases_won += v,
                        "leases_waited" => r.leases_waited += v,
                        "invalidations_received" => r.invalidations_received += v,
                        "unconfirmed_reads" => r.unconfirmed_reads += v,
                        "invalidations_not_shared" => r.invalidations_not_shared += v,
                        "reconciles" => r.reconciles += v,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        s.redis.hits = s.hits_by_tier.get("redis").copied().unwrap_or(0);
        s.upstream_calls_avoided += s.hits;
        s.hit_rate = rate(s.hits, s.hits + s.misses);
        for e in s
            .measured
            .classes
            .values_mut()
            .chain(s.measured.feeds.values_mut())
        {
            e.revalidations = e.changed + e.unchanged;
            e.unchanged_ratio = rate(e.unchanged, e.revalidations);
            if let Some(mean) = e.interval_sum_ms.checked_div(e.intervals) {
                e.mean_change_interval_ms = Some(mean);
                e.suggested_ttl_ms = Some(mean / 2);
            }
        }
        for c in s.by_class.values_mut() {
            let hits: u64 = c.hits.values().sum();
            c.hit_rate = rate(hits, hits + c.misses);
            c.ttl_violation_rate = rate(c.ttl_violations, c.guard_checks);
        }
        s
    }

    /// Reads the persisted counters.
    pub(crate) fn load(idx: &Index, pending: HashMap<String, i64>) -> Result<Stats> {
        let (counters, index_bytes, outbox) = idx.read(|c| {
            Ok((
                index::counters_with_prefix(c, "")?,
                index::index_bytes(c)?,
                index::outbox_len(c)?,
            ))
        })?;
        let mut s = Stats::from_counters(counters.into_iter().chain(pending), index_bytes);
        s.redis.pending_unshared = outbox;
        Ok(s)
    }
}
