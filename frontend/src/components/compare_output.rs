use leptos::prelude::*;

use super::compare_setups::SideName;
use super::diff_view::DiffView;
use super::status_line::StatusLine;
use crate::compare;
use crate::store::{Finished, Side, use_store};

/// The compare view's results: each side's status and timings, then a diff of the outputs
/// they both have (stdout, stderr, output files of the same name).
#[component]
pub fn CompareOutput() -> impl IntoView {
    let store = use_store();
    let both = move || Some((store.finished.get()?, store.finished_b.get()?));
    view! {
        <section
            class="output compare-output"
            class:stale=move || store.running_since.get().is_some()
            aria-label="Comparison"
            aria-busy=move || store.running_since.get().is_some().to_string()
        >
            <div class="compare-status">
                <SideResult mark="A" side=store.a finished=store.finished error=store.run_error />
                <SideResult mark="B" side=store.b finished=store.finished_b error=store.run_error_b />
            </div>
            {move || match both() {
                Some((a, b)) => view! { <DiffPanel a b /> }.into_any(),
                None => {
                    view! {
                        <p class="placeholder">
                            "Press Run (Ctrl+Enter) to run both setups on the same files and diff their outputs."
                        </p>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

/// One side's status line and timings, or why it did not run.
#[component]
fn SideResult(
    mark: &'static str,
    side: Side,
    finished: RwSignal<Option<Finished>>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    view! {
        <div class="side-result" data-testid=format!("result-{}", mark.to_lowercase())>
            <h2 class="setup-title">
                <span class="side-mark">{mark}</span>
                <SideName side />
            </h2>
            {move || finished.get().map(|finished| view! { <StatusLine finished /> })}
            {move || {
                error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })
            }}
        </div>
    }
}

/// A tab per pair of outputs, marked same or different, and the open pair's diff.
#[component]
fn DiffPanel(a: Finished, b: Finished) -> impl IntoView {
    let (pairs, alone) = compare::pairs(&a.output, &b.output);
    // Open the first pair that differs.
    let first = pairs.iter().position(|p| !p.same()).unwrap_or(0);
    let selected = RwSignal::new(first);
    let pairs = StoredValue::new(pairs);
    let tabs = pairs.with_value(|pairs| {
        pairs
            .iter()
            .enumerate()
            .map(|(i, pair)| {
                let same = pair.same();
                view! {
                    <button
                        type="button"
                        role="tab"
                        class="output-tab"
                        class:same=same
                        data-testid="diff-tab"
                        data-name=pair.name.clone()
                        aria-selected=move || (selected.get() == i).to_string()
                        on:click=move |_| selected.set(i)
                    >
                        {pair.name.clone()}
                        <span class="badge" class:warn=!same>
                            {if same { "same" } else { "differs" }}
                        </span>
                    </button>
                }
            })
            .collect_view()
    });
    let pair = Signal::derive(move || pairs.with_value(|p| p[selected.get()].clone()));
    view! {
        <div class="diff-panel">
            <div class="output-tabs" role="tablist" aria-label="Outputs to compare">
                {tabs}
            </div>
            {(!alone.is_empty())
                .then(|| {
                    view! {
                        <p class="status-note" data-testid="unpaired">
                            {format!("Not compared: {}", alone.join(", "))}
                        </p>
                    }
                })}
            <div role="tabpanel" class="diff-view-wrap">
                <p class="diff-summary" data-testid="diff-summary" role="status">
                    {move || {
                        let pair = pair.get();
                        if pair.same() {
                            format!("{}: the same in A and B", pair.name)
                        } else {
                            format!("{}: A (left) and B (right) differ", pair.name)
                        }
                    }}
                </p>
                <DiffView pair />
            </div>
        </div>
    }
}
