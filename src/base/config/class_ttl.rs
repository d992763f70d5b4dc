//! The two spellings of a class TTL: `ttl: 1h`, or
//! `ttl: { adaptive: { min: 30s, max: 10m }, base: 1m }`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::Value;

use super::{Adaptive, ClassConfig, Dur, TtlWindow};

/// A class as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    prefix: String,
    ttl: RawTtl,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    windows: Vec<TtlWindow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveTtl {
    adaptive: Adaptive,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<Dur>,
}

#[derive(Debug, Clone)]
enum RawTtl {
    Fixed(Dur),
    Adaptive(AdaptiveTtl),
}

impl<'de> Deserialize<'de> for RawTtl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            v @ Value::Mapping(_) => serde_norway::from_value::<AdaptiveTtl>(v)
                .map(RawTtl::Adaptive)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{e}; write `ttl: 1h` or `ttl: {{ adaptive: {{ min: 30s, max: 10m }} }}`"
                    ))
                }),
            v => serde_norway::from_value::<Dur>(v)
                .map(RawTtl::Fixed)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for RawTtl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            RawTtl::Fixed(d) => d.serialize(s),
            RawTtl::Adaptive(a) => a.serialize(s),
        }
    }
}

impl From<RawClass> for ClassConfig {
    fn from(r: RawClass) -> ClassConfig {
        let (ttl, adaptive) = match r.ttl {
            RawTtl::Fixed(d) => (d, None),
            RawTtl::Adaptive(a) => (a.base.unwrap_or(a.adaptive.min), Some(a.adaptive)),
        };
        ClassConfig {
            prefix: r.prefix,
            ttl,
            adaptive,
            windows: r.windows,
        }
    }
}

impl From<ClassConfig> for RawClass {
    fn from(c: ClassConfig) -> RawClass {
        let ttl = match c.adaptive {
            None => RawTtl::Fixed(c.ttl),
            Some(adaptive) => RawTtl::Adaptive(AdaptiveTtl {
                adaptive,
                base: Some(c.ttl),
            }),
        };
        RawClass {
            prefix: c.prefix,
            ttl,
            windows: c.windows,
        }
    }
}
