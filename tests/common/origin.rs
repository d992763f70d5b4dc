//! A counting HTTP origin on 127.0.0.1 (axum).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A counting HTTP origin on 127.0.0.1 (axum), answering after `delay`.
pub struct Origin {
    pub addr: SocketAddr,
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
    _rt: tokio::runtime::Runtime,
}

impl Origin {
    pub fn start(delay: Duration) -> Origin {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        let app = axum::Router::new().fallback(move || {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(Instant::now());
                tokio::time::sleep(delay).await;
                "{\"home\":-110}"
            }
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await });
        Origin {
            addr,
            arrivals,
            _rt: rt,
        }
    }

    pub fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// A plain HTTP/1.1 GET; returns the body.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf[at..].to_vec()
    }
}
