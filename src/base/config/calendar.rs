//! Calendar arithmetic for config values: quota periods that reset on the
//! provider's calendar (start of the hour, day or month in a fixed UTC
//! offset), and the instants TTL windows are written in (UTC dates or
//! RFC 3339).

use chrono::{DateTime, Datelike, Duration as CDur, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Deserializer, Serialize};

use crate::base::clock::Millis;

/// A calendar period a quota resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Resets at the start of each hour.
    Hour,
    /// Resets at midnight.
    Day,
    /// Resets at midnight on the 1st.
    Month,
}

impl Period {
    /// `hour`, `day`, `month`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// A fixed offset from UTC (`UTC`, `Z`, `+05:30`, `-05:00`), in minutes.
/// IANA zone names are refused: a quota window is billed by the provider
/// in one fixed offset, and DST rules would need a zone database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TzOffset(pub i32);

impl TzOffset {
    /// Parses `UTC`, `Z`, `+HH:MM`, `-HH:MM`, `+HH`, `UTC+02:00`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> std::result::Result<TzOffset, String> {
        let t = s.trim();
        let rest = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if rest.is_empty() || rest == "Z" {
            return Ok(TzOffset(0));
        }
        let bad = || {
            format!(
                "invalid time zone `{s}`: use UTC or a fixed offset such as -05:00 \
                 (IANA names like America/New_York are not supported)"
            )
        };
        let (sign, hm) = match rest.as_bytes().first() {
            Some(b'+') => (1, &rest[1..]),
            Some(b'-') => (-1, &rest[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = hm.split_once(':').unwrap_or((hm, "0"));
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(TzOffset(sign * (h * 60 + m)))
    }

    fn ms(self) -> i64 {
        i64::from(self.0) * 60_000
    }
}

impl<'de> Deserialize<'de> for TzOffset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TzOffset::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TzOffset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0 == 0 {
            return s.serialize_str("UTC");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let a = self.0.unsigned_abs();
        s.serialize_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60))
    }
}

fn naive(ms: Millis) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc())
}

fn to_ms(n: NaiveDateTime) -> Millis {
    n.and_utc().timestamp_millis()
}

/// The calendar period `[start, end)` that contains `now`, in `tz`.
/// Instants chrono cannot represent fall back to the epoch-aligned
/// period of the same nominal length (never a panic).
pub fn period_bounds(period: Period, tz: TzOffset, now: Millis) -> (Millis, Millis) {
    let fallback = || {
        let len: i64 = match period {
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
            Period::Month => 30 * 86_400_000,
        };
        let s = now.div_euclid(len) * len;
        (s, s.saturating_add(len))
    };
    let Some(local) = naive(now.saturating_add(tz.ms())) else {
        return fallback();
    };
    let bounds = match period {
        Period::Hour => local
            .date()
            .and_hms_opt(local.hour(), 0, 0)
            .map(|s| (s, s + CDur::hours(1))),
        Period::Day => local
            .date()
            .and_hms_opt(0, 0, 0)
            .map(|s| (s, s + CDur::days(1))),
        Period::Month => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1);
            let next = if local.month() == 12 {
                NaiveDate::from_ymd_opt(local.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(local.year(), local.month() + 1, 1)
            };
            first
                .zip(next)
                .and_then(|(a, b)| Some((a.and_hms_opt(0, 0, 0)?, b.and_hms_opt(0, 0, 0)?)))
        }
    };
    match bounds {
        Some((s, e)) => (to_ms(s) - tz.ms(), to_ms(e) - tz.ms()),
        None => fallback(),
    }
}

/// One edge of a TTL window: a UTC date (`2026-03-11`) or an RFC 3339
/// instant (`2026-03-11T09:00:00Z`, `2026-03-11T09:00:00-05:00`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instant {
    /// The text as written (kept for messages and serialisation).
    pub text: String,
    /// Midnight UTC of the date, or the instant.
    pub ms: Millis,
    /// Written as a date: as the end of a window it means the end of that day.
    pub is_date: bool,
}

impl Instant {
    /// Parses a date or an RFC 3339 instant.
    ///
    /// # Errors
    /// A message saying which forms are accepted.
    pub fn parse(s: &str) -> std::result::Result<Instant, String> {
        let t = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            if let Some(n) = d.and_hms_opt(0, 0, 0) {
                return Ok(Instant {
                    text: t.into(),
                    ms: to_ms(n),
                    is_date: true,
                });
            }
        }
        DateTime::parse_from_rfc3339(t)
            .map(|d| Instant {
                text: t.into(),
                ms: d.timestamp_millis(),
                is_date: false,
            })
            .map_err(|e| {
                format!(
                    "invalid instant `{s}` ({e}): use a UTC date (2026-03-11) or an \
                     RFC 3339 instant (2026-03-11T09:00:00Z)"
                )
            })
    }

    /// The instant as the (exclusive) end of a window: a date means the
    /// end of that day, so `to: 2026-03-20` includes all of the 20th.
    pub fn as_end(&self) -> Millis {
        if self.is_date {
            self.ms.saturating_add(86_400_000)
        } else {
            self.ms
        }
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(s) => s,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a date or RFC 3339 instant, got {other:?}"
                )))
            }
        };
        Instant::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        Instant::parse(s).unwrap().ms
    }

    #[test]
    fn months_days_and_hours_follow_the_calendar() {
        let utc = TzOffset(0);
        let now = ms("2026-02-14T10:30:00Z");
        assert_eq!(
            period_bounds(Period::Month, utc, now),
            (ms("2026-02-01T00:00:00Z"), ms("2026-03-01T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Month, utc, ms("2026-12-31T23:59:59.999Z")),
            (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Day, utc, now),
            (ms("2026-02-14T00:00:00Z"), ms("2026-02-15T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Hour, utc, now),
            (ms("2026-02-14T10:00:00Z"), ms("2026-02-14T11:00:00Z"))
        );
    }

    #[test]
    fn offsets_move_the_reset_instant() {
        let ny = TzOffset::parse("-05:00").unwrap();
        assert_eq!(ny, TzOffset(-300));
        // 03:00 UTC on March 1st is still February in UTC-5.
        let (s, e) = period_bounds(Period::Month, ny, ms("2026-03-01T03:00:00Z"));
        assert_eq!(s, ms("2026-02-01T05:00:00Z"));
        assert_eq!(e, ms("2026-03-01T05:00:00Z"));
        assert!(TzOffset::parse("America/New_York")
            .unwrap_err()
            .contains("fixed offset"));
        assert_eq!(TzOffset::parse("UTC").unwrap(), TzOffset(0));
        assert_eq!(TzOffset::parse("+05:30").unwrap(), TzOffset(330));
    }

    #[test]
    fn instants_and_dates() {
        let d = Instant::parse("2026-03-20").unwrap();
        assert!(d.is_date);
        assert_eq!(d.as_end(), ms("2026-03-21T00:00:00Z"));
        let i = Instant::parse("2026-03-20T09:00:00-05:00").unwrap();
        assert_eq!(i.as_end(), ms("2026-03-20T14:00:00Z"));
        assert!(Instant::parse("March 20").is_err());
        assert!(Instant::parse("2026-02-30").is_err());
    }
}
