//! Prometheus metrics, kept in memory and written at `/metrics` in the OpenMetrics text format
//! by `prometheus-client` (which escapes label values: a container id or route is data).
//!
//! 1. Every metric is registered once, here, with its name, help and labels.
//! 2. Handlers count through [`Metrics::request`], [`Metrics::run`], [`Metrics::cache`] and
//!    [`Metrics::refused`].
//! 3. `/metrics` sets the current values ([`Gauges`]) and calls [`Metrics::render`].

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the run latency histogram, seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    container: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartLabels {
    start: String,
}

fn run_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Current values, read when `/metrics` is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub queue_depth: i64,
    pub running_jobs: i64,
    pub slots: i64,
    pub cache_bytes: i64,
    pub warm_vms_ready: i64,
    pub warm_vms_booting: i64,
    pub snapshot_templates: i64,
    pub snapshot_template_bytes: i64,
}

/// Each gauge's name, help and value.
type GaugeDef = (&'static str, &'static str, fn(&Gauges) -> i64);
const GAUGES: [GaugeDef; 8] = [
    ("pe_queue_depth", "Jobs waiting for a slot", |g| g.queue_depth),
    ("pe_running_jobs", "Jobs holding a slot", |g| g.running_jobs),
    ("pe_slots", "Job slots", |g| g.slots),
    ("pe_cache_bytes", "Bytes held by the result cache", |g| g.cache_bytes),
    ("pe_warm_vms_ready", "Warm VMs (booted or restored) waiting for a job", |g| g.warm_vms_ready),
    ("pe_warm_vms_booting", "Warm VMs still booting or restoring", |g| g.warm_vms_booting),
    ("pe_snapshot_templates", "Saved snapshot templates VMs are restored from", |g| {
        g.snapshot_templates
    }),
    ("pe_snapshot_template_bytes", "Host memory held by the templates' RAM files", |g| {
        g.snapshot_template_bytes
    }),
];

/// The registry and a handle on each metric. Shared by reference through the app state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    runs: Family<ContainerLabels, Histogram, fn() -> Histogram>,
    run_status: Family<RunLabels, Counter>,
    vm_starts: Family<StartLabels, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    vm_failures: Counter,
    rate_limited: Counter,
    busy: Counter,
    /// In the order of [`GAUGES`].
    gauges: [Gauge; GAUGES.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            runs: Family::new_with_constructor(run_histogram),
            run_status: Family::default(),
            vm_starts: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            vm_failures: Counter::default(),
            rate_limited: Counter::default(),
            busy: Counter::default(),
            gauges: Default::default(),
        };
        // prometheus-client adds the `_total` suffix of counters and the help's final period.
        let r = &mut m.registry;
        r.register("pe_http_requests", "HTTP requests by route and status", m.requests.clone());
        r.register(
            "pe_run_duration_seconds",
            "Time from submission to result of runs that reached the executor",
            m.runs.clone(),
        );
        r.register("pe_runs", "Runs by container and result status", m.run_status.clone());
        r.register(
            "pe_vm_starts",
            "Runs by how their VM started: restored from a snapshot, pre-booted (warm) or \
             booted for the job (cold)",
            m.vm_starts.clone(),
        );
        for (name, help, counter) in [
            ("pe_cache_hits", "Runs answered from the result cache", &m.cache_hits),
            ("pe_cache_misses", "Runs not found in the result cache", &m.cache_misses),
            ("pe_vm_failures", "Runs that failed to start (VM or setup failure)", &m.vm_failures),
            ("pe_rate_limited", "Requests refused with 429", &m.rate_limited),
            ("pe_busy", "Runs refused with 503 because the queue was full", &m.busy),
        ] {
            r.register(name, help, counter.clone());
        }
        for ((name, help, _), gauge) in GAUGES.iter().zip(&m.gauges) {
            r.register(*name, *help, gauge.clone());
        }
        m
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        self.requests.get_or_create(&RequestLabels { route: route.to_owned(), status }).inc();
    }

    /// A run that reached the executor: its latency, status, and how its VM started
    /// (`snapshot`, `warm`, `cold`).
    pub fn run(&self, container: &str, status: &str, start: Option<&str>, took: Duration) {
        if let Some(start) = start {
            self.vm_starts.get_or_create(&StartLabels { start: start.to_owned() }).inc();
        }
        let container = container.to_owned();
        self.runs
            .get_or_create(&ContainerLabels { container: container.clone() })
            .observe(took.as_secs_f64());
        self.run_status.get_or_create(&RunLabels { container, status: status.to_owned() }).inc();
        if status == "failed_to_start" {
            self.vm_failures.inc();
        }
    }

    pub fn cache(&self, hit: bool) {
        if hit { &self.cache_hits } else { &self.cache_misses }.inc();
    }

    pub fn refused(&self, rate_limited: bool) {
        if rate_limited { &self.rate_limited } else { &self.busy }.inc();
    }

    /// The exposition text, with `gauges` as the current values.
    pub fn render(&self, gauges: Gauges) -> String {
        for ((_, _, value), gauge) in GAUGES.iter().zip(&self.gauges) {
            gauge.set(value(&gauges));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_are_written() {
        let m = Metrics::default();
        m.request("/api/v1/run", 200);
        m.request("/api/v1/run", 200);
        m.run("busybox", "exited", Some("snapshot"), Duration::from_millis(300));
        m.cache(true);
        let text = m.render(Gauges { queue_depth: 2, ..Gauges::default() });
        for needle in [
            "pe_http_requests_total{route=\"/api/v1/run\",status=\"200\"} 2\n",
            "pe_run_duration_seconds_bucket{le=\"0.25\",container=\"busybox\"} 0\n",
            "pe_run_duration_seconds_bucket{le=\"0.5\",container=\"busybox\"} 1\n",
            "pe_run_duration_seconds_count{container=\"busybox\"} 1\n",
            "pe_runs_total{container=\"busybox\",status=\"exited\"} 1\n",
            "pe_vm_starts_total{start=\"snapshot\"} 1\n",
            "pe_cache_hits_total 1\n",
            "pe_busy_total 0\n",
            "pe_queue_depth 2\n",
            "# HELP pe_slots Job slots.\n",
        ] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.request("/a\"b\\c\nd", 404);
        m.run("x\"} 1\npe_fake 9", "exited", None, Duration::ZERO);
        let text = m.render(Gauges::default());
        assert!(
            text.contains("pe_http_requests_total{route=\"/a\\\"b\\\\c\\nd\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("container=\"x\\\"} 1\\npe_fake 9\""), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("pe_fake")), "a label made a line:\n{text}");
    }
}
