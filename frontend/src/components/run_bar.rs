use std::time::Duration;

use leptos::prelude::*;

use crate::browser;
use crate::format;
use crate::store::use_store;

/// The Run button (Ctrl/Cmd+Enter), the running indicator with the time so far, Cancel, and
/// the server's error if the run was refused.
#[component]
pub fn RunBar() -> impl IntoView {
    let store = use_store();
    let now = RwSignal::new(0.0);
    let ticker = StoredValue::new(None::<IntervalHandle>);
    Effect::new(move |_| {
        let running = store.running_since.get().is_some();
        if let Some(handle) = ticker.get_value() {
            handle.clear();
            ticker.set_value(None);
        }
        if running {
            now.set(browser::now_ms());
            let handle = set_interval_with_handle(
                move || now.set(browser::now_ms()),
                Duration::from_millis(100),
            );
            ticker.set_value(handle.ok());
        }
    });
    on_cleanup(move || {
        if let Some(handle) = ticker.get_value() {
            handle.clear();
        }
    });
    let running = move || store.running_since.get().is_some();
    let elapsed =
        move || store.running_since.get().map(|since| format::millis((now.get() - since).max(0.0)));
    view! {
        <div class="run-bar">
            <button
                type="button"
                class="run"
                data-testid="run"
                title="Run (Ctrl+Enter)"
                aria-keyshortcuts="Control+Enter Meta+Enter"
                disabled=move || {
                    store.a.preview.with(Result::is_err)
                        || (store.comparing.get() && store.b.preview.with(Result::is_err))
                        || !store.loaded.get()
                }
                on:click=move |_| store.run()
            >
                {move || if running() { "Running…" } else { "Run" }}
            </button>
            <label
                class="live-toggle"
                title="Live: see the output as it is written, and type stdin while the program runs"
            >
                <input
                    type="checkbox"
                    data-testid="live-toggle"
                    prop:checked=move || store.live.get()
                    disabled=move || store.comparing.get() || running()
                    on:change=move |ev| store.live.set(event_target_checked(&ev))
                />
                "Live"
            </label>
            <Show when=running>
                <span class="spinner" aria-hidden="true"></span>
                <span class="elapsed" data-testid="elapsed" role="timer">
                    {elapsed}
                </span>
                <button type="button" data-testid="cancel" on:click=move |_| store.cancel()>
                    "Cancel"
                </button>
            </Show>
            {move || {
                store
                    .run_error
                    .get()
                    .map(|e| {
                        view! {
                            <p class="error" role="alert" data-testid="run-error">
                                {e}
                            </p>
                        }
                    })
            }}
        </div>
    }
}
