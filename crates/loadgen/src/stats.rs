//! Results: latency histograms (hdrhistogram, microseconds), operation and byte
//! counts, errors, the work budget shared by all connections, and the JSON line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The highest latency recorded (one hour, in microseconds); slower ones are clamped.
const MAX_US: u64 = 3_600_000_000;

/// What one connection (or the whole run, once merged) measured.
pub struct Stats {
    /// Latency of every operation, in microseconds (None only if the histogram
    /// library refused the fixed bounds, which it does not).
    pub hist: Option<Histogram<u64>>,
    /// Operations completed.
    pub ops: u64,
    /// Payload bytes moved (message bytes sent or received).
    pub bytes: u64,
    /// Failed operations, refused connections and unexpected replies.
    pub errors: u64,
    /// The first few error messages, for the report.
    pub first_errors: Vec<String>,
    /// Per-command latencies (microseconds), for mixed workloads.
    pub per_op: BTreeMap<&'static str, Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        // 3 significant digits over 1 µs .. 1 h: always valid bounds.
        let hist = Histogram::new_with_bounds(1, MAX_US, 3).ok();
        Stats {
            hist,
            ops: 0,
            bytes: 0,
            errors: 0,
            first_errors: Vec::new(),
            per_op: BTreeMap::new(),
        }
    }

    /// Records one completed operation that took `d`.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        if let Some(h) = self.hist.as_mut() {
            h.saturating_record(us);
        }
        self.ops += 1;
    }

    /// Records one completed operation of kind `name`.
    pub fn record_op(&mut self, name: &'static str, d: Duration) {
        self.record(d);
        let us = u64::try_from(d.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        if let Some(h) = self.per_op.get_mut(name) {
            h.saturating_record(us);
        } else if let Ok(mut h) = Histogram::new_with_bounds(1, MAX_US, 3) {
            h.saturating_record(us);
            self.per_op.insert(name, h);
        }
    }

    /// Counts an error, keeping the first five messages.
    pub fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what.to_string());
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Stats) {
        // Both histograms have the same bounds, so adding cannot fail; if it did,
        // the counts would still be right and only the percentiles off.
        if let (Some(mine), Some(theirs)) = (self.hist.as_mut(), other.hist.as_ref()) {
            let _ = mine.add(theirs);
        }
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
        for (k, v) in other.per_op {
            match self.per_op.get_mut(k) {
                Some(h) => {
                    let _ = h.add(&v);
                }
                None => {
                    self.per_op.insert(k, v);
                }
            }
        }
    }

    /// The result line: workload, ops, seconds, ops_per_sec, mb_per_sec, p50_ms,
    /// p99_ms, errors (and the extra fields given).
    pub fn json(&self, workload: &str, elapsed: Duration, extra: serde_json::Value) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |q: f64| match &self.hist {
            Some(h) if !h.is_empty() => round3(h.value_at_quantile(q) as f64 / 1000.0),
            _ => 0.0,
        };
        let max_ms = match &self.hist {
            Some(h) if !h.is_empty() => round3(h.max() as f64 / 1000.0),
            _ => 0.0,
        };
        let mut v = serde_json::json!({
            "workload": workload,
            "ops": self.ops,
            "seconds": round3(secs),
            "ops_per_sec": round3(self.ops as f64 / secs),
            "mb_per_sec": round3(self.bytes as f64 / secs / 1e6),
            "bytes": self.bytes,
            "p50_ms": ms(0.50),
            "p99_ms": ms(0.99),
            "max_ms": max_ms,
            "errors": self.errors,
            "first_errors": self.first_errors,
        });
        if !self.per_op.is_empty()
            && let Some(map) = v.as_object_mut()
        {
            // Each command's count and latency percentiles.
            let per: serde_json::Map<String, serde_json::Value> = self
                .per_op
                .iter()
                .map(|(k, h)| {
                    let q = |q: f64| round3(h.value_at_quantile(q) as f64 / 1000.0);
                    let v = serde_json::json!({
                        "ops": h.len(),
                        "p50_ms": q(0.5),
                        "p99_ms": q(0.99),
                        "max_ms": round3(h.max() as f64 / 1000.0),
                    });
                    (k.to_string(), v)
                })
                .collect();
            map.insert("per_op".into(), serde_json::Value::Object(per));
        }
        if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        v.to_string()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How much work the run does: until a deadline, or a fixed number of operations
/// shared by all connections.
pub enum Budget {
    /// Run until this instant.
    Until(Instant),
    /// Run until this many operations have been started in all.
    Count(AtomicU64),
}

impl Budget {
    /// Claims one operation; false when the budget is spent.
    pub fn take(&self) -> bool {
        match self {
            Budget::Until(t) => Instant::now() < *t,
            Budget::Count(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Uses up one unit of a count budget for a failed connection or session, so a
    /// dead or refusing server cannot keep a counted run going for ever (a timed run
    /// ends at its deadline anyway).
    pub fn fail(&self) {
        let _ = self.take();
    }

    /// True when no more work is left (without claiming any).
    pub fn done(&self) -> bool {
        match self {
            Budget::Until(t) => Instant::now() >= *t,
            Budget::Count(left) => left.load(Ordering::Relaxed) == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_budget_hands_out_exactly_n() {
        let b = Budget::Count(AtomicU64::new(3));
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert!(b.done());
    }

    #[test]
    fn merged_stats_report_percentiles_and_rates() {
        let mut a = Stats::new();
        for _ in 0..99 {
            a.record(Duration::from_millis(1));
        }
        let mut b = Stats::new();
        b.record(Duration::from_millis(500));
        b.bytes = 2_000_000;
        b.error("boom");
        a.merge(b);
        let line = a.json("x", Duration::from_secs(2), serde_json::json!({"conns": 4}));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ops"], 100);
        assert_eq!(v["ops_per_sec"], 50.0);
        assert_eq!(v["mb_per_sec"], 1.0);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["conns"], 4);
        assert!((v["p50_ms"].as_f64().unwrap() - 1.0).abs() < 0.01);
        assert!(v["p99_ms"].as_f64().unwrap() < 2.0, "99 of 100 took 1 ms");
        assert!(v["max_ms"].as_f64().unwrap() > 499.0);
    }

    #[test]
    fn per_op_latencies_are_kept_apart() {
        let mut a = Stats::new();
        a.record_op("fast", Duration::from_millis(1));
        let mut b = Stats::new();
        b.record_op("slow", Duration::from_millis(300));
        b.record_op("fast", Duration::from_millis(2));
        a.merge(b);
        let v: serde_json::Value =
            serde_json::from_str(&a.json("x", Duration::from_secs(1), serde_json::json!({})))
                .unwrap();
        assert_eq!(v["per_op"]["fast"]["ops"], 2);
        assert_eq!(v["per_op"]["slow"]["ops"], 1);
        assert!(v["per_op"]["fast"]["p99_ms"].as_f64().unwrap() < 3.0);
        assert!(v["per_op"]["slow"]["p50_ms"].as_f64().unwrap() > 299.0);
    }
}
