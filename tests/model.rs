//! The whole cache against a simple in-memory model: random put, get,
//! delete, invalidate and clock steps (redb's model-based testing idea).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::open_with;
use freshcache::Put;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, content: u8, ttl_s: u64 },
    Get { key: u8 },
    Delete { key: u8 },
    Invalidate { group: u8 },
    Advance { ms: u64 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 0u8..5, 1u64..120).prop_map(|(key, content, ttl_s)| Op::Put { key, content, ttl_s }),
        4 => (0u8..12).prop_map(|key| Op::Get { key }),
        1 => (0u8..12).prop_map(|key| Op::Delete { key }),
        1 => (0u8..3).prop_map(|group| Op::Invalidate { group }),
        2 => (0u64..90_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> String {
    format!("g{}:k{k}", k % 3)
}

fn content(c: u8) -> Vec<u8> {
    // Contents shared between keys (dedup), some large enough for files.
    common::noise(u64::from(c), 200 + usize::from(c) * 1500)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cache_behaves_like_a_map_with_expiry(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let tweak = |c: &mut freshcache::Config| c.cache.inline_max.0 = 2048;
        let (mut cache, clock) = open_with(dir.path(), tweak);
        let mut model: BTreeMap<String, (Vec<u8>, i64)> = BTreeMap::new();
        for op in ops {
            let now = cache.now();
            match op {
                Op::Put { key: k, content: c, ttl_s } => {
                    let ttl = Duration::from_secs(ttl_s);
                    cache.put(&key(k), &content(c), Put::default().ttl(ttl)).unwrap();
                    model.insert(key(k), (content(c), now + ttl_s as i64 * 1000));
                }
                Op::Get { key: k } => {
                    let expected = model.get(&key(k)).filter(|(_, exp)| now < *exp).map(|(v, _)| v.clone());
                    prop_assert_eq!(cache.get(&key(k)).unwrap().map(|b| b.to_vec()), expected);
                }
                Op::Delete { key: k } => {
                    prop_assert_eq!(cache.delete(&key(k)).unwrap(), model.remove(&key(k)).is_some());
                }
                Op::Invalidate { group } => {
                    let prefix = format!("g{group}:");
                    let before = model.len();
                    model.retain(|k, _| !k.starts_with(&prefix));
                    prop_assert_eq!(cache.invalidate(&format!("g{group}:*")).unwrap(), before - model.len());
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                Op::Reopen => {
                    drop(cache);
                    cache = freshcache::Cache::builder()
                        .config({
                            let mut c = freshcache::Config::default();
                            c.cache.root = dir.path().to_path_buf();
                            tweak(&mut c);
                            c
                        })
                        .clock(clock.clone())
                        .open()
                        .unwrap();
                }
            }
        }
        let listed: Vec<String> = cache.list(None).unwrap().into_iter().map(|m| m.key).collect();
        prop_assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
        let stats = cache.stats().unwrap();
        prop_assert_eq!(stats.entries as usize, model.len());
        prop_assert_eq!(stats.logical_bytes as usize, model.values().map(|(v, _)| v.len()).sum::<usize>());
        let report = cache.verify(false, None).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
    }
}
