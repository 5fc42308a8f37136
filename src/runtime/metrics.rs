//! In-process metrics for the admin listener's `/metrics`, kept and encoded by the Prometheus
//! project's Rust client (`prometheus-client`), in the Prometheus text format 0.0.4
//! ([`CONTENT_TYPE`]).
//!
//! Call sites name a family and its labels at run time (`inc_counter`, `set_gauge`, `observe`,
//! `record_request`): a family is registered with the crate's registry on first use and its
//! series are the crate's `Family` entries. Counter names end in `_total` at the call site, as
//! they appear in the exposition; the crate adds that suffix itself, so it is stripped before
//! registering. Histograms use [`LATENCY_BUCKETS`] (50 µs … 5 s).
//!
//! Label values must come from bounded sets (operation names from the operation table, result
//! codes, peer ids): never from unvalidated request text, and never a secret. As a guard, a
//! family stops accepting new series at [`MAX_SERIES_PER_FAMILY`]; refused series are counted
//! in `vnetd_metrics_series_refused_total`.
//!
//! Using one name with two metric types is a programming error: it panics in debug builds and
//! the conflicting update is ignored in release builds.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` follows implicitly.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A family accepts no new series beyond this many (a guard against unbounded label values).
pub const MAX_SERIES_PER_FAMILY: usize = 10_000;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const REFUSED_NAME: &str = "vnetd_metrics_series_refused";
const REFUSED_HELP: &str = "Metric series not created because their family reached its series limit";

const REQUESTS: &str = "vnetd_requests_total";
const REQUESTS_HELP: &str = "SOAP requests served, by service, operation and Result code";
const DURATION: &str = "vnetd_request_duration_seconds";
const DURATION_HELP: &str = "Time to serve a SOAP request, by service and operation";

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone)]
enum Handle {
    Counter(Family<Labels, Counter>, Arc<AtomicUsize>),
    Gauge(Family<Labels, FloatGauge>, Arc<AtomicUsize>),
    Histogram(HistogramFamily, Arc<AtomicUsize>),
}

impl Handle {
    fn kind(&self) -> &'static str {
        match self {
            Handle::Counter(..) => "counter",
            Handle::Gauge(..) => "gauge",
            Handle::Histogram(..) => "histogram",
        }
    }
}

/// The metrics registry. `Send + Sync`; share it in an `Arc`.
pub struct Metrics {
    registry: Mutex<Registry>,
    families: RwLock<HashMap<&'static str, Handle>>,
    refused: Counter,
    /// The totals `sync_counter` saw last, by name and labels.
    synced: Mutex<HashMap<(&'static str, Labels), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Metrics").field("families", &families).finish()
    }
}

fn labels_of(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(n, v)| (*n, (*v).to_string())).collect()
}

