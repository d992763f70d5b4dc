//! Calendar arithmetic for config values: quota periods that reset on the
//! provider's calendar (start of the hour, day or month in a fixed UTC
//! offset or an IANA zone), and the instants TTL windows are written in (UTC dates or
//! RFC 3339).

use chrono::{DateTime, Datelike, Duration as CDur, NaiveDate, NaiveDateTime, TimeZone, Timelike};
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

/// The time zone of a quota's calendar: a fixed offset from UTC (`UTC`,
/// `Z`, `+05:30`, `-05:00`, in minutes) or an IANA zone
/// (`America/New_York`), whose periods follow its daylight-saving rules —
/// a day in New York is 23 or 25 hours twice a year, the way a provider
/// billing in that zone counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TzOffset {
    /// A fixed offset, in minutes east of UTC.
    Fixed(i32),
    /// A zone of the IANA database.
    Named(chrono_tz::Tz),
}

impl Default for TzOffset {
    fn default() -> Self {
        TzOffset::Fixed(0)
    }
}

impl TzOffset {
    /// Parses `UTC`, `Z`, `+HH:MM`, `-HH:MM`, `+HH`, `UTC+02:00`, or an
    /// IANA zone name (`Europe/London`).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> std::result::Result<TzOffset, String> {
        let t = s.trim();
        if t.contains('/') {
            return t
                .parse::<chrono_tz::Tz>()
                .map(TzOffset::Named)
                .map_err(|_| {
                    format!(
                        "unknown time zone `{s}`: use UTC, a fixed offset such as -05:00, \
                     or an IANA zone such as America/New_York"
                    )
                });
        }
        let rest = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if rest.is_empty() || rest == "Z" {
            return Ok(TzOffset::Fixed(0));
        }
        let bad = || {
            format!(
                "invalid time zone `{s}`: use UTC, a fixed offset such as -05:00, \
                 or an IANA zone such as America/New_York"
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
        Ok(TzOffset::Fixed(sign * (h * 60 + m)))
    }

    /// Local wall-clock time of the UTC instant `utc`.
    fn local(self, utc: NaiveDateTime) -> NaiveDateTime {
        match self {
            TzOffset::Fixed(min) => utc + CDur::minutes(i64::from(min)),
            TzOffset::Named(tz) => tz.from_utc_datetime(&utc).naive_local(),
        }
    }

    /// The UTC instants of the local wall-clock time `local`: one, two (a
    /// repeated hour), or, in a skipped hour, the first instant after it.
    fn utc_ms(self, local: NaiveDateTime) -> Vec<Millis> {
        match self {
            TzOffset::Fixed(min) => vec![to_ms(local) - i64::from(min) * 60_000],
            TzOffset::Named(tz) => {
                // A period edge that falls in a DST gap (a zone that skips
                // midnight) starts when the clocks do: try up to 3 h later.
                (0..=3)
                    .map(|h| tz.from_local_datetime(&(local + CDur::hours(h))))
                    .find_map(|r| match r {
                        chrono::LocalResult::Single(d) => Some(vec![d.timestamp_millis()]),
                        chrono::LocalResult::Ambiguous(a, b) => {
                            Some(vec![a.timestamp_millis(), b.timestamp_millis()])
                        }
                        chrono::LocalResult::None => None,
                    })
                    .unwrap_or_default()
            }
        }
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
        match *self {
            TzOffset::Fixed(0) => s.serialize_str("UTC"),
            TzOffset::Fixed(m) => {
                let sign = if m < 0 { '-' } else { '+' };
                let a = m.unsigned_abs();
                s.serialize_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60))
            }
            TzOffset::Named(tz) => s.serialize_str(tz.name()),
        }
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
    let Some(local) = naive(now).map(|utc| tz.local(utc)) else {
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
    // A wall-clock edge that occurs twice (a repeated hour): a day or a
    // month starts at its first occurrence, an hour at its latest one not
    // after `now` (an hour ends an hour after it starts, so the repeated
    // 01:00 is two hours); the end is the first occurrence after `now`.
    let edges = bounds.and_then(|(s, e)| {
        let starts = tz.utc_ms(s).into_iter().filter(|&t| t <= now);
        let s = match period {
            Period::Hour => starts.max()?,
            _ => starts.min()?,
        };
        let e = match period {
            Period::Hour => s.saturating_add(3_600_000),
            _ => tz.utc_ms(e).into_iter().filter(|&t| t > now).min()?,
        };
        Some((s, e))
    });
    match edges {
        Some((s, e)) if s <= now && now < e => (s, e),
        _ => fallback(),
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
        let utc = TzOffset::Fixed(0);
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
        assert_eq!(ny, TzOffset::Fixed(-300));
        // 03:00 UTC on March 1st is still February in UTC-5.
        let (s, e) = period_bounds(Period::Month, ny, ms("2026-03-01T03:00:00Z"));
        assert_eq!(s, ms("2026-02-01T05:00:00Z"));
        assert_eq!(e, ms("2026-03-01T05:00:00Z"));
        assert!(TzOffset::parse("Mars/Olympus")
            .unwrap_err()
            .contains("IANA zone"));
        assert_eq!(TzOffset::parse("UTC").unwrap(), TzOffset::Fixed(0));
        assert_eq!(TzOffset::parse("+05:30").unwrap(), TzOffset::Fixed(330));
    }

    #[test]
    fn iana_zones_follow_daylight_saving() {
        let ny = TzOffset::parse("America/New_York").unwrap();
        assert_eq!(ny, TzOffset::Named(chrono_tz::America::New_York));
        // Winter: midnight in New York is 05:00 UTC.
        let (s, e) = period_bounds(Period::Month, ny, ms("2026-03-01T03:00:00Z"));
        assert_eq!(s, ms("2026-02-01T05:00:00Z"));
        assert_eq!(e, ms("2026-03-01T05:00:00Z"));
        // March 8th 2026 is 23 hours long there (clocks go forward at 2:00).
        let (s, e) = period_bounds(Period::Day, ny, ms("2026-03-08T12:00:00Z"));
        assert_eq!(s, ms("2026-03-08T05:00:00Z"));
        assert_eq!(e, ms("2026-03-09T04:00:00Z"));
        // A summer month starts at 04:00 UTC; November 1st (clocks go back)
        // is 25 hours long.
        let (s, _) = period_bounds(Period::Month, ny, ms("2026-07-15T00:00:00Z"));
        assert_eq!(s, ms("2026-07-01T04:00:00Z"));
        let (s, e) = period_bounds(Period::Day, ny, ms("2026-11-01T12:00:00Z"));
        assert_eq!(e - s, 25 * 3_600_000);
        // The hour that repeats on November 1st is two periods.
        let (a, _) = period_bounds(Period::Hour, ny, ms("2026-11-01T05:30:00Z"));
        let (b, _) = period_bounds(Period::Hour, ny, ms("2026-11-01T06:30:00Z"));
        assert_eq!(
            (a, b),
            (ms("2026-11-01T05:00:00Z"), ms("2026-11-01T06:00:00Z"))
        );
        // Round trip through the config text.
        let text = serde_norway::to_string(&ny).unwrap();
        assert!(text.contains("America/New_York"), "{text}");
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
