use leptos::html;
use leptos::prelude::*;

use crate::store::use_store;

/// Every keyboard shortcut, with what it does.
const SHORTCUTS: &[(&str, &str)] = &[
    ("Ctrl+Enter, ⌘+Enter", "Run (from anywhere, the editor too)"),
    ("?", "Show this list (outside text fields)"),
    ("Esc", "Close this list, or the container list"),
    ("Tab, Shift+Tab", "Move between the controls"),
    ("Ctrl+M (in the editor)", "Let Tab leave the editor instead of indenting, or not"),
    ("↑, ↓, Enter (in Container)", "Choose a container from the list"),
    ("F1 (in the editor)", "The editor's command list"),
    ("Alt+F1 (in the editor)", "The editor's accessibility help"),
];

/// The keyboard shortcuts, in a modal dialog opened with `?` or the header's button.
#[component]
pub fn ShortcutsDialog() -> impl IntoView {
    let store = use_store();
    let dialog = NodeRef::<html::Dialog>::new();
    Effect::new(move |_| {
        let open = store.shortcuts_open.get();
        let Some(dialog) = dialog.get() else { return };
        if open && !dialog.open() {
            let _ = dialog.show_modal();
        } else if !open && dialog.open() {
            dialog.close();
        }
    });
    let rows = SHORTCUTS
        .iter()
        .map(|(keys, what)| {
            view! {
                <tr>
                    <th scope="row">
                        <kbd>{*keys}</kbd>
                    </th>
                    <td>{*what}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <dialog
            class="shortcuts"
            data-testid="shortcuts"
            aria-labelledby="shortcuts-title"
            node_ref=dialog
            on:close=move |_| store.shortcuts_open.set(false)
        >
            <h2 id="shortcuts-title">"Keyboard shortcuts"</h2>
            <table>
                <tbody>{rows}</tbody>
            </table>
            <form method="dialog">
                <button type="submit" data-testid="shortcuts-close" autofocus>
                    "Close"
                </button>
            </form>
        </dialog>
    }
}

/// The header's button that opens the list.
#[component]
pub fn ShortcutsButton() -> impl IntoView {
    let store = use_store();
    view! {
        <button
            type="button"
            class="shortcuts-button"
            data-testid="shortcuts-button"
            aria-label="Keyboard shortcuts"
            aria-keyshortcuts="?"
            title="Keyboard shortcuts (?)"
            on:click=move |_| store.shortcuts_open.set(true)
        >
            "?"
        </button>
    }
}
