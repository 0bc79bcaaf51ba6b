use leptos::prelude::*;

use super::output_viewer::OutputViewer;
use crate::format;
use crate::store::Finished;

/// One tab per output file, and the open one's viewer.
#[component]
pub fn OutputFiles(finished: Finished) -> impl IntoView {
    let output = finished.output.clone();
    if output.files.is_empty() {
        return ().into_any();
    }
    let selected = RwSignal::new(0usize);
    let tabs = output
        .files
        .iter()
        .enumerate()
        .map(|(i, (path, data))| {
            let label = format!("{path} ({})", format::bytes(data.len()));
            view! {
                <button
                    type="button"
                    role="tab"
                    class="output-tab"
                    data-testid="output-tab"
                    data-path=path.clone()
                    aria-selected=move || (selected.get() == i).to_string()
                    on:click=move |_| selected.set(i)
                >
                    {label}
                </button>
            }
        })
        .collect_view();
    view! {
        <div class="output-files">
            <div class="output-tabs" role="tablist" aria-label="Output files">
                {tabs}
            </div>
            <div class="output-view" role="tabpanel">
                {move || {
                    let index = selected.get();
                    let (path, data) = finished.output.files[index].clone();
                    let view = format::view_for(finished.meta.as_deref(), &path, &data);
                    view! { <OutputViewer path data view /> }
                }}
            </div>
        </div>
    }
    .into_any()
}
