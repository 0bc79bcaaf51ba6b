use leptos::prelude::*;

use crate::store::use_store;

/// Extra arguments (one per line) and environment variables (`KEY=VALUE` lines).
#[component]
pub fn AdvancedPanel() -> impl IntoView {
    let store = use_store();
    view! {
        <details class="advanced">
            <summary>"Advanced: extra arguments and environment"</summary>
            {move || {
                store.revision.track();
                let (args, env) = (store.args.get_untracked(), store.env.get_untracked());
                view! {
                    <label for="extra-args">"Extra arguments, one per line"</label>
                    <textarea
                        id="extra-args"
                        data-testid="args"
                        rows="3"
                        spellcheck="false"
                        prop:value=args
                        on:input=move |ev| store.args.set(event_target_value(&ev))
                    ></textarea>
                    <label for="extra-env">"Environment, one NAME=VALUE per line"</label>
                    <textarea
                        id="extra-env"
                        data-testid="env"
                        rows="3"
                        spellcheck="false"
                        prop:value=env
                        on:input=move |ev| store.env.set(event_target_value(&ev))
                    ></textarea>
                }
            }}
        </details>
    }
}
