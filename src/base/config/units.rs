//! The units a config is written in: durations, sizes, rates.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::Value;

use super::calendar::{period_bounds, Period, TzOffset};
use crate::base::clock::Millis;

/// A duration written `90s`, `5m`, `1h`, `7d` (or a number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `90s`, `5m`, `1h 30m`, `7d`, `250ms`.
    ///
    /// # Errors
    /// A message saying what is wrong (negative, no unit, unknown unit).
    pub fn parse(s: &str) -> std::result::Result<Dur, String> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(format!("duration `{s}` is negative"));
        }
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(secs)));
        }
        humantime::parse_duration(t)
            .map(Dur)
            .map_err(|e| format!("invalid duration `{s}` ({e}); use e.g. 90s, 5m, 1h, 7d"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => {
                Ok(Dur(Duration::from_secs(n.as_u64().unwrap_or(0))))
            }
            Value::Number(n) => Err(serde::de::Error::custom(format!(
                "duration `{n}` is negative or fractional"
            ))),
            Value::String(s) => Dur::parse(&s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a duration, got {other:?}"
            ))),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A size in bytes written `64KiB`, `10GiB`, `500MB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parses `64KiB`, `10GiB`, `1.5GB`, `4096`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Size, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid size `{s}`; use e.g. 64KiB, 10GiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit in `{s}`; use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"
                ))
            }
        };
        Ok(Size((n * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => Ok(Size(n.as_u64().unwrap_or(0))),
            Value::String(s) => Size::parse(&s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a size such as 10GiB, got {other:?}"
            ))),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A rate such as `2/s` or `10000/month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period.
    pub count: u64,
    /// The period.
    pub per: Duration,
    /// Written with a calendar unit (`/hour`, `/day`, `/month`): as a quota
    /// it resets at the start of each calendar period in `tz`, not every
    /// `per` from the epoch. `None` for `/s`, `/min` and `/<duration>`.
    pub calendar: Option<Period>,
    /// The time zone of the calendar (`fetch.quota_tz`; UTC by default).
    pub tz: TzOffset,
}

impl Rate {
    /// Parses `N/s`, `N/min`, `N/h`, `N/day`, `N/month` or `N/<duration>`.
    /// `h`, `day` and `month` are calendar periods (see [`Rate::window`]);
    /// as a spacing (`per`), a month counts 30 days.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Rate, String> {
        let (n, per) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid rate `{s}`; use e.g. 2/s"))?;
        let count = n
            .trim()
            .parse()
            .map_err(|_| format!("invalid count in rate `{s}`"))?;
        let (per, calendar) = match per.trim() {
            "s" | "sec" | "second" => (Duration::from_secs(1), None),
            "m" | "min" | "minute" => (Duration::from_secs(60), None),
            "h" | "hour" => (Duration::from_secs(3600), Some(Period::Hour)),
            "d" | "day" => (Duration::from_secs(86_400), Some(Period::Day)),
            "month" => (Duration::from_secs(30 * 86_400), Some(Period::Month)),
            other => (Dur::parse(other)?.0, None),
        };
        if count == 0 || per.is_zero() {
            return Err(format!("rate `{s}` must be positive"));
        }
        Ok(Rate {
            count,
            per,
            calendar,
            tz: TzOffset::default(),
        })
    }

    /// The quota window `[start, end)` containing `now`: the calendar
    /// hour, day or month in `tz` for a calendar rate, else a fixed
    /// period of `per` counted from the Unix epoch.
    pub fn window(&self, now: Millis) -> (Millis, Millis) {
        match self.calendar {
            Some(p) => period_bounds(p, self.tz, now),
            None => {
                let len = i64::try_from(self.per.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1);
                let s = now.div_euclid(len).saturating_mul(len);
                (s, s.saturating_add(len))
            }
        }
    }

    /// A human name for the period (`month` for 30 days).
    pub fn period_name(&self) -> String {
        match self.per.as_secs() {
            1 => "second".into(),
            60 => "minute".into(),
            3600 => "hour".into(),
            86_400 => "day".into(),
            2_592_000 if self.calendar.is_some() => "month".into(),
            _ => humantime::format_duration(self.per).to_string(),
        }
    }

    /// The spacing of requests this rate allows (`per / count`).
    pub fn interval(&self) -> Duration {
        self.per / u32::try_from(self.count.max(1)).unwrap_or(u32::MAX)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.calendar {
            Some(p) => s.serialize_str(&format!("{}/{}", self.count, p.name())),
            None => s.serialize_str(&format!(
                "{}/{}",
                self.count,
                humantime::format_duration(self.per)
            )),
        }
    }
}
