//! Prometheus text exposition (format 0.0.4). Counters come from the
//! index's persisted counters, so every process on a root reports the same
//! totals; latency histograms are per process. Metric names are fixed by
//! DESIGN.md.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::base::names::Tier;
use crate::disk::stats::Stats;

mod families;

use families::{render_freshness, render_inf003, render_redis};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0,
];

/// A fixed-bucket latency histogram, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Per-process latency histograms of the core operations.
#[derive(Debug, Default)]
pub struct Latency {
    pub get: Histogram,
    pub put: Histogram,
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Builds an exposition document metric family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` as (name, value) pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            let _ = writeln!(self.out, "{name}{{{}}} {value}", l.join(","));
        }
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// Appends a histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        h.render(&mut self.out, name, help);
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Bytes held by the local tiers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// Counted against the size cap (files + live index pages).
    pub disk: u64,
    /// L1's weighted size in this process (decompressed bytes + overhead).
    pub memory: u64,
}

/// Tiers in lookup order, the ones this cache consults.
pub(crate) fn tiers(hot: bool, redis: bool) -> Vec<Tier> {
    let mut t = vec![Tier::Memory];
    if hot {
        t.push(Tier::Hot);
    }
    t.push(Tier::Disk);
    if redis {
        t.push(Tier::Redis);
    }
    t
}

/// Per tier (in lookup order): (hits, misses) of one class. A tier's misses
/// are the lookups it could not answer: they went on to a lower tier (and
/// hit there) or missed everywhere, so the last tier's misses are the final
/// misses and `hits / (hits + misses)` is that tier's own hit ratio. Derived
/// from the persisted per-tier hit counters and the final misses, so the
/// read path counts nothing more.
fn by_tier(c: &crate::disk::stats::ClassStats, tiers: &[Tier]) -> Vec<(Tier, u64, u64)> {
    let hits = |t: &Tier| c.hits.get(t.as_str()).copied().unwrap_or(0);
    tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let below: u64 = tiers[i + 1..].iter().map(hits).sum();
            (*t, hits(t), below + c.misses)
        })
        .collect()
}

/// Renders the cache's metrics: the names fixed in DESIGN.md plus guard,
/// 304 and size figures, and the seeds' INF-003 names (`cache_*`).
/// `tiers`: the tiers this cache consults, in lookup order.
pub fn render(stats: &Stats, sizes: Sizes, latency: &Latency, tiers: &[Tier]) -> Exposition {
    let disk_bytes = sizes.disk;
    let mut e = Exposition::default();
    e.family(
        "freshcache_hits_total",
        "counter",
        "Cache hits by tier and class.",
    );
    for (class, c) in &stats.by_class {
        for (tier, n) in &c.hits {
            e.sample(
                "freshcache_hits_total",
                &[("tier", tier), ("class", class)],
                *n as f64,
            );
        }
    }
    e.family(
        "freshcache_misses_total",
        "counter",
        "Lookups that missed every tier (missing or expired), by class; tier is the last tier consulted.",
    );
    let last = tiers.last().map_or("disk", |t| t.as_str());
    for (class, c) in &stats.by_class {
        e.sample(
            "freshcache_misses_total",
            &[("tier", last), ("class", class)],
            c.misses as f64,
        );
    }
    e.family(
        "freshcache_upstream_requests_total",
        "counter",
        "Upstream requests by outcome.",
    );
    for outcome in ["200", "304", "error"] {
        let n = stats.upstream_requests.get(outcome).copied().unwrap_or(0);
        e.sample(
            "freshcache_upstream_requests_total",
            &[("outcome", outcome)],
            n as f64,
        );
    }
    e.family(
        "freshcache_ttl_violations_total",
        "counter",
        "Signals refused by the staleness guard, by class.",
    );
    for (class, c) in &stats.by_class {
        e.sample(
            "freshcache_ttl_violations_total",
            &[("class", class)],
            c.ttl_violations as f64,
        );
    }
    e.family(
        "freshcache_guard_checks_total",
        "counter",
        "Signals checked by the staleness guard, by class.",
    );
    for (class, c) in &stats.by_class {
        e.sample(
            "freshcache_guard_checks_total",
            &[("class", class)],
            c.guard_checks as f64,
        );
    }
    e.single(
        "freshcache_evicted_bytes_total",
        "counter",
        "Bytes freed by eviction.",
        stats.evicted_bytes as f64,
    );
    e.single(
        "freshcache_evicted_entries_total",
        "counter",
        "Entries removed by eviction.",
        stats.evicted_entries as f64,
    );
    e.single(
        "freshcache_corrupt_blobs_total",
        "counter",
        "Blobs that failed verification and were quarantined.",
        stats.corrupt_blobs as f64,
    );
    e.single(
        "freshcache_upstream_calls_avoided_total",
        "counter",
        "Upstream calls made unnecessary by hits and shared fetches.",
        stats.upstream_calls_avoided as f64,
    );
    e.single(
        "freshcache_saved_by_304_bytes_total",
        "counter",
        "Body bytes not transferred thanks to 304 responses.",
        stats.bytes_saved_by_304 as f64,
    );
    e.single(
        "freshcache_stored_bytes",
        "gauge",
        "Encoded blob bytes stored (inline and files).",
        stats.stored_bytes as f64,
    );
    e.single(
        "freshcache_disk_bytes",
        "gauge",
        "Bytes on disk counted against the size cap (files + live index pages).",
        disk_bytes as f64,
    );
    e.single(
        "freshcache_logical_bytes",
        "gauge",
        "Uncompressed bytes of all entries.",
        stats.logical_bytes as f64,
    );
    e.single(
        "freshcache_entries",
        "gauge",
        "Entries in the index.",
        stats.entries as f64,
    );
    e.single(
        "freshcache_hit_ratio",
        "gauge",
        "Hits / (hits + misses) since the root was created.",
        stats.hit_rate,
    );
    if stats.redis.configured {
        render_redis(&mut e, &stats.redis);
    }
    render_freshness(&mut e, stats);
    render_inf003(&mut e, stats, sizes, tiers);
    e.histogram(
        "freshcache_get_duration_seconds",
        "Latency of get calls in this process.",
        &latency.get,
    );
    e.histogram(
        "freshcache_put_duration_seconds",
        "Latency of put calls in this process.",
        &latency.put,
    );
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(500));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.000001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.00005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn a_tier_misses_what_lower_tiers_answered_plus_the_final_misses() {
        let mut c = crate::disk::stats::ClassStats::default();
        c.hits.insert("memory".into(), 5);
        c.hits.insert("disk".into(), 3);
        c.hits.insert("redis".into(), 2);
        c.misses = 1;
        let t = tiers(false, true);
        assert_eq!(
            by_tier(&c, &t),
            vec![
                (Tier::Memory, 5, 6),
                (Tier::Disk, 3, 3),
                (Tier::Redis, 2, 1)
            ]
        );
        assert_eq!(by_tier(&c, &tiers(false, false))[1], (Tier::Disk, 3, 1));
    }

    #[test]
    fn labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("m", "counter", "h")
            .sample("m", &[("class", "a\"b\\c")], 1.0);
        assert!(e.finish().contains("m{class=\"a\\\"b\\\\c\"} 1\n"));
    }
}
