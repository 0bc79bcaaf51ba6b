use leptos::prelude::*;

use crate::store::use_store;

/// Light or dark: flips what shows, and a second press follows the system again.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let store = use_store();
    // The visible word (Auto, Light, Dark) starts the accessible name.
    let label = move || {
        let shows = if store.dark.get() { "dark" } else { "light" };
        let word = store.theme.get().label();
        match store.theme.get() {
            crate::theme::Theme::System => format!("{word} theme: following the system ({shows})"),
            _ => format!("{word} theme"),
        }
    };
    view! {
        <button
            type="button"
            class="theme-toggle"
            data-testid="theme-toggle"
            aria-label=label
            title=label
            on:click=move |_| store.toggle_theme()
        >
            <span aria-hidden="true">{move || if store.dark.get() { "☾" } else { "☀" }}</span>
            {move || store.theme.get().label()}
        </button>
    }
}
