//! `get_or_fetch_many`: one snapshot, one loader call with only the missing
//! keys, one transaction, single-flight per key across concurrent batches.

mod common;

use std::sync::{Arc, Mutex};

use freshcache::{Error, Put};

type Calls = Arc<Mutex<Vec<Vec<String>>>>;

fn value(k: &str) -> Vec<u8> {
    format!("v:{k}").into_bytes()
}

#[tokio::test]
async fn a_batch_of_100_with_30_missing_makes_one_loader_call_with_those_30() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let keys: Vec<String> = (0..100).map(|i| format!("players:{i:03}")).collect();
    let mut expect_missing = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if i % 10 < 3 {
            expect_missing.push(k.clone());
        } else {
            cache.put(k, &value(k), Put::default()).unwrap();
        }
    }
    let strs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let got = cache
        .get_or_fetch_many(&strs, |missing| async move {
            c.lock().unwrap().push(missing.clone());
            Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                let v = value(&k);
                (k, v)
            }))
        })
        .await
        .unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let mut asked = calls[0].clone();
    asked.sort();
    assert_eq!(asked, expect_missing);
    for (k, v) in keys.iter().zip(&got) {
        assert_eq!(v.as_deref(), Some(&value(k)[..]), "{k}");
    }
    // Stored: the next batch asks for nothing.
    let got = cache
        .get_or_fetch_many(&strs, |missing| async move {
            panic!("nothing is missing, asked for {missing:?}");
            #[allow(unreachable_code)]
            Ok::<Vec<(String, Vec<u8>)>, std::io::Error>(Vec::new())
        })
        .await
        .unwrap();
    assert!(got.iter().all(Option::is_some));
}

#[tokio::test]
async fn keys_the_loader_does_not_return_stay_misses() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let got = cache
        .get_or_fetch_many(
            &["players:a", "players:b", "players:a"],
            |missing| async move {
                assert_eq!(missing, ["players:a", "players:b"]);
                Ok::<_, std::io::Error>(vec![
                    ("players:a".to_string(), b"A".to_vec()),
                    ("players:zzz".to_string(), b"not asked".to_vec()),
                ])
            },
        )
        .await
        .unwrap();
    assert_eq!(got, [Some("A".into()), None, Some("A".into())]);
    assert!(cache.stat("players:b").unwrap().is_none());
    assert!(cache.stat("players:zzz").unwrap().is_none());
}

