use leptos::prelude::*;

use crate::format;
use crate::store::Finished;

/// How the run ended in words, its timings, and a `cached` badge.
#[component]
pub fn StatusLine(finished: Finished) -> impl IntoView {
    let result = &finished.output.result;
    let ok = format::is_success(result);
    let t = result.timings_ms;
    let timings = if result.cached {
        format!(
            "ran in {} when it was cached · answered in {}",
            format::millis(t.run as f64),
            format::millis(finished.waited_ms),
        )
    } else {
        format!(
            "run {} · boot {} · queue {} · server {} · browser {}",
            format::millis(t.run as f64),
            format::millis(t.boot as f64),
            format::millis(t.queue as f64),
            format::millis(t.total as f64),
            format::millis(finished.waited_ms),
        )
    };
    let backend = [
        Some(result.backend.kind.clone()),
        result.backend.accel.clone(),
        result.backend.start.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/");
    let truncated = [
        (result.truncated.stdout, "stdout"),
        (result.truncated.stderr, "stderr"),
        (result.truncated.files, "output files"),
    ]
    .iter()
    .filter(|(cut, _)| *cut)
    .map(|(_, what)| *what)
    .collect::<Vec<_>>();
    let note = (result.status != shared::api::v1::RunStatus::FailedToStart)
        .then(|| result.message.as_deref().map(format::sentence))
        .flatten();
    view! {
        <div class="status-bar">
            <p class="status" class:ok=ok class:bad=!ok data-testid="status" role="status">
                {format::status_words(result)}
            </p>
            {result
                .cached
                .then(|| {
                    view! {
                        <span class="badge cached" data-testid="cached" title="Served from the result cache">
                            "cached"
                        </span>
                    }
                })}
            <span class="timings" data-testid="timings" title=backend>
                {timings}
            </span>
        </div>
        {note.map(|n| view! { <p class="status-note">{n}</p> })}
        {(!truncated.is_empty())
            .then(|| {
                view! {
                    <p class="status-note" data-testid="truncated">
                        {format!("Cut short by the output limit: {}", truncated.join(", "))}
                    </p>
                }
            })}
    }
}
