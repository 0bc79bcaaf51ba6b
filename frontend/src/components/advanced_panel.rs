use leptos::prelude::*;

use crate::store::Side;

/// Extra arguments (one per line) and environment variables (`KEY=VALUE` lines).
#[component]
pub fn AdvancedPanel(side: Side) -> impl IntoView {
    let p = side.prefix;
    view! {
        <details class="advanced">
            <summary>"Advanced: extra arguments and environment"</summary>
            {move || {
                side.revision.track();
                let (args, env) = (side.args.get_untracked(), side.env.get_untracked());
                view! {
                    <label for=format!("{p}extra-args")>"Extra arguments, one per line"</label>
                    <textarea
                        id=format!("{p}extra-args")
                        data-testid=format!("{p}args")
                        rows="3"
                        spellcheck="false"
                        prop:value=args
                        on:input=move |ev| side.args.set(event_target_value(&ev))
                    ></textarea>
                    <label for=format!("{p}extra-env")>"Environment, one NAME=VALUE per line"</label>
                    <textarea
                        id=format!("{p}extra-env")
                        data-testid=format!("{p}env")
                        rows="3"
                        spellcheck="false"
                        prop:value=env
                        on:input=move |ev| side.env.set(event_target_value(&ev))
                    ></textarea>
                }
            }}
        </details>
    }
}
