use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::live;
use crate::store::use_store;

/// A live run in flight: the terminal with the output as it comes (stderr in red, ANSI colours
/// rendered), a line input for stdin (Enter sends a line, Ctrl+D closes stdin) and Stop.
#[component]
pub fn LiveOutput() -> impl IntoView {
    let store = use_store();
    let host = NodeRef::<html::Div>::new();
    let line = NodeRef::<html::Input>::new();
    Effect::new(move |_| {
        if let Some(element) = host.get() {
            let dark = store.dark.get_untracked();
            let element: web_sys::HtmlElement = element.into();
            spawn_local(live::attach_terminal(element, dark));
        }
    });
    on_cleanup(live::detach_terminal);
    let close_stdin = move || {
        if store.live_stdin_open.get_untracked() && live::close_stdin() {
            store.live_stdin_open.set(false);
        }
    };
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(input) = line.get() else { return };
        if live::send_line(&input.value()) {
            input.set_value("");
        }
    };
    let on_keydown = move |ev: KeyboardEvent| {
        if ev.ctrl_key() && ev.key().eq_ignore_ascii_case("d") {
            ev.prevent_default();
            close_stdin();
        }
    };
    view! {
        <div class="live" data-testid="live">
            <div class="live-terminal" data-testid="live-terminal" node_ref=host></div>
            <form class="live-input" on:submit=on_submit>
                <label for="live-stdin">"Standard input"</label>
                <input
                    id="live-stdin"
                    data-testid="live-stdin"
                    node_ref=line
                    autocomplete="off"
                    spellcheck="false"
                    placeholder=move || {
                        if store.live_stdin_open.get() {
                            "Type a line: Enter sends it, Ctrl+D closes stdin"
                        } else {
                            "stdin is closed"
                        }
                    }
                    disabled=move || !store.live_stdin_open.get()
                    on:keydown=on_keydown
                />
                <button type="submit" disabled=move || !store.live_stdin_open.get()>
                    "Send"
                </button>
                <button
                    type="button"
                    data-testid="close-stdin"
                    title="Close stdin (Ctrl+D): the program reads end of file"
                    disabled=move || !store.live_stdin_open.get()
                    on:click=move |_| close_stdin()
                >
                    "Close stdin"
                </button>
                <button
                    type="button"
                    class="stop"
                    data-testid="stop"
                    title="Stop the program; its result still shows"
                    on:click=move |_| {
                        live::kill();
                    }
                >
                    "Stop"
                </button>
            </form>
        </div>
    }
}
