//! Secrets never leave the process (DESIGN.md, "Errors a user can act
//! on"): a Redis password and a password inside `redis.url` are planted in
//! the config file and the environment, then every output path is grepped
//! for them: the daemon's `/v1/config`, `/metrics`, `/v1/stats`,
//! `/healthz`, its stderr log at `debug`, every CLI `--json` output and
//! error, and `Debug` of the config and the cache.

#[path = "cli_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use freshcache::{Cache, Config};
use support::{closed_port, run, s, BIN};

const URL_SECRET: &str = "urlsecret-7f3a9c";
const FIELD_SECRET: &str = "fieldsecret-41bd2e";
const ENV_SECRET: &str = "98765432101234";

fn assert_clean(what: &str, text: &str) {
    for secret in [URL_SECRET, FIELD_SECRET, ENV_SECRET] {
        assert!(!text.contains(secret), "{what} leaks `{secret}`:\n{text}");
    }
}

fn write_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let cfg = dir.join("runtime.yml");
    let text = format!(
        "cache:\n  root: {}\nredis:\n  url: \"redis://admin:{URL_SECRET}@127.0.0.1:{port}/0\"\n  \
         password: \"{FIELD_SECRET}\"\n  timeout: 50ms\n",
        dir.join("cache").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_redis_password_appears_in_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let cfg = write_config(dir.path(), port);
    let c = s(&cfg);

    // The daemon: endpoints and its debug log.
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(BIN)
        .args(["--config", &c, "run", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    let get = |p: &str| {
        let url = format!("http://{addr}{p}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let config = get("/v1/config").await;
    assert!(config.contains("***"), "{config}");
    assert!(
        config.contains("127.0.0.1"),
        "the URL is still shown: {config}"
    );
    for (p, body) in [
        ("/v1/config", config),
        ("/metrics", get("/metrics").await),
        ("/v1/stats", get("/v1/stats").await),
        ("/healthz", get("/healthz").await),
    ] {
        assert_clean(p, &body);
    }
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("freshcache_redis_up 0"),
        "nothing listens: {metrics}"
    );

    // The CLI: data commands with --json, maintenance, failures.
    let root = s(&dir.path().join("cache"));
    let env = [
        ("FRESHCACHE_REDIS_PASSWORD", ENV_SECRET),
        ("RUST_LOG", "debug"),
    ];
    let upstream = format!("http://127.0.0.1:{}/x", closed_port());
    let commands: Vec<Vec<&str>> = vec![
        vec!["put", "odds:g1:1", "-", "--json"],
        vec!["get", "odds:g1:1", "--json"],
        vec!["stat", "odds:g1:1", "--json"],
        vec!["ls", "--json"],
        vec!["stats", "--json"],
        vec!["stats", "--prometheus"],
        vec!["stats"],
        vec!["guard", "odds:g1:1", "--json"],
        vec!["guard", "odds:none:1", "--json"],
        vec!["fetch", &upstream, "--key", "api:x", "--json"],
        vec!["feeds", "refresh", "--json"],
        vec!["evict", "--json"],
        vec!["gc", "--json"],
        vec!["verify", "--json"],
        vec!["invalidate", "odds:*", "--json"],
        vec!["rm", "odds:g1:1", "--json"],
        vec!["put", "bad::key", "-"],
    ];
    for args in commands {
        let mut full = vec!["--config", c.as_str(), "--root", root.as_str()];
        full.extend(&args);
        let out = run(&full, Some(b"{}"), &env);
        assert_clean(&format!("{args:?} stdout"), &out.stdout);
        assert_clean(&format!("{args:?} stderr"), &out.stderr);
    }
    // An invalid config that carries the secrets: the error names the
    // field, not the value.
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        format!(
            "redis:\n  url: \"http://admin:{URL_SECRET}@x\"\n  password: [\"{FIELD_SECRET}\"]\n"
        ),
    )
    .unwrap();
    let out = run(&["--config", &s(&bad), "stats"], None, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_clean("a config error", &out.stderr);
    // A numeric password from the environment stays a string, unquoted.
    let out = run(&["--config", &c, "stats", "--json"], None, &env);
    assert_clean("env password", &(out.stdout + &out.stderr));

    let _ = child.kill();
    let _ = child.wait();
    assert_clean(
        "the daemon's debug log",
        &std::fs::read_to_string(&log).unwrap(),
    );

    // The library: Debug of the config and of a cache built from it, and
    // the errors of both.
    let config = Config::load(&cfg).unwrap();
    assert_clean("Debug of Config", &format!("{config:?}"));
    assert_clean("JSON of Config", &serde_json::to_string(&config).unwrap());
    let cache = Cache::with_config(config).unwrap();
    assert_clean("Debug of Cache", &format!("{cache:?}"));
    let mut broken = Config::load(&cfg).unwrap();
    broken.redis.url = Some(format!("redis://:{URL_SECRET}@[::1"));
    let e = Cache::with_config(broken).unwrap_err();
    assert_clean("a tier error", &format!("{e} {e:?}"));
}