#[tokio::test]
async fn a_failing_loader_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let err = cache
        .get_or_fetch_many(&["players:a", "players:b"], |_| async move {
            Err::<Vec<(String, Vec<u8>)>, _>(std::io::Error::other("503 from upstream"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Loader { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 5);
    assert!(cache.stat("players:a").unwrap().is_none());
    assert!(matches!(
        cache
            .get_or_fetch_many(&["bad key!*"], |_| async {
                Ok::<Vec<(String, Vec<u8>)>, std::io::Error>(Vec::new())
            })
            .await,
        Err(Error::InvalidKey { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_concurrent_batches_load_each_missing_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let a: Vec<String> = (0..20).map(|i| format!("players:{i:02}")).collect();
    let b: Vec<String> = (10..30).map(|i| format!("players:{i:02}")).collect();
    let calls: Calls = Arc::default();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let batch_a = {
        let (cache, calls, a) = (cache.clone(), calls.clone(), a.clone());
        tokio::spawn(async move {
            let strs: Vec<&str> = a.iter().map(String::as_str).collect();
            cache
                .get_or_fetch_many(&strs, |missing| async move {
                    calls.lock().unwrap().push(missing.clone());
                    entered_tx.send(()).unwrap();
                    release_rx.await.unwrap(); // held open until B has loaded its own keys
                    Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                        let v = value(&k);
                        (k, v)
                    }))
                })
                .await
        })
    };
    entered_rx.await.unwrap();
    let batch_b = {
        let (cache, calls, b) = (cache.clone(), calls.clone(), b.clone());
        tokio::spawn(async move {
            let strs: Vec<&str> = b.iter().map(String::as_str).collect();
            cache
                .get_or_fetch_many(&strs, |missing| async move {
                    calls.lock().unwrap().push(missing.clone());
                    Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                        let v = value(&k);
                        (k, v)
                    }))
                })
                .await
        })
    };
    // B loads 20..30 and then waits for A's 10..20; wait until its call is in.
    while calls.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    release_tx.send(()).unwrap();
    let got_a = batch_a.await.unwrap().unwrap();
    let got_b = batch_b.await.unwrap().unwrap();
    for (k, v) in a.iter().zip(&got_a).chain(b.iter().zip(&got_b)) {
        assert_eq!(v.as_deref(), Some(&value(k)[..]), "{k}");
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let mut all: Vec<String> = calls.concat();
    all.sort();
    let expected: Vec<String> = (0..30).map(|i| format!("players:{i:02}")).collect();
    assert_eq!(all, expected, "each key loaded exactly once");
    assert_eq!(
        calls[1],
        (20..30)
            .map(|i| format!("players:{i:02}"))
            .collect::<Vec<_>>()
    );
    let avoided = cache.stats().unwrap().upstream_calls_avoided;
    assert!(
        avoided >= 10,
        "B's 10 shared keys count as avoided: {avoided}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_cancelled_batch_are_loaded_by_the_one_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch_many(&["players:x"], |_| async move {
                    entered_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<Vec<(String, Vec<u8>)>, std::io::Error>(Vec::new())
                })
                .await
        })
    };
    entered_rx.await.unwrap();
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch_many(&["players:x"], |missing| async move {
                    Ok::<_, std::io::Error>(vec![(missing[0].clone(), b"X".to_vec())])
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    leader.abort();
    let got = follower.await.unwrap().unwrap();
    assert_eq!(got, [Some("X".into())]);
}

/// `get_or_fetch` and `get_or_fetch_many` share one table of keys in
/// flight: a single-key caller waits for the batch loading its key, and a
/// batch waits for the single-key loader of a key it needs — each key is
/// loaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_and_batch_loads_of_one_key_share_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let calls: Calls = Arc::default();

    // 1. A batch is loading players:a; a get_or_fetch of it waits for it.
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let batch = {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch_many(&["players:a", "players:b"], |missing| async move {
                    calls.lock().unwrap().push(missing.clone());
                    entered_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                        let v = value(&k);
                        (k, v)
                    }))
                })
                .await
        })
    };
    entered_rx.await.unwrap();
    let single = {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch("players:a", || async move {
                    calls.lock().unwrap().push(vec!["single players:a".into()]);
                    Ok::<_, std::io::Error>(b"single".to_vec())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await; // let it reach the wait
    release_tx.send(()).unwrap();
    assert_eq!(&single.await.unwrap().unwrap()[..], &value("players:a")[..]);
    batch.await.unwrap().unwrap();

    // 2. A get_or_fetch is loading players:c; a batch needing c and d asks
    //    its loader for d only and takes c from the single-key call.
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let single = {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch("players:c", || async move {
                    calls.lock().unwrap().push(vec!["single players:c".into()]);
                    entered_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok::<_, std::io::Error>(value("players:c"))
                })
                .await
        })
    };
    entered_rx.await.unwrap();
    let batch = {
        let (cache, calls) = (cache.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch_many(&["players:c", "players:d"], |missing| async move {
                    calls.lock().unwrap().push(missing.clone());
                    Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                        let v = value(&k);
                        (k, v)
                    }))
                })
                .await
        })
    };
    // The batch has asked for d (and is now waiting for c).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while calls.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never called its loader"
        );
        tokio::task::yield_now().await;
    }
    release_tx.send(()).unwrap();
    let got = batch.await.unwrap().unwrap();
    assert_eq!(got[0].as_deref(), Some(&value("players:c")[..]));
    assert_eq!(got[1].as_deref(), Some(&value("players:d")[..]));
    single.await.unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            vec!["players:a".to_string(), "players:b".to_string()],
            vec!["single players:c".to_string()],
            vec!["players:d".to_string()],
        ],
        "each key loaded once"
    );
}

/// A single-key load that fails while a batch waits for its key is an error
/// for the batch too, never a miss in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_single_key_load_is_an_error_for_the_waiting_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _clock) = common::open(dir.path());
    let asked: Calls = Arc::default();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let single = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch("players:e", || async move {
                    entered_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Err::<Vec<u8>, _>(std::io::Error::other("upstream down"))
                })
                .await
        })
    };
    entered_rx.await.unwrap();
    let batch = {
        let (cache, asked) = (cache.clone(), asked.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch_many(&["players:e", "players:f"], |missing| async move {
                    asked.lock().unwrap().push(missing.clone());
                    Ok::<_, std::io::Error>(missing.into_iter().map(|k| {
                        let v = value(&k);
                        (k, v)
                    }))
                })
                .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while asked.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never called its loader"
        );
        tokio::task::yield_now().await;
    }
    release_tx.send(()).unwrap();
    assert!(single.await.unwrap().is_err());
    let got = batch.await.unwrap();
    assert!(
        got.is_err(),
        "the failure reaches the batch, not a miss: {got:?}"
    );
    assert_eq!(
        asked.lock().unwrap().clone(),
        vec![vec!["players:f".to_string()]]
    );
}
