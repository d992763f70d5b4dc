//! The staleness guard: an inference run gets every signal it asked for,
//! each fresh (and younger than `max_age` where asked), read as of one
//! instant — or an error listing every signal that is not.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::base::clock::Millis;
use crate::base::config::Consistency;
use crate::base::error::{Error, Result};
use crate::base::key::{Key, Pattern};
use crate::base::names;
use crate::base::policy::Freshness;
pub use crate::base::signal::{summarize, StaleReason, StaleSignal};
use crate::cache::{Cache, Meta};
use crate::disk::index::{self, Row};
use crate::disk::store::Outcome;

/// Builder for one guarded read. See [`Cache::guard`].
#[derive(Debug, Clone)]
pub struct Guard<'a> {
    cache: &'a Cache,
    max_age: Option<Duration>,
    class_max_age: HashMap<String, Duration>,
    at: Option<Millis>,
}

/// One accepted signal.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Signal {
    /// The requirement (key or pattern) this signal satisfies.
    pub requirement: String,
    #[serde(flatten)]
    /// Its metadata as of the guarded instant.
    pub meta: Meta,
    #[serde(skip)]
    /// Its verified bytes.
    pub value: Bytes,
}

/// Every requested signal, fresh as of `at`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FreshSet {
    #[serde(serialize_with = "crate::base::clock::ser_rfc3339")]
    /// The instant every signal was judged at.
    pub at: Millis,
    /// One signal per requirement, in the order asked.
    pub signals: Vec<Signal>,
    /// Keys accepted although not confirmed against the shared invalidation
    /// log (`redis.consistency: available` while unconfirmed); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

impl FreshSet {
    /// The value for a requirement (key or pattern, as written).
    pub fn get(&self, requirement: &str) -> Option<&Bytes> {
        self.signals
            .iter()
            .find(|s| s.requirement == requirement)
            .map(|s| &s.value)
    }
}

enum Requirement {
    Key(Key),
    Pattern(Pattern),
}

impl<'a> Guard<'a> {
    pub(crate) fn new(cache: &'a Cache) -> Guard<'a> {
        Guard {
            cache,
            max_age: None,
            class_max_age: HashMap::new(),
            at: None,
        }
    }

    /// Every signal must also be younger than `d` (stricter than its TTL).
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = Some(d);
        self
    }

    /// Signals of `class` must be younger than `d`.
    pub fn class_max_age(mut self, class: impl Into<String>, d: Duration) -> Self {
        self.class_max_age.insert(class.into(), d);
        self
    }

    /// The instant the inference is for (default: now by the cache's clock).
    pub fn at(mut self, at: Millis) -> Self {
        self.at = Some(at);
        self
    }

