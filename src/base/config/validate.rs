//! Validation of a merged config: every refusal names its field.

use super::*;

impl Config {
    pub(super) fn validate(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        let c = &self.cache;
        if !(0.0 < c.low_watermark
            && c.low_watermark <= c.high_watermark
            && c.high_watermark <= 1.0)
        {
            return err(
                "cache.low_watermark",
                "need 0 < low_watermark <= high_watermark <= 1",
            );
        }
        // Levels 20-22 ("ultra") need windows of up to 128 MiB to decode,
        // which would break the bound on a streaming verify's memory.
        if !(1..=19).contains(&c.zstd_level) {
            return err("cache.zstd_level", "must be between 1 and 19");
        }
        if c.max_size.0 == 0 {
            return err("cache.max_size", "must be greater than zero");
        }
        if c.max_value_size.0 > crate::base::limits::MAX_BLOB_BYTES {
            return err("cache.max_value_size", "must be at most 4GiB");
        }
        for (f, d) in [
            ("cache.default_ttl", c.default_ttl),
            ("cleanup.gc_grace", self.cleanup.gc_grace),
        ] {
            if d.0 > crate::base::policy::MAX_TTL {
                return err(f, "must be at most 100 years (36525d)");
            }
        }
        if c.access_flush.0.is_zero() {
            return err("cache.access_flush", "must be greater than zero");
        }
        for (name, class) in &self.classes {
            if crate::base::key::Key::new(name.as_str()).is_err() || name.contains(':') {
                return err(
                    &format!("classes.{name}"),
                    "class names are single key segments",
                );
            }
            if class.prefix.is_empty() {
                return err(
                    &format!("classes.{name}.prefix"),
                    "prefix must not be empty",
                );
            }
            if class.ttl.0.is_zero() {
                return err(
                    &format!("classes.{name}.ttl"),
                    "ttl must be greater than zero",
                );
            }
            if class.ttl.0 > crate::base::policy::MAX_TTL {
                return err(
                    &format!("classes.{name}.ttl"),
                    "ttl must be at most 100 years (36525d)",
                );
            }
            if let Some(a) = &class.adaptive {
                if a.min.0.is_zero() || a.max.0 < a.min.0 {
                    return err(
                        &format!("classes.{name}.ttl.adaptive"),
                        "need 0 < min <= max",
                    );
                }
            }
            for (i, w) in class.windows.iter().enumerate() {
                if w.ttl.0.is_zero() {
                    return err(
                        &format!("classes.{name}.windows[{i}].ttl"),
                        "ttl must be greater than zero",
                    );
                }
                if w.to.as_end() <= w.from.ms {
                    return err(
                        &format!("classes.{name}.windows[{i}].to"),
                        &format!("`{}` is not after `from` ({})", w.to.text, w.from.text),
                    );
                }
            }
        }
        let r = &self.daemon.refresh_ahead;
        if !(r.fraction > 0.0 && r.fraction < 1.0) {
            return err(
                "daemon.refresh_ahead.fraction",
                "must be between 0 and 1 (e.g. 0.1: the last 10% of the TTL)",
            );
        }
        if r.every.0.is_zero() {
            return err("daemon.refresh_ahead.every", "must be greater than zero");
        }
        let m = &self.monitoring;
        for (f, v) in [
            (
                "monitoring.ttl_violation_threshold",
                m.ttl_violation_threshold,
            ),
            (
                "monitoring.cache_hit_ratio_threshold",
                m.cache_hit_ratio_threshold,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(f, "must be a ratio between 0 and 1");
            }
        }
        for (i, feed) in self.feeds.iter().enumerate() {
            if crate::base::key::Key::new(format!("news:{}:x", feed.name)).is_err()
                || feed.name.contains(':')
            {
                return err(
                    &format!("feeds[{i}].name"),
                    "must be a valid single key segment",
                );
            }
            if !(feed.url.starts_with("http://") || feed.url.starts_with("https://")) {
                return err(
                    &format!("feeds[{i}].url"),
                    "must be an http:// or https:// URL",
                );
            }
            if let Some(class) = &feed.class {
                if !self.classes.contains_key(class) {
                    return err(
                        &format!("feeds[{i}].class"),
                        &format!("unknown class `{class}`"),
                    );
                }
            }
            if feed.max_size.is_some_and(|m| m.0 == 0) {
                return err(&format!("feeds[{i}].max_size"), "must be greater than zero");
            }
            if feed.every.0.is_zero() {
                return err(&format!("feeds[{i}].every"), "must be greater than zero");
            }
            if self.feeds[..i].iter().any(|f| f.name == feed.name) {
                return err(&format!("feeds[{i}].name"), "duplicate feed name");
            }
        }
        self.validate_daemon()
    }

    fn validate_daemon(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: String| Err((f.to_string(), r));
        // The schedule is the daemon's: without it the expression is unused.
        #[cfg(feature = "daemon")]
        if let Err(e) = self.cleanup.interval.parse::<croner::Cron>() {
            return err(
                "cleanup.interval",
                format!("invalid cron expression ({e}); e.g. \"0 2 * * *\""),
            );
        }
        let d = &self.daemon;
        if d.size_check.0.is_zero() {
            return err("daemon.size_check", "must be greater than zero".into());
        }
        if d.max_connections == 0 {
            return err("daemon.max_connections", "must be at least 1".into());
        }
        if d.header_timeout.0.is_zero() {
            return err("daemon.header_timeout", "must be greater than zero".into());
        }
        if d.warm_concurrency == 0 {
            return err("daemon.warm_concurrency", "must be at least 1".into());
        }
        for (i, w) in d.warm.iter().enumerate() {
            if let Err(e) = crate::base::key::Key::new(w.key.as_str()) {
                return err(&format!("daemon.warm[{i}].key"), e.to_string());
            }
            if let Some(url) = &w.url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return err(
                        &format!("daemon.warm[{i}].url"),
                        "must be an http:// or https:// URL".into(),
                    );
                }
            }
            if let Some(class) = &w.class {
                if !self.classes.contains_key(class) {
                    return err(
                        &format!("daemon.warm[{i}].class"),
                        format!("unknown class `{class}`"),
                    );
                }
            }
        }
        self.validate_redis()
    }

    fn validate_redis(&self) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, r: &str| Err((format!("redis.{f}"), r.to_string()));
        let r = &self.redis;
        if let Some(url) = &r.url {
            for u in url.split(',') {
                let u = u.trim();
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    return err("url", "must be a redis:// or rediss:// URL");
                }
            }
        }
        let p = &r.key_prefix;
        if p.is_empty() || p.len() > 64 || p.contains(['{', '}', '*', '?', '[', ']', ' ']) {
            return err(
                "key_prefix",
                "must be 1..=64 bytes without braces, glob characters or spaces",
            );
        }
        for (f, d) in [
            ("timeout", r.timeout),
            ("lease_ttl", r.lease_ttl),
            ("max_backoff", r.max_backoff),
        ] {
            if d.0.is_zero() {
                return err(f, "must be greater than zero");
            }
        }
        if !(1..=10_000_000).contains(&r.log_len) {
            return err("log_len", "must be between 1 and 10000000");
        }
        if r.inline_max.0 > r.max_blob_size.0 {
            return err("inline_max", "must not exceed redis.max_blob_size");
        }
        Ok(())
    }
}
