//! Prometheus metrics of the service, served at `GET /metrics` in the text exposition format.
//!
//! A handful of counters and histograms are updated on the request path, and gauges (log
//! head, projection and relay positions and lags) are read from the components' watch
//! channels at scrape time, so nothing polls in the background. The registry is small and
//! written here rather than taken from a crate: the exposition format is a few lines of text,
//! and the metrics crates pull in an HTTP stack of their own. Label values are route
//! templates, projection names and status codes — never ids, subjects or anything personal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;
type GaugeFn = Box<dyn Fn() -> Vec<(Labels, f64)> + Send + Sync>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    counters: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Histogram>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<&'static str, Family>,
    gauges: Vec<(&'static str, &'static str, GaugeFn)>,
}

/// The registry; cheap to clone, shared by every handler and component.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn label_key(labels: &[(&'static str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn series(name: &str, suffix: &str, labels: &str, extra: Option<String>) -> String {
    let all = match (labels.is_empty(), extra) {
        (true, None) => String::new(),
        (true, Some(e)) => format!("{{{e}}}"),
        (false, None) => format!("{{{labels}}}"),
        (false, Some(e)) => format!("{{{labels},{e}}}"),
    };
    format!("{name}{suffix}{all}")
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut inner)
    }

    fn family<'a>(
        inner: &'a mut Inner,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
    ) -> &'a mut Family {
        inner.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            counters: BTreeMap::new(),
            histograms: BTreeMap::new(),
        })
    }

    /// Add `by` to a counter.
    pub fn count(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        by: u64,
    ) {
        let key = label_key(labels);
        self.with(|inner| {
            *Self::family(inner, name, help, "counter")
                .counters
                .entry(key)
                .or_default() += by as f64;
        });
    }

    /// Record one observation in a latency histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        took: Duration,
    ) {
        let key = label_key(labels);
        let secs = took.as_secs_f64();
        self.with(|inner| {
            let h = Self::family(inner, name, help, "histogram")
                .histograms
                .entry(key)
                .or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        });
    }

    /// A gauge family whose values are computed at each scrape.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> Vec<(Labels, f64)> + Send + Sync + 'static,
    ) {
        self.with(|inner| inner.gauges.push((name, help, Box::new(read))));
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.with(|inner| {
            let mut out = String::new();
            for (name, f) in &inner.families {
                let _ = writeln!(out, "# HELP {name} {}", f.help);
                let _ = writeln!(out, "# TYPE {name} {}", f.kind);
                for (labels, v) in &f.counters {
                    let _ = writeln!(out, "{} {v}", series(name, "", labels, None));
                }
                for (labels, h) in &f.histograms {
                    for (bound, n) in BUCKETS.iter().zip(h.counts) {
                        let le = Some(format!("le=\"{bound}\""));
                        let _ = writeln!(out, "{} {n}", series(name, "_bucket", labels, le));
                    }
                    let inf = Some("le=\"+Inf\"".to_owned());
                    let _ = writeln!(out, "{} {}", series(name, "_bucket", labels, inf), h.count);
                    let _ = writeln!(out, "{} {}", series(name, "_sum", labels, None), h.sum);
                    let _ = writeln!(out, "{} {}", series(name, "_count", labels, None), h.count);
                }
            }
            for (name, help, read) in &inner.gauges {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                for (labels, v) in read() {
                    let pairs: Vec<(&'static str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let _ = writeln!(out, "{} {v}", series(name, "", &label_key(&pairs), None));
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.count("amtsbuch_x_total", "Xs.", &[("route", "/a\"b")], 2);
        m.count("amtsbuch_x_total", "Xs.", &[("route", "/a\"b")], 1);
        m.observe("amtsbuch_t_seconds", "Ts.", &[], Duration::from_millis(3));
        m.gauge_fn("amtsbuch_g", "Gs.", || {
            vec![(vec![("p", "streams".into())], 7.0)]
        });
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE amtsbuch_x_total counter\namtsbuch_x_total{route=\"/a\\\"b\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("amtsbuch_t_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("amtsbuch_t_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("amtsbuch_t_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("amtsbuch_t_seconds_count 1\n"), "{text}");
        assert!(text.contains("amtsbuch_g{p=\"streams\"} 7\n"), "{text}");
    }
}