    /// Reads every requirement (a key, or a pattern whose newest match must
    /// be fresh) as of one snapshot and one instant.
    ///
    /// # Errors
    /// [`Error::Stale`] listing every stale or missing signal;
    /// [`Error::InvalidKey`] / [`Error::InvalidPattern`] for bad input.
    pub fn require<S: AsRef<str>>(&self, requirements: &[S]) -> Result<FreshSet> {
        let reqs = requirements
            .iter()
            .map(|r| {
                let r = r.as_ref();
                if r.contains(['*', '?']) {
                    Pattern::new(r).map(Requirement::Pattern)
                } else {
                    Key::new(r).map(Requirement::Key)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let at = self.at.unwrap_or_else(|| self.cache.now());
        let store = &self.cache.inner.store;
        let want = |row: &Row| self.judge(row, at).is_none();
        let classes = self.cache.classes();
        let mut gone = Vec::new();
        let found: Vec<Option<(Row, Option<Bytes>)>> = store.index.read_snapshot(|r| {
            let mut out = Vec::with_capacity(reqs.len());
            for req in &reqs {
                let key = match req {
                    Requirement::Key(k) => Some(k.as_str().to_owned()),
                    Requirement::Pattern(p) => {
                        newest_match(r.conn(), p).map_err(|e| store.index.wrap(e))?
                    }
                };
                let outcome = match &key {
                    Some(k) => store.read_in(r, k, &want)?,
                    None => Outcome::Miss,
                };
                out.push(match outcome {
                    Outcome::Hit(read) => Some((read.row, read.bytes)),
                    Outcome::Miss => None,
                    Outcome::FileGone(row) => {
                        gone.push((row, None));
                        None
                    }
                    Outcome::Corrupt(row, bytes) => {
                        gone.push((row, Some(bytes)));
                        None
                    }
                });
            }
            Ok(out)
        })?;
        for (row, bytes) in gone {
            store.quarantine(&row, bytes.as_deref(), at)?;
        }

        let unconfirmed_mode = self.cache.unconfirmed();
        let mut signals = Vec::new();
        let mut unconfirmed = Vec::new();
        let mut stale = Vec::new();
        for (req, (text, hit)) in reqs
            .iter()
            .zip(requirements.iter().map(AsRef::as_ref).zip(found))
        {
            let class = match (&hit, req) {
                (Some((row, _)), _) => row.class.clone(),
                (None, Requirement::Key(k)) => classes.classify(k.as_str()).0,
                (None, Requirement::Pattern(p)) => classes.classify(p.literal_prefix()).0,
            };
            self.cache.count(names::guard_check(&class), 1);
            let refusal = match &hit {
                None => Some(StaleSignal {
                    requirement: text.to_owned(),
                    key: matches!(req, Requirement::Key(_)).then(|| text.to_owned()),
                    class: class.clone(),
                    reason: StaleReason::Missing,
                    age_ms: None,
                    limit_ms: None,
                    over_by_ms: None,
                }),
                Some((row, _)) => self
                    .judge(row, at)
                    .or_else(|| match unconfirmed_mode {
                        Some(Consistency::Strict) => Some(StaleSignal {
                            requirement: String::new(),
                            key: Some(row.key.clone()),
                            class: row.class.clone(),
                            reason: StaleReason::Unconfirmed,
                            age_ms: Some(at - row.created_at),
                            limit_ms: None,
                            over_by_ms: None,
                        }),
                        _ => None,
                    })
                    .map(|mut s| {
                        s.requirement = text.to_owned();
                        s
                    }),
            };
            match (refusal, hit) {
                (Some(s), _) => {
                    if s.reason != StaleReason::Unconfirmed {
                        self.cache.count(names::ttl_violation(&class), 1);
                    }
                    stale.push(s);
                }
                (None, Some((row, Some(bytes)))) => {
                    if unconfirmed_mode.is_some() {
                        self.cache.count(names::redis("unconfirmed_reads"), 1);
                        unconfirmed.push(row.key.clone());
                    }
                    signals.push(Signal {
                        requirement: text.to_owned(),
                        meta: Meta::from_row(row, at),
                        value: bytes,
                    });
                }
                (None, Some((row, None))) => {
                    // Not reached: bytes are read whenever a row is acceptable.
                    // Refusing is the safe answer if that ever changes.
                    stale.push(StaleSignal {
                        requirement: text.to_owned(),
                        key: Some(row.key.clone()),
                        class,
                        reason: StaleReason::Missing,
                        age_ms: None,
                        limit_ms: None,
                        over_by_ms: None,
                    });
                }
                (None, None) => {}
            }
        }
        if stale.is_empty() {
            Ok(FreshSet {
                at,
                signals,
                unconfirmed,
            })
        } else {
            self.cache.count(names::GUARD_REFUSALS.to_string(), 1);
            tracing::warn!(
                refused = stale.len(),
                "staleness guard refused: {}",
                summarize(&stale)
            );
            Err(Error::Stale(stale))
        }
    }

    /// `None` if `row` is acceptable at `at`, else why not.
    fn judge(&self, row: &Row, at: Millis) -> Option<StaleSignal> {
        let row = &self.cache.effective(row.clone(), at);
        // Saturating: a stored instant may be anything (an older version, an
        // absurd TTL, a damaged row); judging it must not overflow.
        let age = at.saturating_sub(row.created_at);
        let ttl = row.expires_at.saturating_sub(row.created_at);
        let refuse = |reason, limit: i64, over: i64| StaleSignal {
            requirement: String::new(),
            key: Some(row.key.clone()),
            class: row.class.clone(),
            reason,
            age_ms: Some(age),
            limit_ms: Some(limit),
            over_by_ms: Some(over),
        };
        if age < 0 {
            return Some(refuse(StaleReason::FromTheFuture, 0, age.saturating_neg()));
        }
        if !Freshness::at(row.expires_at, at).is_fresh() {
            return Some(refuse(
                StaleReason::Expired,
                ttl,
                at.saturating_sub(row.expires_at),
            ));
        }
        let max_age = [self.max_age, self.class_max_age.get(&row.class).copied()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.as_millis() as i64);
        match max_age {
            Some(m) if age >= m => Some(refuse(StaleReason::TooOld, m, age.saturating_sub(m))),
            _ => None,
        }
    }
}

/// The key of the newest (latest created_at, then greatest key) entry matching `p`.
fn newest_match(c: &rusqlite::Connection, p: &Pattern) -> rusqlite::Result<Option<String>> {
    let (lo, hi) = p.range();
    let rows = index::range(c, &lo, hi.as_deref())?;
    Ok(rows
        .into_iter()
        .filter(|r| p.matches(&r.key))
        .max_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.key.cmp(&b.key))
        })
        .map(|r| r.key))
}

impl Cache {
    /// The staleness guard for an inference run.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// use freshcache::{Cache, ManualClock, Put, Error};
    /// let clock = ManualClock::new(1_800_000_000_000);
    /// let cache = Cache::builder().root(dir.path()).clock(clock.clone()).open()?;
    /// cache.put("odds:g1:1", b"{}", Put::default())?;            // odds: 60 s TTL
    /// assert!(cache.guard().require(&["odds:g1:1"]).is_ok());
    /// clock.advance(Duration::from_secs(60));
    /// assert!(matches!(cache.guard().require(&["odds:g1:1"]), Err(Error::Stale(_))));
    /// # Ok::<(), freshcache::Error>(())
    /// ```
    pub fn guard(&self) -> Guard<'_> {
        Guard::new(self)
    }
}
