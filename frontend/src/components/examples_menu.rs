use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::store::use_store;

/// The container's examples; picking one loads its files and options.
#[component]
pub fn ExamplesMenu() -> impl IntoView {
    let store = use_store();
    let examples = Memo::new(move |_| {
        store.a.meta.with(|m| {
            m.as_ref()
                .map(|m| {
                    m.examples
                        .iter()
                        .map(|e| (e.name.clone(), e.description.clone().unwrap_or_default()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    let on_change = move |ev: leptos::ev::Event| {
        if let Ok(index) = event_target_value(&ev).parse::<usize>() {
            store.load_example(index);
        }
        // Back to the prompt, so the same example can be loaded again.
        if let Some(select) =
            ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
        {
            select.set_value("");
        }
    };
    view! {
        <div class="examples">
            <label for="examples-menu">"Examples"</label>
            <select
                id="examples-menu"
                data-testid="examples"
                disabled=move || examples.with(Vec::is_empty)
                on:change=on_change
            >
                <option value="" selected>
                    {move || {
                        if examples.with(Vec::is_empty) { "None" } else { "Load an example…" }
                    }}
                </option>
                {move || {
                    examples
                        .get()
                        .into_iter()
                        .enumerate()
                        .map(|(i, (name, description))| {
                            view! {
                                <option value=i.to_string() title=description>
                                    {name}
                                </option>
                            }
                        })
                        .collect_view()
                }}
            </select>
        </div>
    }
}
