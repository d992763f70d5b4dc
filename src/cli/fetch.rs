//! `freshcache fetch`, and the demo's revalidation section (against an
//! origin it starts on 127.0.0.1).

use std::time::Duration;

use clap::Args;
use freshcache::{Cache, FetchOptions, Fetcher, ManualClock, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::output::{outln, print_json};
use super::{parse_dur, runtime, Status};

/// Arguments of `freshcache fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// URL to GET (http or https).
    pub url: String,
    /// Key to store the body under.
    #[arg(long)]
    pub key: String,
    /// Class to store under (default: by key prefix).
    #[arg(long)]
    pub class: Option<String>,
    /// TTL such as 90s, 5m (the server's Cache-Control may shorten it; at most 100 years).
    #[arg(long, value_parser = parse_dur)]
    pub ttl: Option<Duration>,
    /// Revalidate even if the entry is fresh.
    #[arg(long)]
    pub revalidate: bool,
    /// On upstream failure, return the stored copy marked stale.
    #[arg(long)]
    pub stale_if_error: bool,
    /// Print the outcome (outcome, status, body_bytes, requests, error) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Fresh => "fresh (from cache, no request)",
        Outcome::Revalidated => "revalidated (304, no body)",
        Outcome::Fetched => "fetched (new body)",
        Outcome::StaleIfError => "STALE (upstream failed; stale-if-error)",
        _ => "other",
    }
}

/// `freshcache fetch URL --key K`: exit 0, or 5 when the upstream failed
/// and no usable copy exists.
pub fn fetch(cache: &Cache, args: FetchArgs) -> anyhow::Result<Status> {
    let opts = FetchOptions {
        class: args.class,
        ttl: args.ttl,
        stale_if_error: args.stale_if_error,
        revalidate: args.revalidate,
        ..FetchOptions::default()
    };
    let fetcher = Fetcher::new(cache)?;
    let out = runtime()?.block_on(fetcher.fetch(&args.url, &args.key, &opts))?;
    if args.json {
        print_json(&out)?;
    } else {
        let status = out.status.map_or("-".to_string(), |s| s.to_string());
        outln!("{}  {}", args.key, outcome_name(out.outcome))?;
        outln!("  HTTP status     {status}")?;
        outln!("  body bytes      {}", out.body_bytes)?;
        outln!("  requests        {}", out.requests)?;
        if let Some(e) = &out.error {
            outln!("  upstream error  {e}")?;
        }
    }
    cache.flush()?;
    Ok(Status::Ok)
}

/// A one-resource origin for the demo: `ETag: "v1"`, `max-age=60`, and a
/// 304 when the request's If-None-Match matches. One request per connection.
async fn demo_origin() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let body = serde_json::json!({"game": "g101", "home": -110, "away": 100}).to_string();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let request = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let head = "etag: \"v1\"\r\ncache-control: max-age=60\r\nconnection: close\r\n";
            let response = if request.contains("if-none-match: \"v1\"") {
                format!("HTTP/1.1 304 Not Modified\r\n{head}\r\n")
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\n{head}content-length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    Ok(addr)
}

/// The demo's section: fetch, hit, expire, revalidate with a 304.
pub fn demo(cache: &Cache, clock: &ManualClock) -> anyhow::Result<()> {
    outln!("\n-- fetch: conditional GET against a local origin (127.0.0.1, no internet)")?;
    let rt = runtime()?;
    let addr = rt.block_on(demo_origin())?;
    let url = format!("http://{addr}/odds/g101");
    let key = "odds:g101:live";
    let fetcher = Fetcher::new(cache)?;
    let opts = FetchOptions::default();
    let show = |what: &str| -> anyhow::Result<()> {
        let o = rt.block_on(fetcher.fetch(&url, key, &opts))?;
        let status = o
            .status
            .map_or("no request".into(), |s| format!("HTTP {s}"));
        outln!(
            "  {what:<26} {:<32} {status:<11} {:>3} body bytes",
            outcome_name(o.outcome),
            o.body_bytes
        )?;
        Ok(())
    };
    show("first fetch")?;
    show("again, within max-age")?;
    clock.advance(Duration::from_secs(61));
    show("+61 s: stale, revalidate")?;
    let s = cache.stats()?;
    outln!(
        "  upstream requests {:?}, bytes saved by 304s: {}",
        s.upstream_requests,
        s.bytes_saved_by_304
    )?;
    Ok(())
}
