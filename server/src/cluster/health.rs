//! What a server's `/readyz` and `/metrics` add in cluster mode or with PostgreSQL.
//!
//! - NATS not connected: fatal (no run can be made), so a load balancer stops sending runs.
//! - PostgreSQL not answering: reported, not fatal: runs keep working without links and the
//!   shared cache, and taking every server out of rotation would stop them too.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::health::Problem;
use crate::http::SharedState;

/// The cluster's and the database's problems now.
pub async fn problems(state: &SharedState) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(remote) = &state.cluster {
        let connection = remote.client().connection_state();
        if connection != async_nats::connection::State::Connected {
            problems.push(Problem {
                check: "nats_unreachable",
                detail: format!("NATS is {connection}: runs cannot be queued"),
                fatal: true,
            });
        }
    }
    if state.store.kind() == "postgres"
        && let Err(err) = state.store.ping().await
    {
        problems.push(Problem {
            check: "database_unreachable",
            detail: format!(
                "PostgreSQL does not answer ({}): links fail with 503, runs go on uncached",
                shared::error::chain(&err)
            ),
            fatal: false,
        });
    }
    problems
}

/// The metrics text with the cluster's counters and gauges added before its end.
pub async fn with_metrics(state: &SharedState, text: String) -> String {
    let Some(remote) = &state.cluster else { return text };
    let mut extra = String::new();
    let depth = remote.queue_depth().await.map_or(-1, |d| d as i64);
    let s = &remote.stats;
    let _ = writeln!(
        extra,
        "# HELP pe_cluster_queue_depth Jobs in the work-queue stream (waiting or running, all servers), -1 when NATS does not answer.\n# TYPE pe_cluster_queue_depth gauge\npe_cluster_queue_depth {depth}"
    );
    let _ = writeln!(
        extra,
        "# HELP pe_cluster_waiting Jobs this server waits for now.\n# TYPE pe_cluster_waiting gauge\npe_cluster_waiting {}",
        remote.waiting()
    );
    let connected = remote.client().connection_state() == async_nats::connection::State::Connected;
    let _ = writeln!(
        extra,
        "# TYPE pe_cluster_nats_connected gauge\npe_cluster_nats_connected {}",
        u8::from(connected)
    );
    for (name, counter) in [
        ("published", &s.published),
        ("refused_full", &s.refused_full),
        ("results", &s.results),
        ("duplicate_results", &s.duplicate_results),
        ("cancelled", &s.cancelled),
        ("deadline_passed", &s.deadline_passed),
        ("gave_up", &s.gave_up),
    ] {
        let _ = writeln!(
            extra,
            "# TYPE pe_cluster_{name} counter\npe_cluster_{name}_total {}",
            counter.load(Ordering::Relaxed)
        );
    }
    match text.rfind("# EOF") {
        Some(at) => {
            let mut text = text;
            text.insert_str(at, &extra);
            text
        }
        None => text + &extra,
    }
}
