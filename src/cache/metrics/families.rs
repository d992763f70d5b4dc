//! The metric families beyond the core ones: freshness features (refresh
//! ahead, measured TTLs, quota), the seeds' INF-003 names, the Redis tier.

use super::*;

/// Refresh-ahead and quota families.
pub(super) fn render_freshness(e: &mut Exposition, stats: &Stats) {
    let r = &stats.refresh_ahead;
    e.family(
        "freshcache_refresh_ahead_total",
        "counter",
        "Hot entries the daemon revalidated before they expired, by outcome.",
    );
    e.sample(
        "freshcache_refresh_ahead_total",
        &[("outcome", "refreshed")],
        r.refreshed as f64,
    );
    e.sample(
        "freshcache_refresh_ahead_total",
        &[("outcome", "failed")],
        r.failed as f64,
    );
    e.single(
        "freshcache_refresh_ahead_misses_avoided_total",
        "counter",
        "Refreshed-ahead entries read after their old expiry (misses avoided).",
        r.misses_avoided as f64,
    );
    e.family(
        "freshcache_revalidations_total",
        "counter",
        "Revalidations by class and result (unchanged: 304 or same content).",
    );
    for (class, m) in &stats.measured.classes {
        for (result, n) in [("unchanged", m.unchanged), ("changed", m.changed)] {
            e.sample(
                "freshcache_revalidations_total",
                &[("class", class), ("result", result)],
                n as f64,
            );
        }
    }
    e.family(
        "freshcache_feed_revalidations_total",
        "counter",
        "Revalidations of feed documents by feed and result.",
    );
    for (feed, m) in &stats.measured.feeds {
        for (result, n) in [("unchanged", m.unchanged), ("changed", m.changed)] {
            e.sample(
                "freshcache_feed_revalidations_total",
                &[("feed", feed), ("result", result)],
                n as f64,
            );
        }
    }
    e.family(
        "freshcache_change_interval_seconds_mean",
        "gauge",
        "Mean observed interval between content changes, by class.",
    );
    for (class, m) in &stats.measured.classes {
        if let Some(ms) = m.mean_change_interval_ms {
            e.sample(
                "freshcache_change_interval_seconds_mean",
                &[("class", class)],
                ms as f64 / 1000.0,
            );
        }
    }
    e.family(
        "freshcache_suggested_ttl_seconds",
        "gauge",
        "TTL the measured change intervals suggest, by class.",
    );
    for (class, m) in &stats.measured.classes {
        if let Some(ms) = m.suggested_ttl_ms {
            e.sample(
                "freshcache_suggested_ttl_seconds",
                &[("class", class)],
                ms as f64 / 1000.0,
            );
        }
    }
    let q = &stats.quota;
    e.single(
        "freshcache_quota_used",
        "gauge",
        "Upstream requests counted against fetch.quota in the current window.",
        q.used as f64,
    );
    e.single(
        "freshcache_quota_remaining",
        "gauge",
        "Upstream requests left in the current quota window.",
        q.left as f64,
    );
    e.single(
        "freshcache_quota_reset_timestamp_seconds",
        "gauge",
        "When the quota window resets (Unix seconds).",
        q.resets_at as f64 / 1000.0,
    );
}

/// The names the seeds' INF-003 plan and dashboards query, beside the
/// `freshcache_*` families they mirror: `cache_type` is the tier,
/// `data_type` the class.
pub(super) fn render_inf003(e: &mut Exposition, stats: &Stats, sizes: Sizes, tiers: &[Tier]) {
    let mut hits = vec![0u64; tiers.len()];
    let mut misses = vec![0u64; tiers.len()];
    for c in stats.by_class.values() {
        for (i, (_, h, m)) in by_tier(c, tiers).into_iter().enumerate() {
            hits[i] += h;
            misses[i] += m;
        }
    }
    for (name, help, values) in [
        (
            "cache_hit_total",
            "INF-003: hits by tier (cache_type); = sum by tier of freshcache_hits_total.",
            &hits,
        ),
        (
            "cache_miss_total",
            "INF-003: lookups a tier could not answer, by tier (cache_type): hits at a lower tier plus final misses.",
            &misses,
        ),
    ] {
        e.family(name, "counter", help);
        for (t, v) in tiers.iter().zip(values) {
            e.sample(name, &[("cache_type", t.as_str())], *v as f64);
        }
    }
    e.family(
        "ttl_violation_total",
        "counter",
        "INF-003: signals refused by the staleness guard by class (data_type); = freshcache_ttl_violations_total.",
    );
    for (class, c) in &stats.by_class {
        e.sample(
            "ttl_violation_total",
            &[("data_type", class)],
            c.ttl_violations as f64,
        );
    }
    e.family(
        "cache_size_bytes",
        "gauge",
        "INF-003: bytes held by tier (cache_type): disk = freshcache_disk_bytes, memory = this process's L1.",
    );
    e.sample(
        "cache_size_bytes",
        &[("cache_type", "memory")],
        sizes.memory as f64,
    );
    e.sample(
        "cache_size_bytes",
        &[("cache_type", "disk")],
        sizes.disk as f64,
    );
}

/// The Redis tier's families (hits are in `freshcache_hits_total{tier="redis"}`).
pub(super) fn render_redis(e: &mut Exposition, r: &crate::disk::stats::RedisStats) {
    e.single(
        "freshcache_redis_up",
        "gauge",
        "1 while the Redis tier is reachable (circuit breaker closed), 0 while it is down.",
        if r.up { 1.0 } else { 0.0 },
    );
    e.single(
        "freshcache_redis_confirmed",
        "gauge",
        "1 while this process's local entries are confirmed against the shared invalidation log.",
        if r.confirmed { 1.0 } else { 0.0 },
    );
    e.single(
        "freshcache_redis_pending_invalidations",
        "gauge",
        "Invalidations in this root's outbox, not yet shared with the other instances.",
        r.pending_unshared as f64,
    );
    for (name, help, v) in [
        (
            "misses",
            "Lookups that missed the Redis tier too.",
            r.misses,
        ),
        (
            "backfills",
            "Entries copied from Redis into the local tiers.",
            r.backfills,
        ),
        ("writes", "Entries written through to Redis.", r.writes),
        ("errors", "Failed or timed-out Redis calls.", r.errors),
        (
            "invalidations_received",
            "Invalidations from other instances applied locally.",
            r.invalidations_received,
        ),
        (
            "unconfirmed_reads",
            "Reads that served an unconfirmed local entry (redis.consistency: available).",
            r.unconfirmed_reads,
        ),
        (
            "invalidations_not_shared",
            "Invalidations made while Redis was unreachable (queued in the outbox).",
            r.invalidations_not_shared,
        ),
        (
            "reconciles",
            "Full reconciles with Redis (log trimmed, data set replaced, root never synced).",
            r.reconciles,
        ),
    ] {
        let name = format!("freshcache_redis_{name}_total");
        e.single(&name, "counter", help, v as f64);
    }
    e.family(
        "freshcache_redis_leases_total",
        "counter",
        "Cross-instance fetch leases by outcome (won: made the upstream call, waited: another instance did).",
    );
    e.sample(
        "freshcache_redis_leases_total",
        &[("outcome", "won")],
        r.leases_won as f64,
    );
    e.sample(
        "freshcache_redis_leases_total",
        &[("outcome", "waited")],
        r.leases_waited as f64,
    );
}
