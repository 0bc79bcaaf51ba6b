use leptos::prelude::*;

use crate::store::use_store;

/// Rename, use as standard input, delete: for the open file.
#[component]
pub fn FileActions(renaming: RwSignal<Option<usize>>) -> impl IntoView {
    let store = use_store();
    let active_path = Memo::new(move |_| {
        let active = store.active.get();
        store.files.with(|f| f.get(active).map(|f| f.path.clone()))
    });
    let is_stdin = move || {
        let path = active_path.get();
        path.is_some() && store.stdin_file.get() == path
    };
    let toggle_stdin = move |_| {
        let path = active_path.get_untracked();
        store.stdin_file.update(|s| *s = if *s == path { None } else { path });
    };
    let delete = move |_| {
        let index = store.active.get_untracked();
        let removed =
            store.files.try_update(|f| (index < f.len() && f.len() > 1).then(|| f.remove(index)));
        if let Some(Some(removed)) = removed {
            if store.stdin_file.get_untracked().as_deref() == Some(removed.path.as_str()) {
                store.stdin_file.set(None);
            }
            let len = store.files.with_untracked(Vec::len);
            store.active.set(index.min(len.saturating_sub(1)));
            store.revision.update(|r| *r += 1);
        }
    };
    view! {
        <div class="file-actions" role="toolbar" aria-label="File actions">
            <button
                type="button"
                data-testid="rename-file"
                on:click=move |_| renaming.set(Some(store.active.get_untracked()))
            >
                "Rename"
            </button>
            <button
                type="button"
                data-testid="stdin-toggle"
                aria-pressed=move || is_stdin().to_string()
                title="Feed this file to the program's standard input"
                on:click=toggle_stdin
            >
                "stdin"
            </button>
            <button
                type="button"
                data-testid="delete-file"
                disabled=move || store.files.with(|f| f.len() <= 1)
                on:click=delete
            >
                "Delete"
            </button>
        </div>
    }
}
