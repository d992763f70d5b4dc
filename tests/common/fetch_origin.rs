//! A scripted HTTP origin on 127.0.0.1 for the fetcher tests: every request
//! is recorded (path and headers) and answered by a closure that sees the
//! request and how many requests that path has had.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokio::io::AsyncWriteExt;

/// A request the origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// What the script answers.
pub enum Reply {
    Now(Response),
    /// Answer after a delay (keeps a request in flight).
    After(Duration, Response),
    /// Never answer (the fetcher must time out).
    Hang,
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct Shared {
    log: Mutex<Vec<Seen>>,
    script: Box<Script>,
}

/// A running origin. Dropping the runtime stops it.
pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let seen = Seen {
        path: req.uri().path().to_owned(),
        headers: req.headers().clone(),
    };
    let n = {
        let mut log = s.log.lock().unwrap();
        log.push(seen.clone());
        log.iter().filter(|r| r.path == seen.path).count()
    };
    match (s.script)(&seen, n) {
        Reply::Now(r) => r,
        Reply::After(d, r) => {
            tokio::time::sleep(d).await;
            r
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Body::empty())
        }
    }
}

impl Origin {
    /// Starts an origin on `127.0.0.1:0` answering with `script(request, n)`,
    /// `n` counting the requests to that path so far (1 for the first).
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Origin {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Origin { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// The most recent request.
    pub fn last(&self) -> Seen {
        self.requests().last().cloned().expect("no request yet")
    }
}

/// A response with `status`, `headers` and `body`.
pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    Reply::Now(b.body(Body::from(body.to_owned())).unwrap())
}

/// A raw TCP origin that answers every connection with `bytes` and closes
/// (for responses hyper would refuse to produce, e.g. a short body).
pub async fn raw_origin(bytes: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                let _ = sock.write_all(bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}
