//! The RFC 9111 pieces the fetcher needs, kept small and pure: which
//! headers are stored, how a 304 merges into them, how long a response stays
//! fresh, which validator a conditional request sends, and `Retry-After`.
//!
//! Stored headers are a JSON object of lowercase names to values (repeated
//! fields joined with `", "`). Validators are kept verbatim, byte for byte.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::base::clock::Millis;
use crate::base::config::ServerTtl;
use crate::base::policy;

/// Response headers as stored with an entry: lowercase name → value.
pub type Headers = BTreeMap<String, String>;

/// Names the fetcher adds to the stored headers for its own bookkeeping.
pub(crate) const FROM_URL: &str = "x-freshcache-from";
pub(crate) const VALIDATED_URL: &str = "x-freshcache-url";
pub(crate) const PERMANENT: &str = "x-freshcache-permanent";

/// Hop-by-hop fields (RFC 9110 §7.6.1): never stored, never merged.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (lowercase) may be stored from a response carrying `connection`.
fn storable(name: &str, connection: &[String]) -> bool {
    !HOP_BY_HOP.contains(&name)
        && name != "set-cookie"
        && !name.starts_with("x-freshcache-")
        && !connection.iter().any(|c| c == name)
}

/// Field names a `Connection` header lists as hop-by-hop.
fn connection_fields(map: &HeaderMap) -> Vec<String> {
    map.get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Storable headers of a response. Values that are not visible ASCII /
/// UTF-8 are dropped rather than altered (validators must stay verbatim).
pub fn from_response(map: &HeaderMap) -> Headers {
    let connection = connection_fields(map);
    let mut out = Headers::new();
    for name in map.keys() {
        let name = name.as_str();
        if !storable(name, &connection) {
            continue;
        }
        let values: Vec<&str> = map
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            out.insert(name.to_owned(), values.join(", "));
        }
    }
    out
}

/// Merges a 304's headers into the stored ones (RFC 9111 §3.2): every
/// field it carries replaces the stored one, except Content-Length and
/// hop-by-hop fields. Validators absent from the 304 keep their old values.
pub fn merge_304(stored: &mut Headers, not_modified: &HeaderMap) {
    for (name, value) in from_response(not_modified) {
        if name != "content-length" {
            stored.insert(name, value);
        }
    }
}