/// Runs `f` on the family's series for `labels`, unless the family is full. `$len` counts the
/// family's series (two threads creating the same series at once may count it twice: the
/// limit is a guard, not an exact figure).
macro_rules! with_series {
    ($self:expr, $family:expr, $len:expr, $labels:expr, |$m:ident| $body:expr) => {{
        let labels = labels_of($labels);
        if let Some($m) = $family.get(&labels) {
            $body;
        } else if $len.load(std::sync::atomic::Ordering::Relaxed) >= MAX_SERIES_PER_FAMILY {
            $self.refused.inc();
        } else {
            $len.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let $m = $family.get_or_create(&labels);
            $body;
        }
    }};
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let refused = Counter::default();
        registry.register(REFUSED_NAME, REFUSED_HELP, refused.clone());
        Metrics { registry: Mutex::new(registry), families: RwLock::new(HashMap::new()), refused, synced: Mutex::default() }
    }

    /// The family `name`, registered on first use by `make`.
    fn family(&self, name: &'static str, help: &'static str, make: impl FnOnce() -> Handle) -> Handle {
        if let Some(h) = self.families.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return h.clone();
        }
        let mut families = self.families.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = families.get(name) {
            return h.clone();
        }
        debug_assert!(valid_metric_name(name), "invalid metric name {name:?}");
        let handle = make();
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        match &handle {
            Handle::Counter(f, _) => {
                debug_assert!(name.ends_with("_total"), "counter {name} must end in _total");
                registry.register(name.strip_suffix("_total").unwrap_or(name), help, f.clone());
            }
            Handle::Gauge(f, _) => registry.register(name, help, f.clone()),
            Handle::Histogram(f, _) => registry.register(name, help, f.clone()),
        }
        families.insert(name, handle.clone());
        handle
    }

    fn counter_family(&self, name: &'static str, help: &'static str) -> Option<(Family<Labels, Counter>, Arc<AtomicUsize>)> {
        match self.family(name, help, || Handle::Counter(Family::default(), Arc::default())) {
            Handle::Counter(f, n) => Some((f, n)),
            other => mismatch(name, "counter", other.kind()),
        }
    }

    /// Adds `by` to a counter (created at 0 on first use, so `by = 0` declares it).
    pub fn inc_counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], by: u64) {
        if let Some((f, n)) = self.counter_family(name, help) {
            with_series!(self, f, n, labels, |c| c.inc_by(by));
        }
    }

    /// Adds to a counter what a count kept elsewhere (e.g. by the HTTP library, read at scrape
    /// time) gained since the last call with the same name and labels. Other updates of the
    /// same series (`inc_counter`) add to it independently.
    pub fn sync_counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], total: u64) {
        let delta = {
            let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
            let last = synced.entry((name, labels_of(labels))).or_insert(0);
            let d = total.saturating_sub(*last);
            *last = (*last).max(total);
            d
        };
        self.inc_counter(name, help, labels, delta);
    }

    /// Sets a gauge.
    pub fn set_gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
        match self.family(name, help, || Handle::Gauge(Family::default(), Arc::default())) {
            Handle::Gauge(f, n) => with_series!(self, f, n, labels, |g| g.set(value)),
            other => mismatch::<()>(name, "gauge", other.kind()).unwrap_or(()),
        }
    }

    /// Make a gauge's series exist (at 0 if new) without overwriting a value a thread already
    /// set: the clock-sync thread may have measured before the listeners declare their series.
    pub fn declare_gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) {
        match self.family(name, help, || Handle::Gauge(Family::default(), Arc::default())) {
            Handle::Gauge(f, n) => with_series!(self, f, n, labels, |g| drop(g)),
            other => mismatch::<()>(name, "gauge", other.kind()).unwrap_or(()),
        }
    }

    fn histogram_family(&self, name: &'static str, help: &'static str) -> Option<(HistogramFamily, Arc<AtomicUsize>)> {
        let make = || Handle::Histogram(Family::new_with_constructor(latency_histogram as fn() -> Histogram), Arc::default());
        match self.family(name, help, make) {
            Handle::Histogram(f, n) => Some((f, n)),
            other => mismatch(name, "histogram", other.kind()),
        }
    }

    /// Records one observation (in seconds) in a histogram with [`LATENCY_BUCKETS`].
    /// A NaN observation is ignored.
    pub fn observe(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        if let Some((f, n)) = self.histogram_family(name, help) {
            with_series!(self, f, n, labels, |h| h.observe(seconds));
        }
    }

    /// Creates the series of one operation with zero values: `vnetd_requests_total` with
    /// Result 0 and the duration histogram.
    pub fn declare_request(&self, service: &str, operation: &str) {
        if let Some((f, n)) = self.counter_family(REQUESTS, REQUESTS_HELP) {
            with_series!(self, f, n, &[("service", service), ("operation", operation), ("result", "0")], |c| drop(c));
        }
        if let Some((f, n)) = self.histogram_family(DURATION, DURATION_HELP) {
            with_series!(self, f, n, &[("service", service), ("operation", operation)], |h| drop(h));
        }
    }

    /// One served request: `vnetd_requests_total{service,operation,result}` and
    /// `vnetd_request_duration_seconds{service,operation}`.
    pub fn record_request(&self, service: &str, operation: &str, result: i32, seconds: f64) {
        let code = result.to_string();
        self.inc_counter(REQUESTS, REQUESTS_HELP, &[("service", service), ("operation", operation), ("result", &code)], 1);
        self.observe(DURATION, DURATION_HELP, &[("service", service), ("operation", operation)], seconds);
    }

    /// The whole registry in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_text::encode(&mut out, &registry) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}

