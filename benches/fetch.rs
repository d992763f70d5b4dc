//! Revalidations per second (conditional GET → 304 → entry refreshed)
//! against an in-process origin with keep-alive, beside its floor: a plain
//! reqwest GET loop of the same resource in the same run.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use freshcache::config::Rate;
use freshcache::{Cache, FetchOptions, Fetcher};

const ETAG: &str = "\"bench-v1\"";

async fn resource(headers: HeaderMap) -> axum::response::Response {
    if headers.get("if-none-match").is_some_and(|v| v == ETAG) {
        (StatusCode::NOT_MODIFIED, [("etag", ETAG)]).into_response()
    } else {
        ([("etag", ETAG)], vec![b'x'; 4096]).into_response()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/odds", axum::routing::get(resource));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/odds")
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let fetcher = Fetcher::builder(&cache)
        .rate_limit(Rate::parse("1000000000/s").unwrap())
        .quota(Rate::parse("1000000000/month").unwrap())
        .build()
        .unwrap();
    let opts = FetchOptions {
        revalidate: true,
        ..FetchOptions::default()
    };
    rt.block_on(fetcher.fetch(&url, "odds:bench:1", &opts))
        .unwrap();
    let client = reqwest::Client::new();

    let mut g = c.benchmark_group("revalidate_4KiB");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("plain_reqwest_get_200 (floor)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client.get(&url).send().await.unwrap();
                r.bytes().await.unwrap()
            })
        })
    });
    g.bench_function("fetcher_conditional_get_304", |b| {
        b.iter(|| {
            rt.block_on(fetcher.fetch(&url, "odds:bench:1", &opts))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
