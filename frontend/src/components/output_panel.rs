use leptos::prelude::*;

use super::diagnostics::DiagnosticsList;
use super::live_output::LiveOutput;
use super::output_files::OutputFiles;
use super::status_line::StatusLine;
use super::streams::Streams;
use crate::store::use_store;

/// The last run's result: status, stdout and stderr, output files. Dimmed while a new run is
/// under way.
#[component]
pub fn OutputPanel() -> impl IntoView {
    let store = use_store();
    view! {
        <section
            class="output"
            class:stale=move || {
                store.running_since.get().is_some() && !store.live_running.get()
            }
            aria-label="Output"
            aria-busy=move || store.running_since.get().is_some().to_string()
        >
            {move || match store.finished.get() {
                _ if store.live_running.get() => view! { <LiveOutput /> }.into_any(),
                None => {
                    view! {
                        <p class="placeholder">
                            "Press Run (Ctrl+Enter) to run the program in a fresh microVM."
                        </p>
                    }
                        .into_any()
                }
                Some(finished) => {
                    view! {
                        <StatusLine finished=finished.clone() />
                        <Streams output=finished.output.clone() />
                        <DiagnosticsList />
                        <OutputFiles finished />
                    }
                        .into_any()
                }
            }}
        </section>
    }
}
