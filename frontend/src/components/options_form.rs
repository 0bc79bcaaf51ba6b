use leptos::prelude::*;

use super::option_field::OptionField;
use crate::store::use_store;

/// The container's options, as form fields generated from its metadata.
#[component]
pub fn OptionsForm() -> impl IntoView {
    let store = use_store();
    view! {
        <form class="options" aria-label="Options" on:submit=|ev| ev.prevent_default()>
            {move || {
                store.revision.track();
                let meta = store.meta.get()?;
                let values = store.options.get_untracked();
                Some(
                    meta
                        .options
                        .iter()
                        .map(|spec| {
                            let value = values
                                .get(&spec.id)
                                .cloned()
                                .unwrap_or_else(|| spec.kind.default_value());
                            view! { <OptionField spec=spec.clone() value /> }
                        })
                        .collect_view(),
                )
            }}
        </form>
    }
}
