use leptos::prelude::*;
use shared::diagnostics::{Diagnostic, Severity};

use crate::links::{Spot, use_links};
use crate::store::use_store;

/// The last run's diagnostics for one input file (empty without a run).
pub fn for_file(path: &str) -> Vec<Diagnostic> {
    let store = use_store();
    store.finished.with(|f| {
        f.as_ref()
            .map(|f| {
                f.output.result.diagnostics.iter().filter(|d| d.path == path).cloned().collect()
            })
            .unwrap_or_default()
    })
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
        Severity::Info => "info",
    }
}

/// The count of errors and warnings on a file's tab, coloured by the worst.
#[component]
pub fn DiagnosticCount(path: String) -> impl IntoView {
    let counts = Memo::new(move |_| {
        let list = for_file(&path);
        let errors = list.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = list.iter().filter(|d| d.severity == Severity::Warning).count();
        (errors, warnings)
    });
    move || {
        let (errors, warnings) = counts.get();
        (errors + warnings > 0).then(|| {
            let title = format!("{errors} errors, {warnings} warnings in the last run");
            let has_errors = errors > 0;
            let total = errors + warnings;
            view! {
                <span
                    class="badge diag-count"
                    class:error=has_errors
                    data-testid="diag-count"
                    title=title.clone()
                    aria-label=title
                >
                    {total}
                </span>
            }
        })
    }
}

/// The run's diagnostics as a list under the output; a click opens the file at the spot.
#[component]
pub fn DiagnosticsList() -> impl IntoView {
    let store = use_store();
    let links = use_links();
    let list = Memo::new(move |_| {
        store.finished.with(|f| f.as_ref().map(|f| f.output.result.diagnostics.clone()))
    });
    let open = move |d: &Diagnostic| {
        let index = store.files.with_untracked(|f| f.iter().position(|f| f.path == d.path));
        if let Some(index) = index {
            store.active.set(index);
            links.reveal.set(Some(Spot { path: d.path.clone(), line: d.line, column: d.column }));
        }
    };
    move || {
        let list = list.get().unwrap_or_default();
        (!list.is_empty()).then(|| {
            let items = list
                .into_iter()
                .map(|d| {
                    let known = store.files.with_untracked(|f| f.iter().any(|f| f.path == d.path));
                    let place = if d.column > 0 {
                        format!("{}:{}:{}", d.path, d.line, d.column)
                    } else {
                        format!("{}:{}", d.path, d.line)
                    };
                    let word = severity_word(d.severity);
                    let message = d.message.clone();
                    view! {
                        <li>
                            <button
                                type="button"
                                class=format!("diagnostic {word}")
                                data-testid="diagnostic"
                                disabled=!known
                                title=if known { "Show in the editor" } else { "Not an input file" }
                                on:click=move |_| open(&d)
                            >
                                <span class="diag-place">{place}</span>
                                <span class="diag-severity">{word}</span>
                                <span class="diag-message">{message}</span>
                            </button>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <section class="diagnostics" aria-label="Problems" data-testid="diagnostics">
                    <h2 class="stream-title">"Problems"</h2>
                    <ul>{items}</ul>
                </section>
            }
        })
    }
}
