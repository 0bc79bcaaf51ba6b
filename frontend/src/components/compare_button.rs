use leptos::prelude::*;

use crate::store::use_store;

/// Turns the compare view on and off: a second setup (container, options) run on the same
/// files, with a diff of the two outputs.
#[component]
pub fn CompareButton() -> impl IntoView {
    let store = use_store();
    view! {
        <button
            type="button"
            class="compare-button"
            data-testid="compare"
            aria-pressed=move || store.comparing.get().to_string()
            title="Run the same files through a second container or option set, and diff the outputs"
            disabled=move || !store.loaded.get()
            on:click=move |_| store.set_comparing(!store.comparing.get_untracked())
        >
            "Compare"
        </button>
    }
}
