//! The endpoints under hostile clients (issue 15, item 7): idle and
//! half-open connections cannot starve `/healthz` or hold descriptors past
//! the cap; an empty config file is refused at startup.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{bin, read, write_config, Daemon};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises this process's soft RLIMIT_NOFILE towards `want` (as far as the
/// hard limit allows; 1,024 is a common soft default) and returns it.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= want {
        return soft;
    }
    let target = lim.maximum.map_or(want, |hard| hard.min(want));
    let raised = Rlimit {
        current: Some(target),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => target,
        Err(_) => soft,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_do_not_starve_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    // The idle connections are held open by this process, which runs other
    // tests meanwhile: leave them room under the descriptor limit (fewer
    // idle connections only where the hard limit is too low for 1,100;
    // still well above the cap).
    let limit = raise_nofile(4_096);
    let n = 1_100.min(limit.saturating_sub(400)) as usize;
    assert!(
        n >= 400,
        "RLIMIT_NOFILE {limit}: room for only {n} idle connections (the cap is 256)"
    );
    // The header timeout is far longer than the client waits below: /healthz
    // must be answered because the cap evicts idle connections, never
    // because the idle ones timed out (nor may the descriptors settle so).
    write_config(
        &cfg,
        &root,
        "",
        "  max_connections: 256\n  header_timeout: 10m\n",
    );
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    let baseline = open_fds(d.pid());
    let addr = d.addr;
    // n (1,100) connections that never send a byte, and some that stop half way
    // through a request head: all stay open on this side.
    let idle = tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| {
                let mut s = TcpStream::connect(addr).unwrap();
                if i % 10 == 0 {
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
                }
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // 60 s only guards a hang (a debug daemon on a loaded machine may take
    // a while to accept the flood first); the 10 min header timeout cannot
    // have freed a slot by then.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz under {n} idle connections: {e}\n{}", read(&d.log)));
    assert_eq!(r.status(), 200);
    eprintln!(
        "/healthz under {n} idle connections answered in {:?}",
        start.elapsed()
    );
    // The daemon holds at most the cap (plus its own files), not all n.
    // (Evicted connections close as their tasks run: give them time.)
    let settle = Instant::now();
    let mut held = open_fds(d.pid());
    while held > baseline + 256 + 32 && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        held = open_fds(d.pid());
    }
    assert!(
        held <= baseline + 256 + 32,
        "{held} descriptors open (baseline {baseline}, cap 256)"
    );
    assert!(
        held >= baseline + 100,
        "the idle connections were accepted: {held}"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    write_config(&cfg, &root, "", "  header_timeout: 1s\n");
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    let addr = d.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut silent = TcpStream::connect(addr).unwrap();
        let mut partial = TcpStream::connect(addr).unwrap();
        partial.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
        [&mut silent, &mut partial].map(|s| {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // EOF or a reset: the server closed it; a timeout would be Err(WouldBlock).
            match s.read_to_end(&mut Vec::new()) {
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(closed, [true, true], "log:\n{}", read(&d.log));
    // A complete request is still served.
    assert_eq!(d.get("/healthz").await, "ok\n");
}

#[test]
fn an_empty_config_file_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("runtime.yml");
    std::fs::write(&cfg, "").unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runtime.yml") && err.contains("empty"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_body_over_the_limit_is_refused_once_and_backed_off() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, oaddr) = crate::harness::Origin::start().await;
    let (cfg, root) = (dir.path().join("runtime.yml"), dir.path().join("cache"));
    // The harness's feed document is ~450 bytes: over huge's 200-byte limit.
    let feeds = format!(
        "feeds:\n{}{}",
        crate::harness::feed("huge", oaddr, "200ms", ", max_size: 200"),
        crate::harness::feed("wire", oaddr, "200ms", "")
    );
    write_config(&cfg, &root, "", &feeds);
    let d = Daemon::start(&cfg, &dir.path().join("daemon.log"));
    let backoff = "freshcache_feed_refreshes_total{feed=\"huge\",outcome=\"backoff\"}";
    crate::harness::eventually("five periods backed off", &d, || async {
        crate::harness::value(&d.scrape().await, backoff) >= Some(5.0)
            && origin.count("wire", 304) >= 5
    })
    .await;
    // Five periods later, the big body was downloaded once; the other feed
    // (no limit of its own) refreshed all along.
    assert_eq!(origin.count("huge", 200), 1, "log:\n{}", read(&d.log));
    assert_eq!(origin.count("huge", 304), 0);
    let m = d.scrape().await;
    assert_eq!(
        crate::harness::value(
            &m,
            "freshcache_feed_refreshes_total{feed=\"huge\",outcome=\"error\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(read(&d.log).contains("max_size"), "{}", read(&d.log));
}
