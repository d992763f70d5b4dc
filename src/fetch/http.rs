//! One logical GET: redirects followed by hand (bounded), each request
//! rate-limited, counted against the quota, and retried with exponential
//! backoff and jitter on connect errors, 5xx and 429 (`Retry-After` honoured).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::{freshness, Fetcher};
use crate::base::error::Error;
use crate::base::names;

/// Validators to send, and the URL whose response they came from: a hop
/// to any other URL is sent unconditionally (each hop keeps its own).
#[derive(Debug, Default)]
pub(crate) struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub url: Option<&'a str>,
}

/// The final response of a GET.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered (after redirects).
    pub url: Url,
    /// Every redirect followed was permanent (301/308), or there were none.
    pub permanent: bool,
    pub redirected: bool,
    /// Conditional headers went to the URL that answered.
    pub conditional: bool,
    pub requests: u32,
}

/// A failed GET. `transient` failures (network, 5xx, 429) allow
/// stale-if-error; a 404 or a refused quota do not.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: Error,
    pub transient: bool,
}

impl Failure {
    fn new(url: &Url, reason: impl Into<String>, transient: bool) -> Failure {
        Failure {
            error: Error::Upstream {
                url: url.to_string(),
                reason: reason.into(),
            },
            transient,
        }
    }
}

/// A reqwest error with its causes ("error sending request: connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "response body incomplete or unreadable".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// `base * 2^attempt`, capped, with jitter in [delay/2, delay].
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = full / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
}

fn host_of(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Fetcher {
    /// GETs `start`, following redirects and retrying transient failures.
    pub(crate) async fn exchange(
        &self,
        start: Url,
        validators: &Validators<'_>,
        max_body: Option<u64>,
    ) -> Result<Exchange, Failure> {
        let mut url = start;
        let mut permanent = true;
        let mut redirects = 0u32;
        let mut requests = 0u32;
        loop {
            let conditional = validators.url == Some(url.as_str());
            let mut attempt = 0u32;
            let resp = loop {
                let host = host_of(&url);
                self.cache
                    .admit_upstream(&host, self.settings.quota, self.rate)
                    .await
                    .map_err(|error| Failure {
                        error,
                        transient: false,
                    })?;
                requests += 1;
                let mut req = self.client.get(url.clone());
                if conditional {
                    if let Some((name, value)) =
                        freshness::conditional(validators.etag, validators.last_modified)
                    {
                        req = req.header(name, value);
                    }
                }
                let retry_in = match req.send().await {
                    Err(e) => {
                        self.cache.count(names::upstream("error"), 1);
                        if !e.is_connect() || attempt >= self.settings.retries {
                            return Err(Failure::new(&url, describe(&e), true));
                        }
                        None
                    }
                    Ok(r)
                        if r.status() == StatusCode::TOO_MANY_REQUESTS
                            || r.status().is_server_error() =>
                    {
                        self.cache.count(names::upstream("error"), 1);
                        if attempt >= self.settings.retries {
                            return Err(Failure::new(&url, format!("HTTP {}", r.status()), true));
                        }
                        r.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| freshness::retry_after(v, SystemTime::now()))
                    }
                    Ok(r) => break r,
                };
                let delay = match retry_in {
                    Some(d) if d > self.settings.retry_max => {
                        return Err(Failure::new(
                            &url,
                            format!("server asked to retry after {}s", d.as_secs()),
                            true,
                        ))
                    }
                    Some(d) => d,
                    None => backoff(self.settings.retry_base, self.settings.retry_max, attempt),
                };
                tracing::debug!(%url, attempt, ?delay, "retrying upstream request");
                tokio::time::sleep(delay).await;
                attempt += 1;
            };
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                self.cache.count(names::upstream("redirect"), 1);
                let Some(location) = resp.headers().get("location").and_then(|l| l.to_str().ok())
                else {
                    return Err(Failure::new(
                        &url,
                        format!("HTTP {status} without Location"),
                        false,
                    ));
                };
                redirects += 1;
                if redirects > self.settings.max_redirects {
                    return Err(Failure::new(
                        &url,
                        format!(
                            "too many redirects (more than {})",
                            self.settings.max_redirects
                        ),
                        false,
                    ));
                }
                let next = url.join(location).map_err(|e| {
                    Failure::new(
                        &url,
                        format!("bad redirect Location `{location}`: {e}"),
                        false,
                    )
                })?;
                permanent &= matches!(status.as_u16(), 301 | 308);
                url = next;
                continue;
            }
            if status == StatusCode::NOT_MODIFIED || status.is_success() {
                let headers = resp.headers().clone();
                let max = self.cache.config().cache.max_value_size.0;
                let max = max_body.map_or(max, |m| m.min(max));
                let body = match read_capped(resp, max).await {
                    Ok(b) => b,
                    Err((reason, transient)) => {
                        self.cache.count(names::upstream("error"), 1);
                        return Err(Failure::new(&url, reason, transient));
                    }
                };
                self.cache.count(names::upstream(status.as_str()), 1);
                return Ok(Exchange {
                    status,
                    headers,
                    body,
                    url,
                    permanent,
                    redirected: redirects > 0,
                    conditional,
                    requests,
                });
            }
            self.cache.count(names::upstream("error"), 1);
            return Err(Failure::new(&url, format!("HTTP {status}"), false));
        }
    }
}

/// How the error of a body over the limit starts ([`body_too_large`]).
pub(crate) const TOO_LARGE: &str = "body larger than the limit";

/// Whether `e` is a refusal of a body over its limit: not
/// transient, so retrying it every period would only download it again.
pub fn body_too_large(e: &crate::base::error::Error) -> bool {
    use crate::base::error::Error;
    match e {
        Error::Upstream { reason, .. } => reason.starts_with(TOO_LARGE),
        Error::Shared { source } => body_too_large(source),
        _ => false,
    }
}

/// Reads a body, refusing more than `max` bytes (announced or streamed):
/// an upstream that lies or floods must not fill memory before the put
/// would refuse the value anyway.
/// The error says whether the failure is transient (a broken connection)
/// or not (too large).
async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
) -> Result<bytes::Bytes, (String, bool)> {
    let too_large = || {
        let what =
            format!("{TOO_LARGE} ({max} bytes: cache.max_value_size or the feed's max_size)");
        (what, false)
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| (describe(&e), true))? {
        if buf.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for attempt in 0..4 {
            let full = (base * (1 << attempt)).min(cap);
            let d = backoff(base, cap, attempt);
            assert!(d >= full / 2 && d <= full, "{d:?} for attempt {attempt}");
        }
        assert!(backoff(base, cap, 40) <= cap);
    }
}
