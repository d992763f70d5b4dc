//! Real `redis-server` processes on free loopback ports, started and killed
//! by the tests (never a system service), and a 3-node cluster.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshcache::{Cache, Config, ManualClock};

/// One redis-server child process; killed on drop.
pub struct RedisServer {
    bin: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    cluster: bool,
    /// With TLS: the TLS port (the plain port stays for the harness's PING).
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

/// A free loopback port (and, for cluster nodes, its bus port + 10000).
fn free_port(with_bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = l.local_addr().expect("addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command and returns the raw reply (tests only).
pub fn raw_command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl RedisServer {
    /// Starts a standalone server (no persistence), or `None` (skipped)
    /// when redis-server is not installed.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(false)
    }

    fn start_with(cluster: bool) -> Option<RedisServer> {
        let bin = super::tool("redis-server")?;
        let mut s = RedisServer {
            bin,
            port: free_port(cluster),
            dir: tempfile::tempdir().expect("tempdir"),
            cluster,
            tls_port: None,
            child: None,
        };
        s.spawn();
        Some(s)
    }

    /// Starts a standalone server that also speaks TLS on [`Self::tls_port`],
    /// with a certificate for 127.0.0.1 signed by a CA made here (openssl
    /// CLI). `None` (skipped) without redis-server or openssl.
    pub fn start_tls() -> Option<RedisServer> {
        let bin = super::tool("redis-server")?;
        let openssl = super::tool("openssl")?;
        let dir = tempfile::tempdir().expect("tempdir");
        make_certs(&openssl, dir.path());
        let mut s = RedisServer {
            bin,
            port: free_port(false),
            dir,
            cluster: false,
            tls_port: Some(free_port(false)),
            child: None,
        };
        s.spawn();
        Some(s)
    }

    /// The CA certificate a TLS server's certificate is signed with.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `rediss://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("a TLS server")
        )
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(tls) = self.tls_port {
            let d = self.dir.path();
            cmd.arg("--tls-port")
                .arg(tls.to_string())
                .arg("--tls-cert-file")
                .arg(d.join("server.crt"))
                .arg("--tls-key-file")
                .arg(d.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        }
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf"));
        }
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw_command(self.port, "PING").is_none_or(|r| !r.starts_with("+PONG")) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(openssl: &Path, dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=freshcache test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters on loopback ports, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and joins the cluster, or `None` (skipped) without the tools.
    pub fn start() -> Option<RedisCluster> {
        let cli = super::tool("redis-cli")?;
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(true))
            .collect::<Option<_>>()?;
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes")
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while raw_command(n.port, "CLUSTER INFO")
                .is_none_or(|r| !r.contains("cluster_state:ok"))
            {
                assert!(Instant::now() < deadline, "cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes })
    }

    /// Every node's URL, comma-separated (the config's seed list).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A TCP forwarder to a server that the test can cut (every connection
/// dropped, new ones refused) and restore: a network partition between one
/// instance and Redis while Redis itself stays up.
pub struct Partition {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes are dropped silently (no reset, no close): a black hole.
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Partition {
    pub fn new(target: u16) -> Partition {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, l, f) = (cut.clone(), live.clone(), frozen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                {
                    let mut live = l.lock().unwrap();
                    live.push(client);
                    live.push(server);
                }
                for (from, to) in pairs {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        let f = f.clone();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 16 << 10];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                if f.load(Ordering::SeqCst) {
                                    continue;
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Partition {
            port,
            cut,
            frozen,
            live,
        }
    }

    /// From now on forwards nothing and closes nothing: the connections
    /// stay open, every byte is lost (a silent partition).
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The Redis call deadline of the test instances and CLI runs: long enough
/// that a loaded machine never turns a slow loopback reply into an outage
/// (the default, 250 ms, is for production latencies). A test that needs a
/// dead connection noticed quickly sets its own.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A cache at a fresh root using Redis at `url`.
pub fn instance(url: &str, cluster: bool) -> (Cache, ManualClock, tempfile::TempDir) {
    instance_with(url, cluster, |_| {})
}

pub fn instance_with(
    url: &str,
    cluster: bool,
    tweak: impl FnOnce(&mut freshcache::Config),
) -> (Cache, ManualClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cache, clock) = super::open_with(dir.path(), |c| {
        c.redis.url = Some(url.to_string());
        c.redis.cluster = cluster;
        c.redis.timeout.0 = TIMEOUT;
        tweak(c);
    });
    (cache, clock, dir)
}

/// Polls `f` until it holds or `within` passes; says whether it held.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_subscribed(caches: &[&Cache]) {
    for c in caches {
        assert!(
            eventually(Duration::from_secs(10), || c
                .redis()
                .unwrap()
                .is_subscribed()),
            "invalidation subscriber did not connect"
        );
    }
}

pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A cache at `dir` (an existing root, reopened like a restarted instance).
pub fn reopen(dir: &Path, url: &str, tweak: impl FnOnce(&mut Config)) -> (Cache, ManualClock) {
    super::open_with(dir, |c| {
        c.redis.url = Some(url.to_string());
        c.redis.timeout.0 = TIMEOUT;
        tweak(c);
    })
}

/// Runs the CLI on `root` (with Redis at `url`, when given); returns the
/// exit code and stdout.
pub fn cli(root: &Path, url: Option<&str>, args: &[&str], stdin: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freshcache"));
    cmd.arg("--root").arg(root).args(args);
    cmd.env_remove("FRESHCACHE_REDIS_URL");
    // As for the in-process instances (see TIMEOUT): the CLI's catch-up at
    // open must not leave entries unconfirmed because a reply was slow.
    cmd.env(
        "FRESHCACHE_REDIS_TIMEOUT",
        format!("{}ms", TIMEOUT.as_millis()),
    );
    if let Some(url) = url {
        cmd.env("FRESHCACHE_REDIS_URL", url);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run freshcache");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().expect("exited");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if code > 1 {
        eprintln!(
            "freshcache {args:?}: exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (code, stdout)
}
