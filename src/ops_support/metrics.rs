//! In-process metrics, rendered in the Prometheus text exposition format 0.0.4 for the admin
//! listener's `/metrics`.
//!
//! Counters, gauges and histograms (fixed latency buckets, [`LATENCY_BUCKETS`]) live in one
//! registry behind one mutex. An update hashes its label values outside the lock, then does a
//! map lookup and an add inside it (about a hundred nanoseconds), so even 64 request threads
//! spend almost no time waiting; an update to an existing series allocates nothing. A scrape
//! renders under the same lock, sorted: families by name, series by labels.
//!
//! Label values must come from bounded sets (operation names from the operation table, result
//! codes, peer ids): never from unvalidated request text, and never a secret. As a guard, a
//! family stops accepting new series at [`MAX_SERIES_PER_FAMILY`]; refused series are counted
//! in `vnetd_metrics_series_refused_total`, shown only when non-zero.
//!
//! Using one name with two metric types is a programming error: it panics in debug builds and
//! the conflicting update is ignored in release builds.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` follows implicitly.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A family accepts no new series beyond this many (a guard against unbounded label values).
pub const MAX_SERIES_PER_FAMILY: usize = 10_000;

const REFUSED_NAME: &str = "vnetd_metrics_series_refused_total";
const REFUSED_HELP: &str = "Metric series not created because their family reached its series limit.";

/// The metrics registry. `Send + Sync`; share it in an `Arc`.
pub struct Metrics {
    hasher: RandomState,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<&'static str, Family>,
    refused: u64,
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Series by the hash of their labels; the `Vec` holds hash collisions.
    series: HashMap<u64, Vec<Series>>,
    len: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Series {
    labels: Box<[(&'static str, Box<str>)]>,
    value: Value,
}

enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Box<Histogram>),
}

struct Histogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// An update computed before taking the lock.
enum Update {
    Add(u64),
    Set(f64),
    Observe { bucket: usize, seconds: f64 },
}

impl Update {
    fn kind(&self) -> Kind {
        match self {
            Update::Add(_) => Kind::Counter,
            Update::Set(_) => Kind::Gauge,
            Update::Observe { .. } => Kind::Histogram,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let families = self.lock().families.len();
        f.debug_struct("Metrics").field("families", &families).finish()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            hasher: RandomState::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds `by` to a counter (created at 0 on first use, so `by = 0` declares it).
    pub fn inc_counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let hash = self.hasher.hash_one(labels);
        self.lock().apply(name, help, labels, hash, Update::Add(by));
    }

    /// Sets a gauge.
    pub fn set_gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let hash = self.hasher.hash_one(labels);
        self.lock().apply(name, help, labels, hash, Update::Set(value));
    }

    /// Records one observation (in seconds) in a histogram with [`LATENCY_BUCKETS`].
    /// A NaN observation is ignored.
    pub fn observe(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let Some(update) = observation(seconds) else {
            return;
        };
        let hash = self.hasher.hash_one(labels);
        self.lock().apply(name, help, labels, hash, update);
    }

    /// One served request: `vnetd_requests_total{service,operation,result}` and
    /// `vnetd_request_duration_seconds{service,operation}`, under one lock.
    pub fn record_request(&self, service: &str, operation: &str, result: i32, seconds: f64) {
        let code = itoa_i32(result);
        let counter_labels = [("service", service), ("operation", operation), ("result", code.as_str())];
        let histogram_labels = [("service", service), ("operation", operation)];
        let counter_hash = self.hasher.hash_one(&counter_labels[..]);
        let histogram_hash = self.hasher.hash_one(&histogram_labels[..]);
        let observed = observation(seconds);
        let mut inner = self.lock();
        inner.apply(
            "vnetd_requests_total",
            "SOAP requests served, by service, operation and Result code.",
            &counter_labels,
            counter_hash,
            Update::Add(1),
        );
        if let Some(update) = observed {
            inner.apply(
                "vnetd_request_duration_seconds",
                "Time to serve a SOAP request, by service and operation.",
                &histogram_labels,
                histogram_hash,
                update,
            );
        }
    }

