//! `freshcache demo`: the main job a newcomer runs. Everything happens in a
//! fresh cache directory with an injected clock, so the tour is the same on
//! every machine and leaves the real cache alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use freshcache::{Cache, Config, Error, ManualClock, Put};

use super::output::outln;
use super::Status;

/// Arguments of `freshcache demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo's cache directory (its path is printed at the end).
    #[arg(long)]
    pub keep: bool,
}

fn feature_vector(seed: u32) -> Vec<u8> {
    // 1536 f32 values from a xorshift: realistic, barely compressible.
    let mut x = 0x9E37_79B9u32 ^ seed.wrapping_mul(0x85EB_CA6B);
    (0..1536)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ((x as f32 / u32::MAX as f32) - 0.5).to_le_bytes()
        })
        .collect()
}

pub fn run(a: DemoArgs, mut config: Config) -> anyhow::Result<Status> {
    let dir = tempfile::Builder::new()
        .prefix("freshcache-demo-")
        .tempdir()?;
    config.cache.root = dir.path().join("cache");
    let start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let clock = ManualClock::new(start);
    let cache = Cache::builder()
        .config(config)
        .clock(clock.clone())
        .open()?;
    outln!(
        "== freshcache demo (cache root {}, injected clock)\n",
        cache.root().display()
    )?;

    outln!("-- 1. store LLM feature vectors, odds and news under hierarchical keys")?;
    for c in 1..=3 {
        let key = format!("llm:features:c{c}:2026-11-21");
        let s = cache.put(&key, &feature_vector(c), Put::default())?;
        outln!(
            "  put {key:<34} {:>6} B -> {:>6} B stored  class {:<12} (raw floats barely compress: stored raw)",
            s.size, s.stored_size, s.class
        )?;
    }
    let s = cache.put(
        "llm:features:c1:2026-11-21-copy",
        &feature_vector(1),
        Put::default(),
    )?;
    outln!(
        "  put llm:features:c1:2026-11-21-copy     same bytes -> deduplicated: {}",
        s.deduplicated
    )?;
    for (game, home, away) in [
        ("g101", -110, 100),
        ("g102", -150, 130),
        ("g103", 120, -140),
    ] {
        let key = format!("odds:{game}:{}", start / 1000);
        let odds = serde_json::json!({
            "game": game, "book": "consensus", "moneyline": {"home": home, "away": away},
            "spread": {"home": -3.5, "away": 3.5, "price": -110}, "total": {"points": 47.5, "over": -105, "under": -115},
        });
        let s = cache.put_json(&key, &odds, Put::default())?;
        outln!(
            "  put {key:<34} {:>6} B -> {:>6} B stored  class {}",
            s.size,
            s.stored_size,
            s.class
        )?;
    }
    for (source, id, title) in [
        ("reuters", "a1", "Chiefs sign veteran safety"),
        ("reuters", "a2", "Injury report: QB questionable"),
        ("ap", "b7", "Odds shift after trade deadline"),
    ] {
        let key = format!("news:{source}:{id}");
        let article = serde_json::json!({
            "title": title, "link": format!("https://example.invalid/{source}/{id}"),
            "summary": title.repeat(8), "published": "2026-11-21T09:00:00Z",
        });
        let s = cache.put_json(&key, &article, Put::default())?;
        outln!(
            "  put {key:<34} {:>6} B -> {:>6} B stored  class {}",
            s.size,
            s.stored_size,
            s.class
        )?;
    }

    outln!("\n-- 2. read them back (fresh only; verified against their blake3 names)")?;
    let key = format!("odds:g101:{}", start / 1000);
    let odds: serde_json::Value = cache.get_json(&key)?.expect("just stored");
    outln!("  get {key} -> moneyline {}", odds["moneyline"])?;
    let v = cache
        .get("llm:features:c2:2026-11-21")?
        .expect("just stored");
    outln!(
        "  get llm:features:c2:2026-11-21 -> {} bytes ({} f32)",
        v.len(),
        v.len() / 4
    )?;

    outln!("\n-- 3. time passes: +61 s on the injected clock (odds TTL is 60 s)")?;
    clock.advance(Duration::from_secs(61));
    outln!(
        "  get {key} -> {}",
        if cache.get(&key)?.is_some() {
            "fresh"
        } else {
            "miss (expired)"
        }
    )?;
    let e = cache.get_entry(&key)?.expect("still on disk");
    outln!(
        "  get_entry shows it {:?}, kept for revalidation",
        e.meta.freshness
    )?;
    outln!(
        "  get news:reuters:a1 -> {}",
        if cache.get("news:reuters:a1")?.is_some() {
            "fresh (news TTL 1h)"
        } else {
            "miss"
        }
    )?;

    outln!("\n-- 4. staleness guard at inference time")?;
    let ok = cache
        .guard()
        .require(&["llm:features:c1:2026-11-21", "news:reuters:*"])?;
    outln!("  accepted: {} signals, all fresh", ok.signals.len())?;
    match cache
        .guard()
        .require(&["llm:features:c1:2026-11-21", "odds:g101:*", "odds:g999:*"])
    {
        Err(Error::Stale(stale)) => {
            outln!("  REFUSED inference run, {} bad signal(s):", stale.len())?;
            for s in stale {
                outln!("    {}", freshcache::summarize(std::slice::from_ref(&s)))?;
            }
        }
        other => anyhow::bail!("guard should have refused: {other:?}"),
    }

    outln!("\n-- 5. invalidate a pattern")?;
    outln!(
        "  invalidate news:reuters:* -> {} key(s) removed",
        cache.invalidate("news:reuters:*")?
    )?;
    outln!(
        "  remaining news: {:?}",
        cache
            .list(Some("news:*"))?
            .into_iter()
            .map(|m| m.key)
            .collect::<Vec<_>>()
    )?;

    outln!("\n-- 6. eviction: cap the cache below its size")?;
    let before = cache.disk_bytes()?;
    let r = cache.evict_with(Some(before * 3 / 4), None)?;
    outln!(
        "  cap {} B: removed {} entries ({} expired first), {} B -> {} B in {} ms",
        r.max_bytes,
        r.entries_removed,
        r.expired_removed,
        r.bytes_before,
        r.bytes_after,
        r.elapsed_ms
    )?;

    super::fetch::demo(&cache, &clock)?;

    outln!("\n-- 7. stats")?;
    cache.flush()?;
    let s = cache.stats()?;
    outln!(
        "  entries {}  stored {} B  logical {} B  hits {}  misses {}  hit rate {:.0}%  guard checks {}  ttl violations {}",
        s.entries, s.stored_bytes, s.logical_bytes, s.hits, s.misses, 100.0 * s.hit_rate, s.guard_checks, s.ttl_violations
    )?;
    if a.keep {
        let path = dir.keep();
        outln!("\nkept the demo cache at {}", path.display())?;
    }
    Ok(Status::Ok)
}
