//! Harness: an RSS origin with ETags (in-process axum), the daemon as a
//! process, scrapes, config files, polling with a deadline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// The binary under test. `FRESHCACHE_TEST_BIN` overrides it: checkouts
/// that share one CARGO_TARGET_DIR overwrite each other's
/// `target/debug/freshcache`, the path `CARGO_BIN_EXE_freshcache` names.
pub fn bin() -> PathBuf {
    std::env::var_os("FRESHCACHE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_freshcache")),
        PathBuf::from,
    )
}

/// An RSS origin with ETags; counts 200s and 304s per feed.
#[derive(Clone, Default)]
pub struct Origin {
    hits: Arc<Mutex<HashMap<(String, u16), u64>>>,
}

impl Origin {
    pub async fn start() -> (Origin, SocketAddr) {
        let origin = Origin::default();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::get(serve_feed))
            .with_state(origin.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (origin, addr)
    }

    pub fn count(&self, feed: &str, status: u16) -> u64 {
        let hits = self.hits.lock().unwrap();
        hits.get(&(feed.to_string(), status)).copied().unwrap_or(0)
    }
}

async fn serve_feed(
    State(o): State<Origin>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let feed = name.trim_end_matches(".xml").to_string();
    if feed.starts_with("slow") {
        *o.hits.lock().unwrap().entry((feed, 0)).or_default() += 1; // 0: started, never answered
        tokio::time::sleep(Duration::from_secs(600)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let etag = format!("\"{feed}-v1\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(&etag);
    let status = if fresh { 304 } else { 200 };
    *o.hits
        .lock()
        .unwrap()
        .entry((feed.clone(), status))
        .or_default() += 1;
    if fresh {
        // No validators on the 304: the daemon must keep the stored ones.
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let body = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{feed}</title>\
         <link>http://example.test/</link><description>d</description>\
         <item><title>One</title><guid>{feed}-1</guid><link>http://example.test/1</link>\
         <pubDate>Sat, 21 Nov 2026 10:00:00 GMT</pubDate></item>\
         <item><title>Two</title><guid>{feed}-2</guid><link>http://example.test/2</link>\
         <pubDate>Sat, 21 Nov 2026 11:00:00 GMT</pubDate></item></channel></rss>"
    );
    let ct = "application/rss+xml";
    (
        [(header::ETAG, etag.as_str()), (header::CONTENT_TYPE, ct)],
        body,
    )
        .into_response()
}

/// A running `freshcache run`; killed on drop.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let mut child = Command::new(bin())
            .args([
                "--config",
                config.to_str().unwrap(),
                "run",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("no address in {line:?}; log:\n{}", read(log)))
            .parse()
            .unwrap();
        Daemon {
            child,
            addr,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn get(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.addr);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    pub async fn scrape(&self) -> String {
        self.get("/metrics").await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no exit after SIGTERM:\n{}",
                read(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The value of one sample (`name{labels}`), if present.
pub fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, d: &Daemon, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; log:\n{}",
            read(&d.log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a config: `cache_extra` lines go under `cache:`, `extra` at the top level.
pub fn write_config(path: &Path, root: &Path, cache_extra: &str, extra: &str) {
    let text = format!(
        "fetch:\n  rate_limit: 100/s\ncache:\n  root: {}\n  access_flush: 1h\n{cache_extra}\
         daemon:\n  size_check: 200ms\n  shutdown_grace: 3s\n{extra}",
        root.display()
    );
    // Write then rename, as editors do, so the watcher never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn feed(name: &str, origin: SocketAddr, every: &str, class: &str) -> String {
    format!("  - {{ name: {name}, url: \"http://{origin}/{name}.xml\", every: {every}{class} }}\n")
}

pub fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}