fn mismatch<T>(name: &str, wanted: &str, is: &str) -> Option<T> {
    debug_assert!(false, "metric {name} is a {is}, not a {wanted}");
    None
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(r: &str, series: &str) -> Option<f64> {
        r.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_and_gauges_render_typed() {
        let m = Metrics::new();
        m.inc_counter("vnetd_logins_total", "Logins by result", &[("result", "ok")], 2);
        m.inc_counter("vnetd_logins_total", "Logins by result", &[("result", "failed")], 1);
        m.inc_counter("vnetd_logins_total", "Logins by result", &[("result", "ok")], 3);
        m.inc_counter("vnetd_lockouts_total", "Accounts locked", &[], 0);
        m.set_gauge("vnetd_clock_offset_seconds", "Offset", &[], -0.25);
        m.set_gauge("vnetd_outbox_backlog", "Waiting", &[("destination", "centre")], 7.0);
        m.set_gauge("vnetd_outbox_backlog", "Waiting", &[("destination", "centre")], 4.0);
        let r = m.render();
        assert!(r.contains("# TYPE vnetd_logins_total counter\n"), "{r}");
        assert!(r.contains("# HELP vnetd_logins_total Logins by result"), "{r}");
        assert_eq!(value(&r, "vnetd_logins_total{result=\"ok\"}"), Some(5.0), "{r}");
        assert_eq!(value(&r, "vnetd_logins_total{result=\"failed\"}"), Some(1.0));
        assert_eq!(value(&r, "vnetd_lockouts_total"), Some(0.0), "{r}");
        assert!(r.contains("# TYPE vnetd_clock_offset_seconds gauge\n"));
        assert_eq!(value(&r, "vnetd_clock_offset_seconds"), Some(-0.25), "{r}");
        assert_eq!(value(&r, "vnetd_outbox_backlog{destination=\"centre\"}"), Some(4.0));
        assert_eq!(value(&r, "vnetd_metrics_series_refused_total"), Some(0.0));
    }

    #[test]
    fn a_declared_gauge_keeps_a_value_set_before_and_shows_zero_when_new() {
        let m = Metrics::new();
        m.set_gauge("vnetd_clock_alarm", "Alarm", &[], 1.0);
        m.declare_gauge("vnetd_clock_alarm", "Alarm", &[]);
        m.declare_gauge("vnetd_open_connections", "Open", &[]);
        let r = m.render();
        assert_eq!(value(&r, "vnetd_clock_alarm"), Some(1.0), "{r}");
        assert_eq!(value(&r, "vnetd_open_connections"), Some(0.0), "{r}");
    }

    #[test]
    fn sync_counter_adds_what_the_source_gained() {
        let m = Metrics::new();
        m.sync_counter("x_total", "X", &[("status", "503")], 4);
        m.inc_counter("x_total", "X", &[("status", "503")], 1);
        m.sync_counter("x_total", "X", &[("status", "503")], 2);
        m.sync_counter("x_total", "X", &[("status", "503")], 9);
        assert_eq!(value(&m.render(), "x_total{status=\"503\"}"), Some(10.0));
    }

    #[test]
    fn record_request_feeds_counter_and_histogram() {
        let m = Metrics::new();
        m.declare_request("ProvinceForSP", "GetTime");
        m.record_request("ProvinceForSP", "Login", 0, 0.003);
        m.record_request("ProvinceForSP", "Login", 0, 0.02);
        m.record_request("ProvinceForSP", "Login", -1, 0.00004);
        let r = m.render();
        assert!(r.contains("# TYPE vnetd_requests_total counter\n"));
        assert!(r.contains("# TYPE vnetd_request_duration_seconds histogram\n"));
        let s = "vnetd_requests_total{service=\"ProvinceForSP\",operation=";
        assert_eq!(value(&r, &format!("{s}\"Login\",result=\"-1\"}}")), Some(1.0), "{r}");
        assert_eq!(value(&r, &format!("{s}\"Login\",result=\"0\"}}")), Some(2.0));
        assert_eq!(value(&r, &format!("{s}\"GetTime\",result=\"0\"}}")), Some(0.0));
        let b = "vnetd_request_duration_seconds_bucket{service=\"ProvinceForSP\",operation=";
        assert_eq!(value(&r, &format!("{b}\"Login\",le=\"5e-05\"}}")), Some(1.0), "{r}");
        assert_eq!(value(&r, &format!("{b}\"Login\",le=\"0.005\"}}")), Some(2.0), "{r}");
        assert_eq!(value(&r, &format!("{b}\"Login\",le=\"+Inf\"}}")), Some(3.0));
        assert_eq!(value(&r, &format!("{b}\"GetTime\",le=\"+Inf\"}}")), Some(0.0));
        assert_eq!(value(&r, "vnetd_request_duration_seconds_count{service=\"ProvinceForSP\",operation=\"Login\"}"), Some(3.0));
        let buckets = r.lines().filter(|l| l.starts_with(&format!("{b}\"Login\""))).count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.inc_counter("e_total", "E", &[("a", "back\\slash \"quoted\"\nnext"), ("b", "中文")], 1);
        assert!(m.render().contains("e_total{a=\"back\\\\slash \\\"quoted\\\"\\nnext\",b=\"中文\"} 1\n"), "{}", m.render());
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
                        m.inc_counter("c_total", "C", &[("op", op)], 1);
                        m.inc_counter("c_total", "C", &[("op", "all")], i % 3);
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
        assert_eq!(value(&r, "c_total{op=\"all\"}"), Some((8 * per_thread_all) as f64));
        assert_eq!(value(&r, "c_total{op=\"even\"}"), Some(40000.0));
        assert_eq!(value(&r, "vnetd_requests_total{service=\"S\",operation=\"odd\",result=\"0\"}"), Some(40000.0));
        assert_eq!(value(&r, "vnetd_request_duration_seconds_bucket{service=\"S\",operation=\"even\",le=\"0.001\"}"), Some(40000.0));
        assert_eq!(value(&r, "vnetd_request_duration_seconds_bucket{service=\"S\",operation=\"even\",le=\"0.0005\"}"), Some(0.0));
    }

    #[test]
    fn series_limit_refuses_new_series_and_says_so() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 5 {
            m.inc_counter("a_total", "A", &[("id", &i.to_string())], 1);
        }
        m.inc_counter("a_total", "A", &[("id", "0")], 1); // existing series still count
        let r = m.render();
        assert_eq!(r.lines().filter(|l| l.starts_with("a_total{")).count(), MAX_SERIES_PER_FAMILY);
        assert_eq!(value(&r, "a_total{id=\"0\"}"), Some(2.0));
        assert_eq!(value(&r, "vnetd_metrics_series_refused_total"), Some(5.0));
    }

    #[test]
    fn metrics_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
