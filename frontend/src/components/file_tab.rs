use leptos::html;
use leptos::prelude::*;

use super::diagnostics::DiagnosticCount;
use crate::store::use_store;

/// One input file's tab; double-click (or Rename) shows a name field.
#[component]
pub fn FileTab(index: usize, path: String, renaming: RwSignal<Option<usize>>) -> impl IntoView {
    let store = use_store();
    let is_active = move || store.active.get() == index;
    let is_stdin = {
        let path = path.clone();
        Memo::new(move |_| store.stdin_file.get().as_deref() == Some(path.as_str()))
    };
    let name_input = NodeRef::<html::Input>::new();
    let problem = RwSignal::new(None::<String>);
    let commit = move || {
        // Enter commits and removes the field, whose blur then comes here once more: by then
        // this tab's own signals are gone, so check the list's state first.
        if renaming.get_untracked() != Some(index) {
            return;
        }
        let Some(input) = name_input.get_untracked() else { return };
        let name = input.value();
        let old = store.files.with_untracked(|f| f.get(index).map(|f| f.path.clone()));
        let Some(old) = old else { return };
        if name != old {
            let issue = untrack(|| store.snapshot()).name_problem(index, &name);
            if let Some(issue) = issue {
                problem.set(Some(issue));
                return;
            }
            store.files.update(|f| f[index].path = name.clone());
            if store.stdin_file.get_untracked().as_deref() == Some(old.as_str()) {
                store.stdin_file.set(Some(name));
            }
        }
        renaming.set(None);
    };
    // Focus the name field when it appears.
    Effect::new(move |_| {
        if let Some(input) = name_input.get() {
            let _ = input.focus();
            input.select();
        }
    });
    let label = path.clone();
    view! {
        <div
            class="file-tab"
            class:active=is_active
            role="presentation"
            data-testid="file-tab"
            data-path=path.clone()
        >
            {move || {
                if renaming.get() == Some(index) {
                    view! {
                        <input
                            class="file-name"
                            node_ref=name_input
                            aria-label="File name"
                            aria-invalid=move || problem.get().is_some().to_string()
                            title=move || problem.get().unwrap_or_default()
                            value=label.clone()
                            on:keydown=move |ev| match ev.key().as_str() {
                                "Enter" => commit(),
                                "Escape" => renaming.set(None),
                                _ => problem.set(None),
                            }
                            on:blur=move |_| commit()
                        />
                        {move || {
                            problem
                                .get()
                                .map(|p| {
                                    view! {
                                        <span class="tab-problem" role="alert">
                                            {p}
                                        </span>
                                    }
                                })
                        }}
                    }
                        .into_any()
                } else {
                    let path = label.clone();
                    view! {
                        <button
                            type="button"
                            role="tab"
                            aria-selected=move || is_active().to_string()
                            title="Double-click to rename"
                            on:click=move |_| store.active.set(index)
                            on:dblclick=move |_| renaming.set(Some(index))
                        >
                            {path.clone()}
                            <DiagnosticCount path=path />
                            {move || {
                                is_stdin
                                    .get()
                                    .then(|| {
                                        view! {
                                            <span class="badge" title="Fed to standard input">
                                                "stdin"
                                            </span>
                                        }
                                    })
                            }}
                        </button>
                    }
                        .into_any()
                }
            }}
        </div>
    }
}