    /// The whole registry in the Prometheus text format 0.0.4
    /// (`Content-Type: text/plain; version=0.0.4; charset=utf-8`).
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(256 + inner.families.len() * 512);
        let refused = (inner.refused > 0).then_some(inner.refused);
        let mut refused_written = refused.is_none();
        for (name, family) in &inner.families {
            if !refused_written && REFUSED_NAME < *name {
                render_refused(&mut out, inner.refused);
                refused_written = true;
            }
            family.render(name, &mut out);
        }
        if !refused_written {
            render_refused(&mut out, inner.refused);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn observation(seconds: f64) -> Option<Update> {
    if seconds.is_nan() {
        return None;
    }
    let bucket = LATENCY_BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(LATENCY_BUCKETS.len());
    Some(Update::Observe { bucket, seconds })
}

/// A result code as text without a heap allocation.
fn itoa_i32(n: i32) -> SmallStr {
    let mut s = SmallStr::default();
    let _ = write!(s, "{n}");
    s
}

#[derive(Default)]
struct SmallStr {
    buf: [u8; 12],
    len: usize,
}

impl SmallStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for SmallStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Inner {
    fn apply(&mut self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], hash: u64, update: Update) {
        let kind = update.kind();
        let family = self.families.entry(name).or_insert_with(|| {
            debug_assert!(valid_metric_name(name), "invalid metric name {name:?}");
            Family {
                help,
                kind,
                series: HashMap::new(),
                len: 0,
            }
        });
        if family.kind != kind {
            debug_assert!(false, "metric {name} is a {:?}, not a {kind:?}", family.kind);
            return;
        }
        if let Some(bucket) = family.series.get_mut(&hash) {
            if let Some(series) = bucket.iter_mut().find(|s| same_labels(&s.labels, labels)) {
                series.value.update(update);
                return;
            }
        }
        if family.len >= MAX_SERIES_PER_FAMILY {
            self.refused += 1;
            return;
        }
        debug_assert!(
            labels.iter().all(|(n, _)| valid_label_name(n))
                && (kind != Kind::Histogram || labels.iter().all(|(n, _)| *n != "le")),
            "invalid label names {labels:?} for {name}"
        );
        let mut value = match kind {
            Kind::Counter => Value::Counter(0),
            Kind::Gauge => Value::Gauge(0.0),
            Kind::Histogram => Value::Histogram(Box::new(Histogram {
                buckets: [0; LATENCY_BUCKETS.len() + 1],
                sum: 0.0,
                count: 0,
            })),
        };
        value.update(update);
        family.len += 1;
        family.series.entry(hash).or_default().push(Series {
            labels: labels.iter().map(|(n, v)| (*n, Box::from(*v))).collect(),
            value,
        });
    }
}

impl Value {
    fn update(&mut self, update: Update) {
        match (self, update) {
            (Value::Counter(v), Update::Add(by)) => *v = v.saturating_add(by),
            (Value::Gauge(v), Update::Set(x)) => *v = x,
            (Value::Histogram(h), Update::Observe { bucket, seconds }) => {
                h.buckets[bucket] += 1;
                h.sum += seconds;
                h.count += 1;
            }
            _ => {} // unreachable: the family's kind is checked before
        }
    }
}

fn same_labels(stored: &[(&'static str, Box<str>)], given: &[(&'static str, &str)]) -> bool {
    stored.len() == given.len()
        && stored
            .iter()
            .zip(given)
            .all(|((sn, sv), (gn, gv))| sn == gn && &**sv == *gv)
}

fn cmp_labels(a: &Series, b: &Series) -> Ordering {
    a.labels.cmp(&b.labels)
}

impl Family {
    fn render(&self, name: &str, out: &mut String) {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(out, self.help);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push_str(match self.kind {
            Kind::Counter => " counter\n",
            Kind::Gauge => " gauge\n",
            Kind::Histogram => " histogram\n",
        });
        let mut series: Vec<&Series> = self.series.values().flatten().collect();
        series.sort_by(|a, b| cmp_labels(a, b));
        for s in series {
            match &s.value {
                Value::Counter(v) => {
                    write_sample_name(out, name, "", &s.labels, None);
                    let _ = writeln!(out, " {v}");
                }
                Value::Gauge(v) => {
                    write_sample_name(out, name, "", &s.labels, None);
                    out.push(' ');
                    push_float(out, *v);
                    out.push('\n');
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0u64;
                    for (i, count) in h.buckets.iter().enumerate() {
                        cumulative += count;
                        let le = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
                        write_sample_name(out, name, "_bucket", &s.labels, Some(le));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    write_sample_name(out, name, "_sum", &s.labels, None);
                    out.push(' ');
                    push_float(out, h.sum);
                    out.push('\n');
                    write_sample_name(out, name, "_count", &s.labels, None);
                    let _ = writeln!(out, " {}", h.count);
                }
            }
        }
    }
}

fn render_refused(out: &mut String, refused: u64) {
    let _ = write!(
        out,
        "# HELP {REFUSED_NAME} {REFUSED_HELP}\n# TYPE {REFUSED_NAME} counter\n{REFUSED_NAME} {refused}\n"
    );
}

fn write_sample_name(out: &mut String, name: &str, suffix: &str, labels: &[(&'static str, Box<str>)], le: Option<f64>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (n, v) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        out.push_str("le=\"");
        push_float(out, le);
        out.push('"');
    }
    out.push('}');
}

/// Floats as Prometheus reads them: `+Inf`, `-Inf`, `NaN`, else the shortest decimal form.
fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counter_and_gauge_render_exactly() {
        let m = Metrics::new();
        m.inc_counter("vnetd_logins_total", "Logins by result.", &[("result", "ok")], 2);
        m.inc_counter("vnetd_logins_total", "Logins by result.", &[("result", "failed")], 1);
        m.inc_counter("vnetd_logins_total", "Logins by result.", &[("result", "ok")], 3);
        m.set_gauge("vnetd_clock_offset_seconds", "Offset from the centre clock.", &[], -0.25);
        m.set_gauge("vnetd_outbox_backlog", "Messages waiting.", &[("destination", "centre")], 7.0);
        m.set_gauge("vnetd_outbox_backlog", "Messages waiting.", &[("destination", "bss")], 1.5);
        m.set_gauge("vnetd_outbox_backlog", "Messages waiting.", &[("destination", "centre")], 4.0);
        m.inc_counter("vnetd_lockouts_total", "Accounts locked.", &[], 0);
        m.set_gauge("vnetd_weird", "Non-finite values.", &[("v", "inf")], f64::INFINITY);
        m.set_gauge("vnetd_weird", "Non-finite values.", &[("v", "nan")], f64::NAN);
        m.set_gauge("vnetd_weird", "Non-finite values.", &[("v", "ninf")], f64::NEG_INFINITY);
        assert_eq!(
            m.render(),
            "# HELP vnetd_clock_offset_seconds Offset from the centre clock.\n\
             # TYPE vnetd_clock_offset_seconds gauge\n\
             vnetd_clock_offset_seconds -0.25\n\
             # HELP vnetd_lockouts_total Accounts locked.\n\
             # TYPE vnetd_lockouts_total counter\n\
             vnetd_lockouts_total 0\n\
             # HELP vnetd_logins_total Logins by result.\n\
             # TYPE vnetd_logins_total counter\n\
             vnetd_logins_total{result=\"failed\"} 1\n\
             vnetd_logins_total{result=\"ok\"} 5\n\
             # HELP vnetd_outbox_backlog Messages waiting.\n\
             # TYPE vnetd_outbox_backlog gauge\n\
             vnetd_outbox_backlog{destination=\"bss\"} 1.5\n\
             vnetd_outbox_backlog{destination=\"centre\"} 4\n\
             # HELP vnetd_weird Non-finite values.\n\
             # TYPE vnetd_weird gauge\n\
             vnetd_weird{v=\"inf\"} +Inf\n\
             vnetd_weird{v=\"nan\"} NaN\n\
             vnetd_weird{v=\"ninf\"} -Inf\n"
        );
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let m = Metrics::new();
        for s in [0.0003, 0.0005, 0.004, 0.2, 0.2, 3.0, 12.0] {
            m.observe("t_seconds", "Latency.", &[("op", "Login")], s);
        }
        m.observe("t_seconds", "Latency.", &[("op", "Login")], f64::NAN); // ignored
        m.observe("t_seconds", "Latency.", &[], 0.01);
        let expected = "# HELP t_seconds Latency.\n\
             # TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"0.0005\"} 0\n\
             t_seconds_bucket{le=\"0.001\"} 0\n\
             t_seconds_bucket{le=\"0.0025\"} 0\n\
             t_seconds_bucket{le=\"0.005\"} 0\n\
             t_seconds_bucket{le=\"0.01\"} 1\n\
             t_seconds_bucket{le=\"0.025\"} 1\n\
             t_seconds_bucket{le=\"0.05\"} 1\n\
             t_seconds_bucket{le=\"0.1\"} 1\n\
             t_seconds_bucket{le=\"0.25\"} 1\n\
             t_seconds_bucket{le=\"0.5\"} 1\n\
             t_seconds_bucket{le=\"1\"} 1\n\
             t_seconds_bucket{le=\"2.5\"} 1\n\
             t_seconds_bucket{le=\"5\"} 1\n\
             t_seconds_bucket{le=\"10\"} 1\n\
             t_seconds_bucket{le=\"+Inf\"} 1\n\
             t_seconds_sum 0.01\n\
             t_seconds_count 1\n\
             t_seconds_bucket{op=\"Login\",le=\"0.0005\"} 2\n\
             t_seconds_bucket{op=\"Login\",le=\"0.001\"} 2\n\
             t_seconds_bucket{op=\"Login\",le=\"0.0025\"} 2\n\
             t_seconds_bucket{op=\"Login\",le=\"0.005\"} 3\n\
             t_seconds_bucket{op=\"Login\",le=\"0.01\"} 3\n\
             t_seconds_bucket{op=\"Login\",le=\"0.025\"} 3\n\
             t_seconds_bucket{op=\"Login\",le=\"0.05\"} 3\n\
             t_seconds_bucket{op=\"Login\",le=\"0.1\"} 3\n\
             t_seconds_bucket{op=\"Login\",le=\"0.25\"} 5\n\
             t_seconds_bucket{op=\"Login\",le=\"0.5\"} 5\n\
             t_seconds_bucket{op=\"Login\",le=\"1\"} 5\n\
             t_seconds_bucket{op=\"Login\",le=\"2.5\"} 5\n\
             t_seconds_bucket{op=\"Login\",le=\"5\"} 6\n\
             t_seconds_bucket{op=\"Login\",le=\"10\"} 6\n\
             t_seconds_bucket{op=\"Login\",le=\"+Inf\"} 7\n\
             t_seconds_sum{op=\"Login\"} 15.4048\n\
             t_seconds_count{op=\"Login\"} 7\n";
        let rendered = m.render();
        // The sum is a float sum; compare it numerically, the rest exactly.
        let prefix = "t_seconds_sum{op=\"Login\"} ";
        let sum_line = rendered.lines().find(|l| l.starts_with(prefix)).unwrap().to_string();
        let sum: f64 = sum_line[prefix.len()..].parse().unwrap();
        assert!((sum - 15.4048).abs() < 1e-9, "{sum}");
        assert_eq!(rendered.replace(&sum_line, &format!("{prefix}15.4048")), expected);
    }

    #[test]
    fn buckets_are_cumulative_and_end_at_count() {
        let m = Metrics::new();
        let values = [0.0001, 0.0007, 0.002, 0.03, 0.03, 0.7, 0.9, 1.0, 4.0, 9.0, 11.0, 100.0];
        for v in values {
            m.observe("h_seconds", "H.", &[], v);
        }
        let rendered = m.render();
        let counts: Vec<u64> = rendered
            .lines()
            .filter(|l| l.starts_with("h_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(counts.len(), LATENCY_BUCKETS.len() + 1);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        // Each bucket counts the values <= its bound.
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            assert_eq!(counts[i], values.iter().filter(|v| **v <= *bound).count() as u64, "le={bound}");
        }
        assert_eq!(counts[LATENCY_BUCKETS.len()], values.len() as u64);
        assert!(rendered.contains(&format!("h_seconds_count {}\n", values.len())));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let m = Metrics::new();
        m.inc_counter("e_total", "Help with \\ and\nnewline \"kept\".", &[("a", "back\\slash \"quoted\"\nnext"), ("b", "中文")], 1);
        assert_eq!(
            m.render(),
            "# HELP e_total Help with \\\\ and\\nnewline \"kept\".\n\
             # TYPE e_total counter\n\
             e_total{a=\"back\\\\slash \\\"quoted\\\"\\nnext\",b=\"中文\"} 1\n"
        );
    }

    #[test]
    fn series_sort_by_labels_in_order() {
        let m = Metrics::new();
        for (svc, op) in [("b", "x"), ("a", "z"), ("a", "y"), ("b", "a")] {
            m.inc_counter("s_total", "S.", &[("service", svc), ("operation", op)], 1);
        }
        let lines: Vec<String> = m.render().lines().skip(2).map(str::to_string).collect();
        assert_eq!(
            lines,
            [
                "s_total{service=\"a\",operation=\"y\"} 1",
                "s_total{service=\"a\",operation=\"z\"} 1",
                "s_total{service=\"b\",operation=\"a\"} 1",
                "s_total{service=\"b\",operation=\"x\"} 1",
            ]
        );
    }

    #[test]
    fn record_request_feeds_counter_and_histogram() {
        let m = Metrics::new();
        m.record_request("ProvinceForSP", "Login", 0, 0.003);
        m.record_request("ProvinceForSP", "Login", 0, 0.02);
        m.record_request("ProvinceForSP", "Login", -1, 0.0001);
        let r = m.render();
        assert!(r.contains("# TYPE vnetd_requests_total counter\n"));
        assert!(r.contains("vnetd_requests_total{service=\"ProvinceForSP\",operation=\"Login\",result=\"-1\"} 1\n"));
        assert!(r.contains("vnetd_requests_total{service=\"ProvinceForSP\",operation=\"Login\",result=\"0\"} 2\n"));
        assert!(r.contains("# TYPE vnetd_request_duration_seconds histogram\n"));
        assert!(r.contains("vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Login\",le=\"0.0005\"} 1\n"));
        assert!(r.contains("vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Login\",le=\"0.005\"} 2\n"));
        assert!(r.contains("vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=\"Login\",le=\"+Inf\"} 3\n"));
        assert!(r.contains("vnetd_request_duration_seconds_count{service=\"ProvinceForSP\",operation=\"Login\"} 3\n"));
        // Families in name order: "vnetd_request_duration_seconds" < "vnetd_requests_total".
        assert!(r.find("vnetd_request_duration_seconds").unwrap() < r.find("vnetd_requests_total").unwrap());
        assert_eq!(r.matches("# HELP").count(), 2);
        assert_eq!(itoa_i32(i32::MIN).as_str(), "-2147483648");
    }

    #[test]
    fn concurrent_updates_from_8_threads_sum_correctly() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let op = if t % 2 == 0 { "even" } else { "odd" };
                    for i in 0..10_000u64 {
                        m.inc_counter("c_total", "C.", &[("op", op)], 1);
                        m.inc_counter("c_total", "C.", &[("op", "all")], i % 3);
                        m.record_request("S", op, 0, 0.001);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let r = m.render();
        let per_thread_all: u64 = (0..10_000u64).map(|i| i % 3).sum();
        assert!(r.contains(&format!("c_total{{op=\"all\"}} {}\n", 8 * per_thread_all)), "{r}");
        assert!(r.contains("c_total{op=\"even\"} 40000\n"));
        assert!(r.contains("c_total{op=\"odd\"} 40000\n"));
        assert!(r.contains("vnetd_requests_total{service=\"S\",operation=\"odd\",result=\"0\"} 40000\n"));
        assert!(r.contains("vnetd_request_duration_seconds_bucket{service=\"S\",operation=\"even\",le=\"0.001\"} 40000\n"));
        assert!(r.contains("vnetd_request_duration_seconds_bucket{service=\"S\",operation=\"even\",le=\"0.0005\"} 0\n"));
    }

    #[test]
    fn series_limit_refuses_new_series_and_says_so() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 5 {
            m.inc_counter("a_total", "A.", &[("id", &i.to_string())], 1);
        }
        m.inc_counter("a_total", "A.", &[("id", "0")], 1); // existing series still count
        m.inc_counter("z_total", "Z.", &[], 1);
        let r = m.render();
        assert_eq!(r.lines().filter(|l| l.starts_with("a_total{")).count(), MAX_SERIES_PER_FAMILY);
        assert!(r.contains("a_total{id=\"0\"} 2\n"));
        let refused = format!("# HELP {REFUSED_NAME} {REFUSED_HELP}\n# TYPE {REFUSED_NAME} counter\n{REFUSED_NAME} 5\n");
        let at = r.find(&refused).expect("refused counter rendered");
        assert!(r.find("# HELP a_total").unwrap() < at && at < r.find("# HELP z_total").unwrap());
    }

    #[test]
    fn empty_registry_renders_nothing() {
        assert_eq!(Metrics::new().render(), "");
    }

    #[test]
    fn metrics_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
