use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::store::{Share, use_store};

/// Stores the playground behind a permalink, copies it and shows it in a field.
#[component]
pub fn ShareButton() -> impl IntoView {
    let store = use_store();
    let select_all = |ev: leptos::ev::FocusEvent| {
        if let Some(input) =
            ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        {
            input.select();
        }
    };
    view! {
        <div class="share">
            <button
                type="button"
                data-testid="share"
                disabled=move || store.share.get() == Share::Busy || !store.loaded.get()
                on:click=move |_| store.share()
            >
                "Share"
            </button>
            {move || match store.share.get() {
                Share::Done { url, copied } => {
                    view! {
                        <input
                            class="share-url"
                            data-testid="share-url"
                            aria-label="Permalink"
                            readonly
                            prop:value=url
                            on:focus=select_all
                        />
                        <span class="share-note" role="status">
                            {if copied { "Copied" } else { "Copy this link" }}
                        </span>
                    }
                        .into_any()
                }
                Share::Failed(message) => {
                    view! {
                        <span class="error" role="alert">
                            {message}
                        </span>
                    }
                        .into_any()
                }
                Share::Idle | Share::Busy => ().into_any(),
            }}
        </div>
    }
}
