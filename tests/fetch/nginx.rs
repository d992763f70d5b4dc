//! Against a real nginx: its native ETag / Last-Modified must give a 304
//! with no body, and a 200 with the new bytes once the file changes.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use freshcache::fetch::feeds;
use freshcache::Outcome;

use crate::{cache, fetcher, revalidate};

const NGINX: &str = "/usr/sbin/nginx";

struct Nginx {
    child: Child,
    port: u16,
    docs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGQUIT lets the master stop its workers (SIGKILL would orphan them).
    fn drop(&mut self) {
        // Only a running (unreaped) child: a reaped one's pid may be reused.
        if let Ok(None) = self.child.try_wait() {
            let pid = rustix::process::Pid::from_child(&self.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let _ = self.child.wait();
    }
}

fn copy_feeds(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/feeds");
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Starts nginx in the foreground on a free loopback port, or says why not.
fn start_nginx() -> Option<Nginx> {
    if !Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{NGINX} is missing; CI must install nginx (apt-get install -y nginx)"
        );
        println!("skipped: {NGINX} not installed (apt-get install -y nginx)");
        return None;
    }
    // The port is free when picked but not reserved: if another process
    // takes it before nginx binds, nginx exits and a new port is tried.
    for _ in 0..5 {
        if let Some(nginx) = try_start_nginx() {
            return Some(nginx);
        }
    }
    panic!("nginx did not start on any of 5 free ports");
}

/// nginx listening, or `None` if it exited because its port was taken.
fn try_start_nginx() -> Option<Nginx> {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("feeds");
    copy_feeds(&docs);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display();
    let user = if rustix::process::geteuid().is_root() {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{ listen 127.0.0.1:{port}; root {docs}; }}\n}}\n",
        docs = docs.display()
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let error_log = dir.path().join("error.log");
    let pid_file = dir.path().join("nginx.pid");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut nginx = Nginx {
        child,
        port,
        docs,
        _dir: dir,
    };
    // 60 s only guards a hang: nginx on a loaded machine may be slow to start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&error_log).unwrap_or_default();
            if log.contains("Address already in use") {
                return None;
            }
            panic!("nginx exited ({status}) before listening on {port}:\n{log}");
        }
        // nginx writes its pid file only once it has bound its port (so
        // the listener is not another process that took the port).
        if pid_file.exists() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(nginx);
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not start listening on port {port} within 60 s:\n{}",
            std::fs::read_to_string(&error_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn nginx_native_validators_give_304_then_200_after_a_change() {
    let Some(nginx) = start_nginx() else { return };
    let url = format!("http://127.0.0.1:{}/wire.xml", nginx.port);
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let first = f.fetch(&url, "feeds:wire", &revalidate()).await.unwrap();
    let size = std::fs::metadata(nginx.docs.join("wire.xml"))
        .unwrap()
        .len();
    assert_eq!((first.status, first.body_bytes), (Some(200), size));
    let meta = cache.stat("feeds:wire").unwrap().unwrap();
    assert!(meta.etag.is_some() && meta.last_modified.is_some());

    let second = f.fetch(&url, "feeds:wire", &revalidate()).await.unwrap();
    assert_eq!(second.outcome, Outcome::Revalidated);
    assert_eq!((second.status, second.body_bytes), (Some(304), 0));

    let path = nginx.docs.join("wire.xml");
    let new = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Sideline Wire", "Sideline Wire Extra");
    std::fs::write(&path, &new).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(file);
    let third = f.fetch(&url, "feeds:wire", &revalidate()).await.unwrap();
    assert_eq!(
        (third.status, third.body_bytes),
        (Some(200), new.len() as u64)
    );
    assert_eq!(cache.get("feeds:wire").unwrap().unwrap(), new.as_bytes());
}

#[tokio::test]
async fn nginx_feed_refresh_parses_on_200_and_not_on_304() {
    let Some(nginx) = start_nginx() else { return };
    let (_d, cache, _clock) = cache();
    let f = fetcher(&cache);
    let url = format!("http://127.0.0.1:{}/boxscore.atom", nginx.port);
    let feed = super::feeds::feed("boxscore", url);
    let first = feeds::refresh(&f, &feed).await.unwrap();
    assert_eq!((first.outcome, first.articles), (Some(Outcome::Fetched), 2));
    let second = feeds::refresh(&f, &feed).await.unwrap();
    assert_eq!(
        (second.outcome, second.status, second.articles),
        (Some(Outcome::Revalidated), Some(304), 0)
    );
}