/// Headers from their stored JSON (empty when absent or unreadable).
pub fn from_json(json: Option<&str>) -> Headers {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// Headers as stored JSON.
pub fn to_json(h: &Headers) -> String {
    serde_json::to_string(h).unwrap_or_else(|_| "{}".into())
}

/// The `Cache-Control` directives the fetcher acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age` in seconds.
    pub max_age: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`.
    pub no_cache: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
}

impl CacheControl {
    /// Parses a `Cache-Control` value. Unknown or malformed directives are
    /// ignored; a malformed `max-age` counts as 0 (RFC 9111 §4.2.1: treat
    /// invalid freshness information as stale).
    pub fn parse(value: &str) -> CacheControl {
        let mut cc = CacheControl::default();
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n, Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => {
                    let secs = arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                    cc.max_age = Some(cc.max_age.map_or(secs, |m| m.min(secs)));
                }
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                _ => {}
            }
        }
        cc
    }

    /// The directives of stored headers.
    pub fn of(h: &Headers) -> CacheControl {
        h.get("cache-control")
            .map(|v| CacheControl::parse(v))
            .unwrap_or_default()
    }
}

/// How long a response may be served without revalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `no-store`: do not keep it.
    NoStore,
    /// Fresh for this long from now (zero: revalidate on every use).
    Fresh(Duration),
}

fn http_date_ms(v: &str) -> Option<Millis> {
    let t = httpdate::parse_http_date(v.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as Millis)
}

/// The server's freshness lifetime, if it states one: `max-age`, else
/// `Expires - Date` (an unparsable Expires means already expired), minus `Age`,
/// clamped to `policy::MAX_TTL` (100 years): a `max-age=99999999999` or an
/// `Expires` in the year 9999 means "as long as the cache allows", never an
/// instant past what the index and RFC 3339 can hold.
pub fn server_lifetime(h: &Headers, now: Millis) -> Option<Duration> {
    let cc = CacheControl::of(h);
    let lifetime_ms = if let Some(secs) = cc.max_age {
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    } else {
        let expires = h.get("expires")?;
        let base = h.get("date").and_then(|d| http_date_ms(d)).unwrap_or(now);
        http_date_ms(expires).map_or(0, |e| e - base)
    };
    let age_ms = h
        .get("age")
        .and_then(|a| a.trim().parse::<i64>().ok())
        .map_or(0, |a| a.saturating_mul(1000));
    let ms = lifetime_ms.saturating_sub(age_ms).max(0) as u64;
    Some(Duration::from_millis(ms).min(policy::MAX_TTL))
}

/// The lifetime to store: `no-store` and `no-cache` first, then the server's
/// lifetime combined with the class TTL by `policy`, else the class TTL.
pub fn lifetime(h: &Headers, class_ttl: Duration, policy: ServerTtl, now: Millis) -> Lifetime {
    let cc = CacheControl::of(h);
    if cc.no_store {
        return Lifetime::NoStore;
    }
    if cc.no_cache || h.get("pragma").is_some_and(|p| p.contains("no-cache")) {
        return Lifetime::Fresh(Duration::ZERO);
    }
    Lifetime::Fresh(match (server_lifetime(h, now), policy) {
        (None, _) => class_ttl,
        (Some(s), ServerTtl::Shorter) => s.min(class_ttl),
        (Some(s), ServerTtl::Server) => s,
    })
}

/// The conditional header for stored validators: `If-None-Match` with the
/// ETag when there is one (it takes precedence, RFC 9110 §13.2.2), else
/// `If-Modified-Since` with the stored Last-Modified. Both verbatim.
pub fn conditional<'a>(
    etag: Option<&'a str>,
    last_modified: Option<&'a str>,
) -> Option<(&'static str, &'a str)> {
    match (etag, last_modified) {
        (Some(e), _) => Some(("if-none-match", e)),
        (None, Some(lm)) => Some(("if-modified-since", lm)),
        (None, None) => None,
    }
}

/// A `Retry-After` value (delay-seconds or an HTTP-date) as a delay from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        from_response(&map(pairs))
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn parses_cache_control_directives() {
        let cc = CacheControl::parse("public, Max-Age=60, must-revalidate");
        assert_eq!(cc.max_age, Some(60));
        assert!(cc.must_revalidate && !cc.no_store && !cc.no_cache);
        assert!(CacheControl::parse("no-store").no_store);
        assert!(CacheControl::parse("no-cache=\"set-cookie\"").no_cache);
        assert_eq!(CacheControl::parse("max-age=abc").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age=\"30\"").max_age, Some(30));
        assert_eq!(
            CacheControl::parse("max-age=90, max-age=30").max_age,
            Some(30)
        );
    }

    #[test]
    fn shorter_of_class_ttl_and_max_age_wins_by_default() {
        let h = headers(&[("cache-control", "max-age=7200")]);
        assert_eq!(
            lifetime(&h, HOUR, ServerTtl::Shorter, 0),
            Lifetime::Fresh(HOUR)
        );
        assert_eq!(
            lifetime(&h, HOUR, ServerTtl::Server, 0),
            Lifetime::Fresh(2 * HOUR)
        );
        let h = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            lifetime(&h, HOUR, ServerTtl::Shorter, 0),
            Lifetime::Fresh(Duration::from_secs(60))
        );
    }

    #[test]
    fn no_store_and_no_cache_override_everything() {
        let h = headers(&[("cache-control", "max-age=60, no-store")]);
        assert_eq!(lifetime(&h, HOUR, ServerTtl::Server, 0), Lifetime::NoStore);
        let h = headers(&[("cache-control", "no-cache, max-age=60")]);
        assert_eq!(
            lifetime(&h, HOUR, ServerTtl::Server, 0),
            Lifetime::Fresh(Duration::ZERO)
        );
    }

    #[test]
    fn expires_counts_from_date_and_age_is_subtracted() {
        let h = headers(&[
            ("date", "Sun, 22 Nov 2026 10:00:00 GMT"),
            ("expires", "Sun, 22 Nov 2026 10:05:00 GMT"),
        ]);
        assert_eq!(server_lifetime(&h, 0), Some(Duration::from_secs(300)));
        let h = headers(&[("cache-control", "max-age=100"), ("age", "40")]);
        assert_eq!(server_lifetime(&h, 0), Some(Duration::from_secs(60)));
        let h = headers(&[("expires", "0")]);
        assert_eq!(server_lifetime(&h, 0), Some(Duration::ZERO));
        assert_eq!(server_lifetime(&Headers::new(), 0), None);
    }

    #[test]
    fn absurd_max_age_and_expires_are_clamped_to_100_years() {
        for h in [
            headers(&[("cache-control", "max-age=18446744073709551615")]),
            headers(&[("cache-control", "max-age=99999999999")]),
            headers(&[
                ("date", "Sun, 22 Nov 2026 10:00:00 GMT"),
                ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ]),
        ] {
            assert_eq!(server_lifetime(&h, 0), Some(policy::MAX_TTL), "{h:?}");
            assert_eq!(
                lifetime(&h, HOUR, ServerTtl::Server, 0),
                Lifetime::Fresh(policy::MAX_TTL)
            );
        }
        // An Expires before the epoch or garbage: already expired.
        let h = headers(&[("expires", "Thu, 01 Jan 1900 00:00:00 GMT")]);
        assert_eq!(server_lifetime(&h, 0), Some(Duration::ZERO));
    }

    #[test]
    fn max_age_beats_expires() {
        let h = headers(&[
            ("date", "Sun, 22 Nov 2026 10:00:00 GMT"),
            ("expires", "Sun, 22 Nov 2026 10:05:00 GMT"),
            ("cache-control", "max-age=10"),
        ]);
        assert_eq!(server_lifetime(&h, 0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn if_none_match_wins_and_validators_are_verbatim() {
        assert_eq!(
            conditional(Some("W/\"a b\""), Some("Sun, 22 Nov 2026 10:00:00 GMT")),
            Some(("if-none-match", "W/\"a b\""))
        );
        assert_eq!(
            conditional(None, Some("Sun, 22 Nov 2026 10:00:00 GMT")),
            Some(("if-modified-since", "Sun, 22 Nov 2026 10:00:00 GMT"))
        );
        assert_eq!(conditional(None, None), None);
    }

    #[test]
    fn merge_skips_content_length_and_hop_by_hop_and_keeps_old_validators() {
        let mut stored = headers(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("content-length", "1234"),
            ("content-type", "application/rss+xml"),
        ]);
        merge_304(
            &mut stored,
            &map(&[
                ("cache-control", "max-age=600"),
                ("content-length", "0"),
                ("connection", "keep-alive, x-trace"),
                ("keep-alive", "timeout=5"),
                ("x-trace", "abc"),
                ("x-served-by", "edge-1"),
            ]),
        );
        assert_eq!(stored["etag"], "\"v1\"");
        assert_eq!(stored["cache-control"], "max-age=600");
        assert_eq!(stored["content-length"], "1234");
        assert_eq!(stored["x-served-by"], "edge-1");
        assert!(!stored.contains_key("keep-alive") && !stored.contains_key("x-trace"));
        assert!(!stored.contains_key("connection"));
    }

    #[test]
    fn response_cannot_forge_bookkeeping_fields_or_cookies() {
        let h = headers(&[(FROM_URL, "http://evil"), ("set-cookie", "a=b")]);
        assert!(h.is_empty());
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(20)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn json_round_trip_and_garbage_is_empty() {
        let h = headers(&[("etag", "W/\"x\"")]);
        assert_eq!(from_json(Some(&to_json(&h))), h);
        assert!(from_json(Some("not json")).is_empty());
        assert!(from_json(None).is_empty());
    }
}
