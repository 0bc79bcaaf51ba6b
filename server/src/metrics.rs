//! Prometheus metrics, kept in memory and written in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the run latency histogram, seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    runs: BTreeMap<String, Histogram>,
    run_status: BTreeMap<(String, String), u64>,
    vm_starts: BTreeMap<String, u64>,
    cache_hits: u64,
    cache_misses: u64,
    vm_failures: u64,
    rate_limited: u64,
    busy: u64,
}

/// All counters. Shared by reference through the app state.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_owned(), status)).or_default() += 1);
    }

    /// A run that reached the executor: its latency, status, and how its VM started
    /// (`snapshot`, `warm`, `cold`).
    pub fn run(&self, container: &str, status: &str, start: Option<&str>, took: Duration) {
        self.with(|m| {
            if let Some(start) = start {
                *m.vm_starts.entry(start.to_owned()).or_default() += 1;
            }
            let h = m.runs.entry(container.to_owned()).or_default();
            let secs = took.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
            *m.run_status.entry((container.to_owned(), status.to_owned())).or_default() += 1;
            if status == "failed_to_start" {
                m.vm_failures += 1;
            }
        });
    }

    pub fn cache(&self, hit: bool) {
        self.with(|m| if hit { m.cache_hits += 1 } else { m.cache_misses += 1 });
    }

    pub fn refused(&self, rate_limited: bool) {
        self.with(|m| if rate_limited { m.rate_limited += 1 } else { m.busy += 1 });
    }

    /// The exposition text; `gauges` are current values such as the queue depth.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        self.with(|m| {
            out.push_str("# HELP pe_http_requests_total HTTP requests by route and status.\n");
            out.push_str("# TYPE pe_http_requests_total counter\n");
            for ((route, status), n) in &m.requests {
                let _ = writeln!(out, "pe_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
            out.push_str("# HELP pe_run_duration_seconds Time from submission to result of runs that reached the executor.\n");
            out.push_str("# TYPE pe_run_duration_seconds histogram\n");
            for (container, h) in &m.runs {
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "pe_run_duration_seconds_bucket{{container=\"{container}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(out, "pe_run_duration_seconds_bucket{{container=\"{container}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "pe_run_duration_seconds_sum{{container=\"{container}\"}} {}", h.sum);
                let _ = writeln!(out, "pe_run_duration_seconds_count{{container=\"{container}\"}} {}", h.count);
            }
            out.push_str("# HELP pe_runs_total Runs by container and result status.\n# TYPE pe_runs_total counter\n");
            for ((container, status), n) in &m.run_status {
                let _ = writeln!(out, "pe_runs_total{{container=\"{container}\",status=\"{status}\"}} {n}");
            }
            out.push_str("# HELP pe_vm_starts_total Runs by how their VM started: restored from a snapshot, pre-booted (warm) or booted for the job (cold).\n# TYPE pe_vm_starts_total counter\n");
            for (start, n) in &m.vm_starts {
                let _ = writeln!(out, "pe_vm_starts_total{{start=\"{start}\"}} {n}");
            }
            for (name, help, value) in [
                ("pe_cache_hits_total", "Runs answered from the result cache.", m.cache_hits),
                ("pe_cache_misses_total", "Runs not found in the result cache.", m.cache_misses),
                ("pe_vm_failures_total", "Runs that failed to start (VM or setup failure).", m.vm_failures),
                ("pe_rate_limited_total", "Requests refused with 429.", m.rate_limited),
                ("pe_busy_total", "Runs refused with 503 because the queue was full.", m.busy),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
            }
        });
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
