use leptos::prelude::*;

use super::option_field::OptionField;
use crate::store::Side;

/// A setup's options, as form fields generated from its container's metadata.
#[component]
pub fn OptionsForm(side: Side, label: &'static str) -> impl IntoView {
    view! {
        <form class="options" aria-label=label on:submit=|ev| ev.prevent_default()>
            {move || {
                side.revision.track();
                let meta = side.meta.get()?;
                let values = side.options.get_untracked();
                Some(
                    meta
                        .options
                        .iter()
                        .map(|spec| {
                            let value = values
                                .get(&spec.id)
                                .cloned()
                                .unwrap_or_else(|| spec.kind.default_value());
                            view! { <OptionField spec=spec.clone() value side /> }
                        })
                        .collect_view(),
                )
            }}
        </form>
    }
}
